"""Adam for train_4DGS.py without ``torch.optim``: the same update, to the bit, and no ``torch._dynamo``.

``torch.optim.Optimizer`` imports ``torch._dynamo`` (with sympy and FSDP) on its first use: 1.9 s on this
project's 2-core CPU, 5.1 s on the GPU machine where Python keeps no bytecode cache (docs/BENCHMARKS.md
"Whole pipeline"). This class keeps the interface the trainer, densification and checkpoints use --
``param_groups`` (dicts with ``params``, ``lr``, ``name``, ``fused``), ``state[p]`` (``step``, ``exp_avg``,
``exp_avg_sq``), ``step()``, ``zero_grad()`` -- and computes what ``torch.optim.Adam(groups, betas=...,
eps=..., fused=...)`` computes without weight decay or amsgrad:

- ``fused=True`` (CUDA): ``torch._fused_adam_`` once per group, the kernel ``torch.optim.Adam`` calls;
  ``step`` lives on the parameter's device.
- ``fused=False``: torch's single-tensor Adam, step by step (its ``step`` on the CPU, read as a float).

tests/gaussians4d/test_adam.py compares both with ``torch.optim.Adam`` over many steps, to the bit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class Adam:
    """Adam over named parameter groups (see the module docstring); every group shares ``betas`` and ``eps``."""

    def __init__(self, groups: Iterable[dict[str, Any]], betas: tuple[float, float], eps: float, fused: bool):
        self.param_groups = [{**g, "params": list(g["params"]), "fused": fused} for g in groups]
        self.betas, self.eps = betas, eps
        self.state: dict[Tensor, dict[str, Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def _state(self, p: Tensor, fused: bool) -> dict[str, Tensor]:
        state = self.state.get(p)
        if not state:
            step = torch.zeros((), dtype=torch.float32, device=p.device) if fused else torch.tensor(0.0)
            state = {"step": step, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            self.state[p] = state
        return state

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            fused, lr = group["fused"], group["lr"]
            states = [self._state(p, fused) for p in params]
            steps = [s["step"] for s in states]
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            grads = [p.grad for p in params]
            if fused:
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(
                    params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, beta1=beta1, beta2=beta2,
                    weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False,
                )  # fmt: skip
                continue
            for p, grad, exp_avg, exp_avg_sq, step_t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
                step_t += 1
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = step_t.item()
                bias_correction2_sqrt = (1 - beta2**step) ** 0.5
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
                p.addcdiv_(exp_avg, denom, value=-(lr / (1 - beta1**step)))
