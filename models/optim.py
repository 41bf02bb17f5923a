"""Adam for the score model: ``torch.optim.Adam(fused=True)``'s update, without importing torch._dynamo.

Why not ``torch.optim.Adam`` itself: its constructor (``add_param_group``) and ``zero_grad``
are wrapped by ``torch._disable_dynamo``, whose first call imports ``torch._dynamo`` (the
torch.compile machinery): about 1.0 s and 70 MB in every process that trains a model, i.e.
each score backtest, paper run and sweep worker, for a compiler this project never uses.

The update is torch's own: its functional ``torch.optim.adam.adam`` with the fused CPU
kernel, given the state ``Adam`` keeps (first and second moments, a float32 step count per
tensor, created at a tensor's first gradient). Same parameters, bit for bit, step after
step (tests/models/test_training.py holds the two equal).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch.optim.adam import adam


class FusedAdam:
    """The subset of ``torch.optim.Adam(params, lr, fused=True)`` that training uses: step and zero_grad."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        # per parameter, created at its first gradient (as Adam's lazy state): (exp_avg, exp_avg_sq, step)
        self._state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        """Gradients to None (``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        params, grads, avgs, sqs, steps = [], [], [], [], []
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            state = self._state.get(i)
            if state is None:
                state = self._state[i] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                                          torch.zeros_like(p, memory_format=torch.preserve_format),
                                          torch.zeros((), dtype=torch.float32, device=p.device))
            params.append(p)
            grads.append(p.grad)
            avgs.append(state[0])
            sqs.append(state[1])
            steps.append(state[2])
        if params:
            adam(params, grads, avgs, sqs, [], steps, fused=True, amsgrad=False, beta1=self.betas[0],
                 beta2=self.betas[1], lr=self.lr, weight_decay=0.0, eps=self.eps, maximize=False)
