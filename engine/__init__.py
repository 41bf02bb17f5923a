"""Event-driven backtest engine: bar loop, simulated broker, portfolio, metrics."""
