"""The one typed configuration of render_4DGS.py (stage 3); every field is a command-line option.

The resolved config is recorded in ``manifests/render.json`` (``config``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scene.cameras import image_size
from utils.errors import UserError, require


@dataclass(frozen=True)
class RenderConfig:
    """Options of render_4DGS.py."""

    input_dir: str = ""
    """Scene folder (after train_4DGS.py)."""
    paths: tuple[str, ...] | None = None
    """Camera-path presets to render (space or comma separated; all = every looping preset, see
    docs/camera_paths.md); none = all, or no preset when --camera_path is given."""
    camera_path: str | None = None
    """A custom keyframed camera path, FILE.json (docs/camera_paths.md)."""
    loops: int = 1
    """Scene loops per video; frames = loops x frames per loop."""
    fps: float = 30.0
    """Video frame rate."""
    resolution: str | None = None
    """Video size: N = longest side N pixels, or WxH; none = the photo's size."""
    gif: bool = False
    """Also write <path>.gif (at most 480 pixels wide)."""
    save_frames: bool = False
    """Also write every frame as PNG under video/frames/<path>/."""
    export_ply: bool = False
    """Also write one standard 3DGS PLY per loop frame under video/ply/."""
    background: str = "black"
    """Background colour: black, white or R,G,B in [0, 1]."""
    path_scale: float | None = None
    """Unit of the presets' amplitudes in scene units; none = automatic (docs/camera_paths.md)."""
    fill_limit: float = 0.02
    """Most of any frame's pixels that may show content the photo never showed (filled holes, or nothing)
    reaching the frame's edge: each path zooms in (a crop) and, past --max_zoom, moves less until it stays
    under it; 1 = never frame."""
    max_zoom: float = 1.3
    """The largest zoom the framing may use before it reduces a preset path's motion."""
    iteration: int | None = None
    """Trained iteration to load; none = the last."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda or cuda:N."""
    backend: Literal["auto", "torch", "gsplat"] = "auto"
    """Rasterizer: auto = gsplat on CUDA, else the PyTorch one."""

    def validate(self) -> None:
        require(
            1 <= self.loops <= 1000,
            f"--loops must be between 1 and 1000, got {self.loops}",
            "give a whole number of loops, e.g. 1",
        )
        require(
            math.isfinite(self.fps) and 0 < self.fps <= 240,
            f"--fps must be in (0, 240], got {self.fps:g}",
            "e.g. --fps 30",
        )
        require(
            self.path_scale is None or (math.isfinite(self.path_scale) and self.path_scale > 0),
            f"--path_scale must be positive, got {self.path_scale}",
            "omit it for the automatic scale",
        )
        require(0 < self.fill_limit <= 1, f"--fill_limit must be in (0, 1], got {self.fill_limit}", "e.g. 0.02")
        require(1 <= self.max_zoom <= 4, f"--max_zoom must be in [1, 4], got {self.max_zoom}", "e.g. 1.3")
        image_size(self.resolution, 8192, 8192, upscale=True)  # syntax and range, before the model loads
        background_rgb(self.background)


def background_rgb(text: str) -> tuple[float, float, float]:
    """``--background`` -> RGB in [0, 1]."""
    named = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}
    if text in named:
        return named[text]
    try:
        rgb = tuple(float(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in rgb):
        raise UserError(f"bad --background {text!r}", "use black, white or R,G,B with values in [0, 1]")
    return rgb  # type: ignore[return-value]
