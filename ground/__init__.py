"""The ground layer: small helpers every other package may use. Imports nothing of ours."""
