"""The application layer: the only place that wires feeds, engine, strategies and store together."""
