"""Score model: causal bar features, a σ-conditioned score network, its losses,
Langevin samplers, training, checkpoints and a per-fold sample check.

Modules are imported directly (``from models.features import compute_features``)
so that feature code can be used without importing torch.
"""
