"""Where every artifact lives in a scene folder (the contract of docs/scene_format.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MASK_CMD = "python scripts/generate_mask.py --input_dir SCENE"
MOTION_CMD = "python train_motion.py --input_dir SCENE"
GAUSSIANS_CMD = "python train_4DGS.py --input_dir SCENE"
RENDER_CMD = "python render_4DGS.py --input_dir SCENE"
VIDEO_QUALITY, VIDEO_QUALITY_PLOT = "quality.json", "quality.png"  # in SCENE/video/


@dataclass(frozen=True)
class MotionPaths:
    """Outputs of train_motion.py, relative to its folder (``SCENE/motion`` once complete)."""

    dir: Path

    @property
    def depth(self) -> Path:  # (H, W) float32 z-depth of the photo, scene units
        return self.dir / "depth.npy"

    @property
    def depth_preview(self) -> Path:
        return self.dir / "depth.png"

    @property
    def cameras(self) -> Path:
        return self.dir / "cameras.json"

    @property
    def points(self) -> Path:
        return self.dir / "points.ply"

    @property
    def views_sheet(self) -> Path:
        return self.dir / "views.png"

    @property
    def views_dir(self) -> Path:
        return self.dir / "views"

    def view_image(self, i: int) -> Path:  # (H, W, 3) 8-bit PNG, holes inpainted
        return self.views_dir / f"{i:02d}.png"

    def view_depth(self, i: int) -> Path:  # (H, W) float32 z-depth
        return self.views_dir / f"{i:02d}_depth.npy"

    def view_valid(self, i: int) -> Path:  # 255 = seen in the photo, 0 = inpainted
        return self.views_dir / f"{i:02d}_valid.png"

    def view_regions(self, i: int) -> Path:  # (H, W) region ids as seen from view i
        return self.views_dir / f"{i:02d}_regions.png"

    @property
    def flows_dir(self) -> Path:
        return self.dir / "flows"

    def flow(self, i: int) -> Path:  # (H, W, 2) float32, pixels per frame
        return self.flows_dir / f"{i:02d}.npy"

    def flow_preview(self, i: int) -> Path:
        return self.flows_dir / f"{i:02d}.png"

    @property
    def flow_arrows(self) -> Path:
        return self.dir / "flow_arrows.png"

    @property
    def motion3d(self) -> Path:  # (P, 3) float32, world units per frame, rows = points.ply rows
        return self.dir / "motion3d.npy"

    @property
    def motion_loss(self) -> Path:
        return self.dir / "motion_loss.json"

    @property
    def motion_loss_plot(self) -> Path:
        return self.dir / "motion_loss.png"

    @property
    def video_dir(self) -> Path:
        return self.dir / "video"

    def video_frame(self, view: int, frame: int) -> Path:
        return self.video_dir / f"{view:02d}" / f"{frame:04d}.png"

    def video_mp4(self, view: int) -> Path:
        return self.video_dir / f"{view:02d}.mp4"

    @property
    def loop_quality(self) -> Path:  # texture retention per frame, seam, motion of every video (scene/quality.py)
        return self.dir / "loop_quality.json"

    @property
    def loop_quality_plot(self) -> Path:
        return self.dir / "loop_quality.png"


@dataclass(frozen=True)
class GaussianPaths:
    """Outputs of train_4DGS.py, relative to ``SCENE/gaussians``."""

    dir: Path

    @property
    def point_cloud_dir(self) -> Path:
        return self.dir / "point_cloud"

    def iteration_dir(self, iteration: int) -> Path:
        return self.point_cloud_dir / f"iteration_{int(iteration)}"

    def ply(self, iteration: int) -> Path:  # canonical Gaussians, standard 3DGS PLY layout
        return self.iteration_dir(iteration) / "point_cloud.ply"

    def deformation(self, iteration: int) -> Path:  # deformation weights + per-Gaussian motion (safetensors)
        return self.iteration_dir(iteration) / "deformation.safetensors"

    def deformation_json(self, iteration: int) -> Path:  # hyper-parameters of the deformation and the loop
        return self.iteration_dir(iteration) / "deformation.json"

    @property
    def cameras(self) -> Path:  # stage 1's cameras, copied (cameras[0] = the photo's)
        return self.dir / "cameras.json"

    @property
    def config(self) -> Path:  # resolved training config
        return self.dir / "config.json"

    @property
    def metrics(self) -> Path:  # PSNRs and the loss curve
        return self.dir / "metrics.json"

    @property
    def training_plot(self) -> Path:  # loss and PSNR over the iterations, coarse and fine stages
        return self.dir / "training.png"

    @property
    def previews_dir(self) -> Path:
        return self.dir / "previews"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"


@dataclass(frozen=True)
class ScenePaths:
    """Every file of a scene folder. Stage outputs are complete only when their manifest exists."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    # --- the user's inputs
    @property
    def labelme_json(self) -> Path:
        return self.root / "image.json"

    # --- scripts/generate_mask.py
    @property
    def photo(self) -> Path:  # the photo as 8-bit RGB at annotation size
        return self.root / "image_rgb.png"

    @property
    def mask(self) -> Path:
        return self.root / "mask.png"

    @property
    def regions(self) -> Path:
        return self.root / "regions.png"

    @property
    def hints(self) -> Path:
        return self.root / "hints.json"

    @property
    def mask_preview(self) -> Path:
        return self.root / "mask_preview.png"

    # --- stage folders
    @property
    def motion(self) -> MotionPaths:
        return MotionPaths(self.root / "motion")

    @property
    def gaussians_dir(self) -> Path:
        return self.root / "gaussians"

    @property
    def gaussians(self) -> GaussianPaths:
        return GaussianPaths(self.gaussians_dir)

    @property
    def video_dir(self) -> Path:
        return self.root / "video"

    @property
    def video_quality(self) -> Path:  # the static path's texture retention, seam and motion (scene/quality.py)
        return self.video_dir / VIDEO_QUALITY

    @property
    def video_quality_plot(self) -> Path:
        return self.video_dir / VIDEO_QUALITY_PLOT

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def manifest(self, stage: str) -> Path:
        """``stage`` in {"mask", "motion", "gaussians", "render"}."""
        return self.root / "manifests" / f"{stage}.json"
