"""The ground layer: plain domain values and rules (times, bars, orders, fills, trades, equity
points, per-bar results, run records, model-version records) that every other package may
import and that import nothing of the project."""
