"""CUDA backend: a thin wrapper of ``gsplat.rasterization`` (v1.5.3) with the reference's conventions."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

BUILD_SECONDS = 75  # gsplat's one-time CUDA build on the GPU machine (16 cores); docs/BENCHMARKS.md


def extension_built() -> bool:
    """Whether gsplat's CUDA extension is there already (prebuilt in the wheel, or JIT-built on this machine)."""
    try:
        from gsplat import csrc  # noqa: F401 (a prebuilt extension)

        return True
    except ImportError:
        pass
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return (Path(_get_build_directory("gsplat_cuda", verbose=False)) / "gsplat_cuda.so").is_file()
    except Exception:  # a private torch helper: when it changes, assume a build is needed
        return False


@functools.cache
def load_extension() -> None:
    """Import gsplat's CUDA extension, building it first when needed (said in one line: it takes a while)."""
    if not extension_built():
        from utils.console import info

        info(
            f"building gsplat's CUDA extension: once per machine, about {BUILD_SECONDS} s (bash scripts/setup.sh does it ahead)"
        )
    try:
        from gsplat.cuda._backend import _C
    except Exception as exc:  # gsplat's JIT build raises whatever the compiler or torch raise
        _C, why = None, f" ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
    else:
        why = ""
    if _C is None:
        from utils.errors import UserError

        raise UserError(
            f"gsplat's CUDA extension could not be built or loaded{why}",
            "install the CUDA toolkit (nvcc) matching torch's CUDA, or run on the CPU with --device cpu",
        )


def render_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None,
    background: Tensor,
    near: float,
    far: float,
    depth: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """Render with gsplat (CUDA tensors, inputs validated; background [C, 3], or [B, C, 3] when batched).

    Returns rgb [C, H, W, 3], depth [C, H, W], alpha [C, H, W], radii [C, N] int32, means2d [C, N, 2]; a
    batched call (Gaussians [B, N, ...], cameras [B, C, ...]) gives each a leading B. ``depth=False``: depth None.
    """
    load_extension()
    from gsplat import rasterization  # imported lazily: it needs CUDA and JIT-builds on first use

    render_colors, render_alphas, meta = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        ks,
        width,
        height,
        near_plane=near,
        far_plane=far,
        sh_degree=sh_degree,
        packed=False,
        backgrounds=background.contiguous(),
        render_mode="RGB+ED" if depth else "RGB",
        rasterize_mode="classic",
    )
    radii = meta["radii"]
    if radii.dim() > means.dim():  # gsplat >= 1.5 returns per-axis radii [..., C, N, 2]
        radii = radii.amax(dim=-1)
    return (
        render_colors[..., :3],
        render_colors[..., 3] if depth else None,
        render_alphas[..., 0],
        radii.to(torch.int32),
        meta["means2d"],
    )
