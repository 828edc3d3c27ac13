"""A small, self-consistent stage-1 output for the 4D Gaussian tests and benchmarks.

Points come from a procedural landscape's depth (one per pixel); moving points (region > 0) get a
known 3D motion; the multi-view images and the looping video are rendered with the project's
rasterizer from Gaussians made from ALL the points, moved by that motion on the loop schedule stage 1
uses (scene/loop.py). The model is then trained from a subsample, so a good fit is
reachable but not given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from annotation.procedural import make_landscape
from gaussians4d.deformation import DeformationConfig
from gaussians4d.model import init_gaussians
from motion.config import VideoConfig
from scene.cameras import Camera
from scene.io import PointCloud, write_cameras, write_mask, write_npy, write_png, write_points
from scene.loop import loop_record
from scene.manifest import StageRun
from scene.paths import ScenePaths


def _cameras(width: int, height: int, focal: float) -> list[Camera]:
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    cams = []
    for dx, dy in ((0.0, 0.0), (0.06, 0.0), (-0.06, 0.02)):
        w2c = np.eye(4)
        w2c[:3, 3] = [-dx, -dy, 0.0]
        cams.append(Camera(K, w2c, width, height))
    return cams


def make_stage1_scene(folder: Path, width: int = 80, height: int = 48, n_frames: int = 8, seed: int = 0) -> ScenePaths:
    """Write a complete, consistent ``motion`` stage output under ``folder``; returns its ScenePaths."""
    from gaussian_renderer import render

    land = make_landscape(width, height, seed=seed)
    scene = ScenePaths(folder)
    cams = _cameras(width, height, land.focal)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    z = np.minimum(land.depth.astype(np.float64), 60.0)  # keep the sky within reach of the tiny views
    xyz = np.stack([(xx - width / 2) * z / land.focal, (yy - height / 2) * z / land.focal, z], -1).reshape(-1, 3)
    region = land.regions.reshape(-1).astype(np.int32)
    cloud = PointCloud(xyz.astype(np.float32), land.image.reshape(-1, 3).copy(), region, np.zeros(len(xyz), np.int32))
    # Known motion: about 0.4 px per frame sideways in the photo, proportional to depth.
    motion = np.zeros_like(cloud.xyz)
    motion[region > 0, 0] = 0.4 * z.reshape(-1)[region > 0] / land.focal
    schedule = VideoConfig(n_frames=n_frames).schedule(seed, (width, height))
    truth = init_gaussians(
        cloud, motion, schedule, cams[0], max_points=len(cloud), sh_degree=0, init_opacity=0.99,
        deformation=DeformationConfig(4, (1,), 4, 2, 4), flow_scale=1.0,
    )  # fmt: skip
    viewmats = torch.tensor(np.stack([c.w2c for c in cams]), dtype=torch.float32)
    Ks = torch.tensor(np.stack([c.K for c in cams]), dtype=torch.float32)

    def shot(t: float, cam: int) -> np.ndarray:
        with torch.no_grad():
            p = truth.at(t, use_field=False)
            out = render(
                p.means,
                p.quats,
                p.scales,
                p.opacities,
                p.sh,
                viewmats[cam : cam + 1],
                Ks[cam : cam + 1],
                width,
                height,
                sh_degree=0,
            )
        return out.rgb[0].clamp(0, 1).numpy()

    m = scene.motion
    folder.mkdir(parents=True, exist_ok=True)
    StageRun(scene, "mask", {"input_dir": str(folder)}, inputs=[]).finish(
        outputs=[]
    )  # no annotation: stage 1 is made here
    run = StageRun(scene, "motion", {"video": {"n_frames": n_frames}}, inputs=[])
    run.info["loop"] = loop_record(schedule)
    write_points(m.points, cloud)
    write_npy(m.motion3d, motion)
    write_cameras(m.cameras, cams)
    for i in range(len(cams)):
        write_png(m.view_image(i), shot(0.0, i))
        valid = np.ones((height, width), bool)
        valid[:, : width // 8] = i == 0  # pretend a strip was inpainted in the side views
        write_mask(m.view_valid(i), valid)
    for i in range(n_frames):
        write_png(m.video_frame(0, i), shot(i / n_frames, 0))
    run.finish(outputs=[m.dir])
    return scene
