"""Argument validation for :func:`gaussian_renderer.render` (ValueError/TypeError naming the argument).

Types, shapes, dtypes and devices are checked at once; conditions on values (finite, ranges) are gathered as
device scalars and read back with one synchronisation (:class:`ValueChecks`), which keeps validation cheap
on CUDA.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from .sh import MAX_SH_DEGREE, num_sh_bases


class ValueChecks:
    """Value conditions on tensors, evaluated together by :meth:`raise_first`."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # False: value conditions are neither computed nor checked (no device sync)
        self._items: list[tuple[Tensor, str]] = []

    def add(self, bad: Callable[[], Tensor], message: str) -> None:
        """Register a condition: ``bad()`` gives a boolean scalar tensor that is True when the input is bad."""
        if self.enabled:
            self._items.append((bad().reshape(()), message))

    def raise_first(self) -> None:
        """Raise ValueError with the message of the first bad condition, if any."""
        if not self._items:
            return
        flags = torch.stack([bad for bad, _ in self._items]).tolist()
        for flag, (_, message) in zip(flags, self._items):
            if flag:
                raise ValueError(message)


def check_tensor(
    name: str, x: object, checks: ValueChecks, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> Tensor:
    """Require a floating tensor (of ``dtype`` / on ``device`` when given); finiteness goes to ``checks``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but means has {dtype}; use one dtype for all inputs")
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but means is on {device}; put all inputs on one device")
    checks.add(lambda: ~torch.isfinite(x).all(), f"{name} contains non-finite values (nan or inf)")
    return x


def check_shape(name: str, x: Tensor, shape: tuple[int | None, ...]) -> None:
    """Require ``x.shape`` to match ``shape`` (None = any size)."""
    ok = x.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
    if not ok:
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")


def check_size(name: str, value: object) -> int:
    """Require a positive integral image size (Python or NumPy int); returns it as int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def check_gaussians(means, quats, scales, opacities, colors, sh_degree, checks: ValueChecks) -> tuple[int, ...]:
    """Validate the per-Gaussian tensors against means [N, 3] or [B, N, 3]; returns the batch shape (() or (B,))."""
    check_tensor("means", means, checks)
    if means.dim() not in (2, 3) or means.shape[-1] != 3:
        raise ValueError(f"means must have shape [N, 3] or [B, N, 3], got {list(means.shape)}")
    lead, n, dt, dev = tuple(means.shape[:-2]), means.shape[-2], means.dtype, means.device
    check_shape("quats", check_tensor("quats", quats, checks, dt, dev), (*lead, n, 4))
    checks.add(
        lambda: (quats == 0).all(dim=-1).any(), "quats contains a zero quaternion; quaternions must have non-zero norm"
    )
    check_shape("scales", check_tensor("scales", scales, checks, dt, dev), (*lead, n, 3))
    # 0 is allowed: exp() of very negative log-scales underflows to it.
    checks.add(lambda: (scales < 0).any(), "scales must be non-negative (pass activated scales, e.g. exp(log_scales))")
    check_shape("opacities", check_tensor("opacities", opacities, checks, dt, dev), (*lead, n))
    checks.add(
        lambda: ((opacities < 0) | (opacities > 1)).any(),
        "opacities must lie in [0, 1] (pass activated opacities, e.g. sigmoid(logits))",
    )
    check_tensor("colors", colors, checks, dt, dev)
    if sh_degree is None:
        check_shape("colors", colors, (*lead, n, 3))
        return lead
    if isinstance(sh_degree, bool) or not isinstance(sh_degree, int) or not 0 <= sh_degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be None or an int in 0..{MAX_SH_DEGREE}, got {sh_degree!r}")
    check_shape("colors", colors, (*lead, n, None, 3))
    if colors.shape[-2] < num_sh_bases(sh_degree):
        raise ValueError(
            f"colors has {colors.shape[-2]} SH coefficients per channel; sh_degree={sh_degree} needs "
            f">= {num_sh_bases(sh_degree)}"
        )
    return lead


def check_cameras(viewmats, ks, width, height, means: Tensor, checks: ValueChecks, lead: tuple[int, ...] = ()) -> int:
    """Validate viewmats [*lead, C, 4, 4], Ks [*lead, C, 3, 3] and the image size; returns C."""
    check_tensor("viewmats", viewmats, checks, means.dtype, means.device)
    check_shape("viewmats", viewmats, (*lead, None, 4, 4))
    n_cams = viewmats.shape[-3]
    if n_cams == 0:
        raise ValueError(f"viewmats must hold at least one camera, got shape {list(viewmats.shape)}")
    check_tensor("Ks", ks, checks, means.dtype, means.device)
    check_shape("Ks", ks, (*lead, n_cams, 3, 3))
    checks.add(
        lambda: (ks[..., 0, 0] <= 0).any() | (ks[..., 1, 1] <= 0).any(),
        "Ks must have positive focal lengths Ks[..., 0, 0] and Ks[..., 1, 1]",
    )
    check_size("width", width)
    check_size("height", height)
    return n_cams


def check_background(background, n_cams: int, means: Tensor, checks: ValueChecks, lead: tuple[int, ...] = ()) -> Tensor:
    """Validate background (None | [3] | [*lead, C, 3]) and return it as [*lead, C, 3]."""
    if background is None:
        return torch.zeros(*lead, n_cams, 3, dtype=means.dtype, device=means.device)
    check_tensor("background", background, checks, means.dtype, means.device)
    if background.shape == (3,):
        return background.expand(*lead, n_cams, 3)
    check_shape("background", background, (*lead, n_cams, 3))
    return background


def check_planes(near: float, far: float) -> None:
    """Require 0 < near < far."""
    if not (isinstance(near, (int, float)) and isinstance(far, (int, float))):
        raise TypeError("near and far must be numbers")
    if not 0 < near < far:
        raise ValueError(f"near and far must satisfy 0 < near < far, got near={near}, far={far}")
