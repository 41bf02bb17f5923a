"""The ground layer: plain domain values and rules (times, bars, orders, fills, trades) that every
other package may import and that import nothing of the project."""
