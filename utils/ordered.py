"""Float arithmetic whose result does not depend on the number of CPU threads.

torch splits a large tensor between CPU threads, and where each thread's share ends decides which
elements a vectorised kernel finishes with scalar code (for exp and log the two round differently)
and in which order a reduction adds its terms; BLAS products (matmul, einsum, addmm) also choose
their kernels by the partition. Results then differ in the last bits with the thread count, and an
L1 fit amplifies those bits into visibly different outputs. Code that must give byte-identical
results whatever the thread count (stage 1, docs/robustness.md) uses only:

- element-wise ``+ - * /``, ``sqrt`` and comparisons: exact IEEE operations, whatever the partition;
- sums in a fixed pairwise order (:func:`ordered_sum`), made of element-wise additions;
- ``index_add_`` scatter-adds: torch's CPU kernel adds in index order, whatever the thread count;
- transcendental functions through :func:`serial`, in blocks too small for torch to split.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

SERIAL_BLOCK = 1 << 14
"""Elements per block of :func:`serial`: below torch's parallel grain (32768), so one thread runs a block."""


def ordered_sum(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Sum of ``x`` over ``dim`` (all elements when None) in a fixed pairwise order.

    The terms are added as a binary tree: rows ``2k`` and ``2k + 1`` first, then the pairs of pairs,
    ...; at a level with an odd count the last row joins the last pair. Every level is one element-wise addition,
    so the result depends only on the shape, never on the thread count. Cost: about two passes.
    """
    if dim is None:
        return ordered_sum(x.reshape(-1), 0)
    dim = dim % x.ndim
    y = x.movedim(dim, 0)
    if y.shape[0] == 0:
        y = torch.zeros_like(y[:1])
    while y.shape[0] > 1:
        half = y.shape[0] // 2
        pairs = y[0 : 2 * half : 2] + y[1 : 2 * half : 2]
        if y.shape[0] % 2:  # the odd row out joins the last pair
            pairs[-1] += y[-1]
        y = pairs
    out = y[0]
    return out.unsqueeze(dim) if keepdim else out


def ordered_mean(x: Tensor, dim: int | None = None) -> Tensor:
    """:func:`ordered_sum` divided by the number of terms."""
    n = x.numel() if dim is None else x.shape[dim]
    return ordered_sum(x, dim) / max(n, 1)


def serial(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)`` for an element-wise ``fn`` (exp, log, ...), run on the CPU in blocks one thread computes.

    On CUDA (deterministic element-wise kernels) it is ``fn(x)``.
    """
    if x.device.type != "cpu" or x.numel() <= SERIAL_BLOCK:
        return fn(x)
    flat = x.reshape(-1)
    return torch.cat([fn(block) for block in flat.split(SERIAL_BLOCK)]).view(x.shape)
