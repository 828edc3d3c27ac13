"""The one typed configuration of train_motion.py (stage 1), in groups; every leaf is a command-line option.

The resolved config is recorded in ``manifests/motion.json`` (``config``) and read back with
:func:`utils.config.from_dict`. Groups follow the stage: depth -> views (with their hole filling) ->
2D flow per view -> 3D motion fit -> looping video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from scene.loop import LoopSchedule, default_cycle
from utils.errors import require


@dataclass(frozen=True)
class DepthConfig:
    depth: Literal["auto", "prior", "model"] = "auto"
    """Depth source: auto = --depth_model if given, else the geometric landscape prior."""
    depth_model: str | None = None
    """A transformers depth-estimation model: local folder or hub id."""

    def validate(self) -> None:
        require(
            self.depth != "model" or bool(self.depth_model),
            "--depth model needs a model",
            "add --depth_model PATH_OR_HUB_ID, or use --depth prior",
        )


@dataclass(frozen=True)
class ViewsConfig:
    resolution: str | None = None
    """Working size: N = longest side N pixels (never upscaled), or WxH; none = the photo's size."""
    n_views: int = 25
    """Number of views, 1..25 (view 0 = the photo)."""
    view_span: float = 1.0
    """Scale of the view set's angles (1.0 = +-20 deg yaw, +-22.5 deg pitch, +-5 deg orbit)."""
    pivot_depth: float = 4.3
    """Centre of the orbit views, scene units."""
    fov: float | None = None
    """Vertical field of view in degrees; none = 582.69 px x H / 512 (about 47.4 deg)."""

    def validate(self) -> None:
        require(1 <= self.n_views <= 25, f"--n_views {self.n_views} is out of range", "use 1 to 25")
        require(
            0.0 <= self.view_span <= 3.0,
            f"--view_span {self.view_span} is out of range",
            "use 0 to 3 (1 = the paper's angles)",
        )
        require(self.pivot_depth > 0, f"--pivot_depth {self.pivot_depth} must be positive", "use e.g. 4.3")
        require(
            self.fov is None or 10.0 <= self.fov <= 150.0, f"--fov {self.fov} is out of range", "use 10 to 150 degrees"
        )


@dataclass(frozen=True)
class InpaintConfig:
    inpaint: Literal["auto", "texture", "opencv", "model"] = "auto"
    """Hole filling: auto = --inpaint_model if given, else texture (a smooth continuation of the background
    side plus fine detail copied from the view's background at a similar depth, motion/fill.py); opencv =
    Telea + a smooth fill (the former default, for comparison); model = --inpaint_model."""
    inpaint_model: str | None = None
    """A diffusers Stable Diffusion inpainting pipeline: local folder or hub id."""
    inpaint_steps: int = 25
    """Diffusion steps per view."""
    inpaint_prompt: str | None = None
    """Text prompt of the learned inpainter (none = a generic landscape prompt)."""
    inpaint_size: int = 512
    """Longer side in pixels at which the learned inpainter runs (512 for SD 1.5/2; a multiple of 8)."""

    def validate(self) -> None:
        require(self.inpaint_steps >= 1, "--inpaint_steps must be at least 1", "use e.g. 25")
        require(
            8 <= self.inpaint_size <= 2048,
            f"--inpaint_size {self.inpaint_size} is out of range",
            "use 8 to 2048 (512 for SD 2)",
        )
        require(
            self.inpaint != "model" or bool(self.inpaint_model),
            "--inpaint model needs a model",
            "add --inpaint_model PATH_OR_HUB_ID, or use --inpaint texture",
        )


@dataclass(frozen=True)
class FlowConfig:
    flow: Literal["auto", "hints", "model"] = "auto"
    """2D flow of each view: hints = a smooth interpolation of the hints (no weights); model = 3D-Cinemagraphy's
    learned flow network (--flow_model); auto = the model when --flow_model is given, else hints."""
    flow_model: str | None = None
    """3D-Cinemagraphy's sceneflow_model.pth (or a .safetensors with netG.-prefixed keys; ckpts/README.md)."""
    speed: float = 1.0 / 50.0
    """Fraction of a hint's length travelled per frame (the original's (end - start) / 50)."""
    flow_sigma: float = 0.15
    """Width of the Gaussian hint interpolation, as a fraction of the image diagonal."""
    flow_weights: Literal["photo", "view"] = "photo"
    """Where hint distances are measured: photo (one 3D field, consistent views) or each view's own image."""

    def validate(self) -> None:
        require(
            math.isfinite(self.speed) and 0 < self.speed <= 1,
            f"--speed {self.speed} is out of range",
            "use a fraction in (0, 1], e.g. 0.02 (= 1/50)",
        )
        require(0 < self.flow_sigma <= 10, f"--flow_sigma {self.flow_sigma} is out of range", "use e.g. 0.15")
        require(
            self.flow != "model" or bool(self.flow_model),
            "--flow model needs a model",
            "add --flow_model ckpts/sceneflow_model.pth, or use --flow hints",
        )

    @property
    def uses_model(self) -> bool:
        return self.flow == "model" or (self.flow == "auto" and bool(self.flow_model))


