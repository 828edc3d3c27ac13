"""Disk space: a stage checks that its outputs fit before it writes, and a disk that fills up anyway is one line.

Each stage calls :func:`require_space` with an estimate of what it writes (measured sizes per pixel, per
view, per Gaussian; docs/robustness.md). A write that still fails with ``ENOSPC`` (another program filled
the disk) reaches :func:`utils.cli.run_main`, which prints :func:`disk_full_line`: the folder, the space
free and the estimate. Stages write through temporary files and staging folders, so the earlier outputs
are intact and the next run after freeing space completes.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from utils.errors import UserError

MB = 1 << 20
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_estimate: dict[str, object] = {}  # the last check made in this process (folder, need, what): disk_full_line names it


def free_bytes(folder: str | Path) -> int:
    return shutil.disk_usage(folder).free


def require_space(folder: str | Path, need: int, what: str) -> None:
    """Refuse, before any write, when the disk holding ``folder`` has less than ``need`` bytes free."""
    _estimate.update(folder=str(folder), need=int(need), what=what)
    free = free_bytes(folder)
    if free < need:
        raise UserError(
            f"the disk holding {folder} has {free // MB} MB free, {what} needs about {-(-need // MB)} MB",
            "free space there, or work on a copy of the scene on a larger disk",
        )


def disk_full_line(fallback: str | Path = ".") -> str:
    """The one line for a write that failed with ENOSPC: where (the folder the stage's :func:`require_space`
    checked, else ``fallback``), how much is free, how much the stage needs."""
    folder = _estimate.get("folder", fallback)
    try:
        free = f"{free_bytes(folder) // MB} MB free"
    except OSError:
        free = "no space"
    need = f"; {_estimate['what']} needs about {-(-int(_estimate['need']) // MB)} MB" if _estimate else ""  # type: ignore[call-overload]
    return (
        f"the disk holding {folder} is full ({free}{need}). Fix: free space there and re-run: the earlier "
        "outputs are as they were."
    )


def motion_bytes(pixels: int, n_views: int, n_frames: int, video_views: int) -> int:
    """train_motion.py's outputs: per view its image, depth, masks and flow (~13 B/px), per video frame a PNG
    (~0.7 B/px), the point cloud and 3D motion (~80 B/px), measured on the demo and mom_scene_0; +25 %."""
    return int(1.25 * pixels * (13 * n_views + 0.7 * n_frames * video_views + 80)) + MB  # + manifest, report


def gaussians_bytes(max_gaussians: int) -> int:
    """train_4DGS.py's outputs: the PLY and its checkpoint (~250 B per Gaussian each), the deformation field."""
    return int(600 * max_gaussians + 32 * MB)


def render_bytes(pixels: int, frames: int, paths: int, save_frames: bool, gif: bool, ply: int) -> int:
    """render_4DGS.py's outputs: H.264 (~0.2 B/px per frame), GIFs (~0.5), PNG frames (~1.5), PLYs; +25 %."""
    per_frame = pixels * (0.2 + (0.5 if gif else 0.0) + (1.5 if save_frames else 0.0))
    return int(1.25 * (per_frame * frames * paths + ply)) + MB  # + manifest, report