@dataclass(frozen=True)
class FitConfig:
    train_iteration: int = 100
    """Adam steps of the 3D motion optimisation (after a Gauss-Newton start)."""
    motion_lr: float = 0.02
    """Adam learning rate, pixels (motion3d.py)."""
    smooth_weight: float = 0.05
    """Weight of the neighbour smoothness prior of the 3D motion."""
    knn: int = 6
    """Neighbours per point in the smoothness graph (same region only)."""
    motion_init: Literal["gauss_newton", "zero"] = "gauss_newton"
    """Start of the fit: the linearised least-squares solution of every point, or zero motion."""
    gn_iterations: int = 2
    """Gauss-Newton iterations of the start."""
    depth_tolerance: float = 0.02
    """Relative depth slack of the visibility test (a point is seen in a view if not behind its surface)."""
    log_every: int = 10
    """Record the loss every this many steps (motion_loss.json)."""

    def validate(self) -> None:
        require(self.train_iteration >= 0, "--train_iteration must be >= 0", "use e.g. 200")
        require(self.knn >= 1, "--knn must be >= 1", "use e.g. 6")
        require(self.gn_iterations >= 0, "--gn_iterations must be >= 0", "use e.g. 2")
        require(0 <= self.depth_tolerance <= 1, "--depth_tolerance must be in [0, 1]", "use e.g. 0.02")
        require(self.log_every >= 1, "--log_every must be >= 1", "use e.g. 10")
        require(0 < self.motion_lr <= 10, f"--motion_lr {self.motion_lr} is out of range", "use e.g. 0.02")
        require(self.smooth_weight >= 0, "--smooth_weight must be >= 0", "use e.g. 0.05")


@dataclass(frozen=True)
class VideoConfig:
    n_frames: int = 120
    """Frames in the loop (frame i shows loop time t = i / n_frames)."""
    video_views: str = "0"
    """Views to animate: "0", a comma list like "0,6,12", or "all"."""
    fps: float = 30.0
    """Frame rate of the mp4 previews."""
    loop: Literal["layers", "crossfade"] = "layers"
    """How the loop closes: layers = two copies on a short cycle that each pixel switches between at its own
    moment, blended keeping contrast (scene/loop.py); crossfade = one global cross-fade of copies a whole loop
    apart (the behaviour before, for comparison)."""
    cycle: int = 0
    """Frames of the layers' cycle (a divisor of --n_frames); 0 = the divisor nearest to 40."""
    transition: float = 0.1
    """Fraction of a cycle a pixel takes to switch from one layer to the other (0 < t <= 0.5)."""

    def validate(self) -> None:
        require(2 <= self.n_frames <= 10000, f"--n_frames {self.n_frames} is out of range", "use 2 to 10000, e.g. 120")
        require(0 < self.fps <= 240, f"--fps {self.fps} is out of range", "use e.g. 30")
        require(
            self.cycle == 0 or (self.cycle >= 2 and self.n_frames % self.cycle == 0),
            f"--cycle {self.cycle} does not divide --n_frames {self.n_frames}",
            "give a divisor of --n_frames of at least 2, or 0 for the default",
        )
        require(0 < self.transition <= 0.5, f"--transition {self.transition} is out of range", "use e.g. 0.1")

    def schedule(self, seed: int, photo_size: tuple[int, int]) -> LoopSchedule:
        """The loop schedule these options describe (scene/loop.py)."""
        cycle = self.cycle or default_cycle(self.n_frames)
        if cycle < 2:  # n_frames has no divisor >= 2 near the target (prime): one cycle per loop
            cycle = self.n_frames
        return LoopSchedule(self.n_frames, self.loop, cycle, self.transition, seed, photo_size)


@dataclass(frozen=True)
class MotionConfig:
    """Options of train_motion.py."""

    input_dir: str = ""
    """Scene folder (after scripts/generate_mask.py)."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda or cuda:N."""
    threads: int = 0
    """CPU threads for torch (0 = torch's default, one per core); a speed knob only: the outputs are the same."""
    seed: int = 0
    """Random seed (learned inpainting)."""
    depth: DepthConfig = field(default_factory=DepthConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def validate(self) -> None:
        require(self.threads >= 0, f"--threads {self.threads} is negative", "use 0 (default) or a positive count")
        video_view_indices(self.video.video_views, self.views.n_views)  # fails before any work, not after


def video_view_indices(text: str, n_views: int) -> list[int]:
    """``--video_views`` -> sorted view indices."""
    text = str(text).strip().lower()
    if text == "all":
        return list(range(n_views))
    try:
        views = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        views = []
    require(bool(views), f"--video_views {text!r} is not a list of views", 'use e.g. "0", "0,6,12" or "all"')
    require(
        views[0] >= 0 and views[-1] < n_views,
        f"--video_views {text!r} names views outside 0..{n_views - 1}",
        'use e.g. "0" or "all"',
    )
    return views
