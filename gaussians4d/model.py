"""The 4D Gaussian model: canonical Gaussians + stage 1's 3D motion + a periodic deformation field.

Loop by construction, on stage 1's loop schedule (scene/loop.py): stage 1's video shows the photo's
moving content as two layers, displaced along the flow by d_0(t), d_1(t) video frames and shown with
weights w_0, w_1 = 1 - w_0. The model does the same in 3D: each moving Gaussian (motion region > 0)
is drawn twice,

- copy 0 at x + d_0(t) m + r(x, t),   opacity a_0 = 1 - (1 - a) ** w_0
- copy 1 at x + d_1(t) m + r(x, t),   opacity a_1 = 1 - (1 - a) ** w_1

where m is stage 1's motion3d (world units per video frame), w_k the schedule's weights at the
Gaussian's switching threshold (the schedule's noise at the place the Gaussian has in the photo; the
video uses the same), and r the learned residual of :class:`gaussians4d.deformation.HexPlaneDeformation`,
periodic in t. The opacities split the transmittance, (1 - a_0)(1 - a_1) = 1 - a, so two coincident
copies cover exactly as much as the canonical Gaussian; a copy is invisible whenever it jumps back.
d_k, w_k and r are periodic in t: the scene at t = 1 is the scene at t = 0. At t = 0, copy 0 stands
at x + r(x, 0) with the whole opacity. Static Gaussians (region 0, and every Gaussian densified from
one) are never touched.

``flow_scale`` (the original's option, "scales the 3D motion") sets the motion per *rendered frame*:
the loop keeps the video's content (so the video frames supervise it exactly) and is rendered with
``n_frames = round(N_video / flow_scale)`` frames, each advancing by ``flow_scale`` video frames' worth
of 3D motion. ``--flow_scale 2`` (the original README's value) plays the same loop twice as fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaussians4d.deformation import DeformationConfig, HexPlaneDeformation, projective_coords
from scene.cameras import Camera, CameraBatch
from scene.gaussians import GaussianParams, load_ply, rgb_to_sh_dc, save_ply, sh_coeff_count
from scene.io import PointCloud, read_cameras, read_json, write_cameras, write_json
from scene.loop import LoopSchedule, loop_record, loop_schedule
from scene.paths import GAUSSIANS_CMD, GaussianPaths, ScenePaths
from utils.device import to_device
from utils.errors import UserError

MODEL_FORMAT = 2  # 2: the loop schedule (scene/loop.py), per-Gaussian thresholds, from_photo
_MAX_ALPHA = 1.0 - 1e-6  # keeps log(1 - a) finite in the transmittance split


def loop_frames(n_video_frames: int, flow_scale: float) -> int:
    """Frames of the rendered loop: round(N_video / flow_scale) (N_video when flow_scale is 0)."""
    if n_video_frames < 1:
        raise ValueError(f"n_video_frames must be >= 1, got {n_video_frames}")
    if flow_scale <= 0:
        return n_video_frames
    return max(1, round(n_video_frames / flow_scale))


def deform(
    canonical: GaussianParams,
    moving_idx: Tensor,
    motion: Tensor,
    threshold: Tensor,
    depth_ref: Tensor,
    field: HexPlaneDeformation | None,
    schedule: LoopSchedule,
    t: float | Sequence[float],
) -> GaussianParams:
    """The Gaussians at loop time ``t`` (differentiable): [N canonical rows (copy 0), then M copies 1].

    Args:
        canonical: activated canonical Gaussians (N rows).
        moving_idx: [M] int64 rows of the moving Gaussians.
        motion: [M, 3] world displacement per video frame of each moving Gaussian (motion3d).
        threshold: [M] each moving Gaussian's switching threshold (scene/loop.py).
        depth_ref: [M] distance of each moving Gaussian to the photo camera (unit of the residual offset).
        field: the learned residual, or None for the 3D motion prior alone.
        schedule: the loop schedule of stage 1. t: loop time; taken modulo 1, so t = 1 is exactly t = 0.
            A sequence of B times gives the B sets stacked ([B, N + M, ...], for one batched render).
    """
    batched = isinstance(t, Sequence)
    times = [float(x) % 1.0 for x in t] if batched else [float(t) % 1.0]
    m, n_times = moving_idx, len(times)
    if m.numel() == 0:
        return _stacked(canonical, n_times) if batched else canonical
    # index_select, not advanced indexing: its backward adds rows (index_add_) where indexing's sorts them.
    x, q, s, a = (
        v.index_select(0, m) for v in (canonical.means, canonical.quats, canonical.scales, canonical.opacities)
    )
    q = F.normalize(q, dim=-1)
    if field is not None:
        dx, dq, ds = field(x, times)  # [B, M, ...]
        x, q, s = x + dx * depth_ref[:, None], q + dq, s * torch.exp(ds)
    x, q, s = x.expand(n_times, -1, -1), q.expand(n_times, -1, -1), s.expand(n_times, -1, -1)
    shifts = [schedule.displacements(time) for time in times]
    w0 = torch.stack([schedule.weight0(d0, threshold, time) for (d0, _), time in zip(shifts, times)])  # [B, M]
    log_t = torch.log1p(-a.clamp(max=_MAX_ALPHA))
    a0, a1 = -torch.expm1(w0 * log_t), -torch.expm1((1 - w0) * log_t)
    d = to_device(shifts, motion.device)[:, :, None, None]  # [B, 2, 1, 1] video frames (no sync: pinned)
    x0, x1 = x + d[:, 0] * motion, x + d[:, 1] * motion

    def rows(canon: Tensor, moving: Tensor, copies: Tensor) -> Tensor:  # [B, N + M, ...]
        whole = canon.expand(n_times, *canon.shape).index_copy(1, m, moving)
        return torch.cat([whole, copies], dim=1)

    sh = torch.cat([canonical.sh, canonical.sh.index_select(0, m)])
    out = GaussianParams(
        rows(canonical.means, x0, x1),
        rows(canonical.quats, q, q),
        rows(canonical.scales, s, s),
        rows(canonical.opacities, a0, a1),
        sh.expand(n_times, *sh.shape) if batched else sh[None],
    )
    return out if batched else GaussianParams(*(x[0] for x in out.tensors()))


def _stacked(params: GaussianParams, n: int) -> GaussianParams:
    """``params`` repeated as n sets ([n, N, ...], views of the same storage)."""
    return GaussianParams(*(x.expand(n, *x.shape) for x in params.tensors()))


# ----------------------------------------------------------------------------- trainable model


class TrainableGaussians(nn.Module):
    """Raw trainable parameters of the canonical Gaussians, their motion, and the deformation field.

    Per-Gaussian tensors (rows = canonical Gaussians) are listed in :attr:`PER_GAUSSIAN`; densification
    edits all of them together. Means are stored divided by ``depth_ref`` (distance to the photo
    camera) so that one learning rate moves near and far Gaussians by the same number of pixels.
    """

    PARAMS = ("means_n", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")
    BUFFERS = ("depth_ref", "moving", "motion", "threshold", "from_photo")
    PER_GAUSSIAN = PARAMS + BUFFERS

    def __init__(
        self, tensors: dict[str, Tensor], field: HexPlaneDeformation, schedule: LoopSchedule, flow_scale: float
    ):
        super().__init__()
        for name in self.PARAMS:
            setattr(self, name, nn.Parameter(tensors[name].detach().clone()))
        for name in self.BUFFERS:
            self.register_buffer(name, tensors[name].detach().clone())
        self.field = field
        self.schedule = schedule
        self.flow_scale = float(flow_scale)

    @property
    def n_video_frames(self) -> int:
        return self.schedule.n_frames

    def __len__(self) -> int:
        return self.means_n.shape[0]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh_rest.shape[1] + 1) - 1

    def per_gaussian(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self.PER_GAUSSIAN}

    def set_per_gaussian(self, tensors: dict[str, Tensor]) -> None:
        """Replace every per-Gaussian tensor (new Parameters for the trainable ones)."""
        for name in self.PARAMS:
            setattr(self, name, nn.Parameter(tensors[name].detach().clone()))
        for name in self.BUFFERS:
            setattr(self, name, tensors[name].detach().clone())

    def canonical(self) -> GaussianParams:
        """Activated canonical Gaussians (differentiable)."""
        return GaussianParams(
            self.means_n * self.depth_ref[:, None],
            self.quats,
            torch.exp(self.log_scales),
            torch.sigmoid(self.opacity_logits),
            torch.cat([self.sh_dc, self.sh_rest], dim=1),
        )

    def _moving(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """[M] rows of the moving Gaussians and their motion, threshold and depth_ref, cached until the
        per-Gaussian tensors are replaced (densification): the rows need a host sync, the gathers a copy."""
        cached = getattr(self, "_moving_cache", None)
        if cached is None or cached[0] is not self.moving:
            m = self.moving.nonzero().squeeze(1)
            cached = (self.moving, m, self.motion[m], self.threshold[m], self.depth_ref[m])
            self._moving_cache = cached
        return cached[1:]

    def moving_idx(self) -> Tensor:
        """[M] rows of the moving Gaussians."""
        return self._moving()[0]

    def at(self, t: float, use_field: bool = True) -> GaussianParams:
        """Gaussians at loop time ``t`` (differentiable); ``use_field=False`` = the motion prior alone."""
        m, motion, threshold, depth_ref = self._moving()
        field = self.field if use_field else None
        return deform(self.canonical(), m, motion, threshold, depth_ref, field, self.schedule, t)

    def rendered_rows(self) -> Tensor:
        """Canonical row of each rendered row of :meth:`at` ([N + M] int64)."""
        return torch.cat([torch.arange(len(self), device=self.moving.device), self.moving_idx()])

    def export(self) -> FourDGaussians:
        """A detached :class:`FourDGaussians` for rendering and saving."""
        m = self.moving_idx()
        return FourDGaussians(
            canonical=self.canonical().detach(),
            moving_idx=m.clone(),
            from_photo=self.from_photo.clone(),
            motion=self.motion[m].detach().clone(),
            threshold=self.threshold[m].detach().clone(),
            depth_ref=self.depth_ref[m].detach().clone(),
            field=self.field,
            schedule=self.schedule,
            flow_scale=self.flow_scale,
            cameras=[],
        )


def _knn_mean_distance(points: Tensor) -> Tensor:
    from gaussian_renderer.knn import knn_mean_distance

    return knn_mean_distance(points, k=3)


def init_gaussians(
    cloud: PointCloud,
    motion3d: np.ndarray,
    schedule: LoopSchedule,
    photo: Camera,
    *,
    max_points: int,
    sh_degree: int,
    init_opacity: float,
    deformation: DeformationConfig,
    flow_scale: float,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> TrainableGaussians:
    """Gaussians from stage 1's point cloud: subsampled to ``max_points``, scales from the 3-NN distance,
    colours as SH DC, motion from ``motion3d`` (zeroed for static points), switching thresholds from
    their place in the ``photo``."""
    if motion3d.shape != (len(cloud), 3):
        raise ValueError(f"motion3d must be ({len(cloud)}, 3), got {motion3d.shape}")
    rng = np.random.default_rng(seed)
    keep = np.arange(len(cloud))
    if len(cloud) > max_points:
        keep = np.sort(rng.choice(len(cloud), size=max_points, replace=False))
    xyz = torch.tensor(cloud.xyz[keep], dtype=torch.float32, device=device)
    w2c = torch.tensor(photo.w2c, dtype=torch.float32, device=device)
    centre = -w2c[:3, :3].T @ w2c[:3, 3]
    depth_ref = (xyz - centre).norm(dim=1).clamp_min(1e-3)
    dist = _knn_mean_distance(xyz).to(device)
    dist = torch.minimum(dist.clamp_min(1e-4 * depth_ref), 0.05 * depth_ref)  # guard isolated points
    n, k = len(keep), sh_coeff_count(sh_degree)
    moving = torch.tensor(cloud.region[keep] > 0, device=device)
    motion = torch.tensor(motion3d[keep], dtype=torch.float32, device=device) * moving[:, None]
    rgb = torch.tensor(cloud.rgb[keep], dtype=torch.float32, device=device) / 255.0
    tensors = {
        "means_n": xyz / depth_ref[:, None],
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0], device=device).repeat(n, 1),
        "log_scales": torch.log(dist)[:, None].repeat(1, 3),
        "opacity_logits": torch.full((n,), math.log(init_opacity / (1 - init_opacity)), device=device),
        "sh_dc": rgb_to_sh_dc(rgb)[:, None],
        "sh_rest": torch.zeros(n, k - 1, 3, device=device),
        "depth_ref": depth_ref,
        "moving": moving,
        "motion": motion,
        "from_photo": torch.tensor(cloud.view[keep] == 0, device=device),
        "threshold": schedule.threshold(CameraBatch.of([photo], device).project(xyz)[0][0].nan_to_num(0.0)),
    }
    field = make_field(deformation, xyz[moving], w2c).to(device)
    return TrainableGaussians(tensors, field, schedule, flow_scale)


def make_field(config: DeformationConfig, moving_xyz: Tensor, w2c: Tensor) -> HexPlaneDeformation:
    """A deformation field whose grid spans the moving points' projective box (5% margin)."""
    if len(moving_xyz):
        q = projective_coords(moving_xyz, w2c)
        lo, hi = q.min(0).values, q.max(0).values
        pad = 0.05 * (hi - lo) + 1e-4
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = -torch.ones(3, device=w2c.device), torch.ones(3, device=w2c.device)
    return HexPlaneDeformation(config, lo.cpu(), hi.cpu(), w2c.cpu())


# ----------------------------------------------------------------------------- trained model (public API)


@dataclass
class FourDGaussians:
    """A trained 4D Gaussian scene, ready to render at any loop time.

    Attributes:
        canonical: the canonical Gaussians (what ``point_cloud.ply`` holds).
        moving_idx: [M] rows of the moving Gaussians; from_photo: [N] bool, born from a photo pixel (not a
        filled hole); motion: [M, 3] world units per video frame;
        threshold: [M] switching thresholds; depth_ref: [M] distance to the photo camera (unit of the
        residual offsets). field: the periodic deformation residual.
        schedule: stage 1's loop schedule; flow_scale: the training option.
        cameras: stage 1's cameras (cameras[0] = the photo's).
    """

    canonical: GaussianParams
    moving_idx: Tensor
    from_photo: Tensor
    motion: Tensor
    threshold: Tensor
    depth_ref: Tensor
    field: HexPlaneDeformation
    schedule: LoopSchedule
    flow_scale: float
    cameras: list[Camera]

    @property
    def n_video_frames(self) -> int:
        return self.schedule.n_frames

    @property
    def n_frames(self) -> int:
        """Frames of one rendered loop (frame j is loop time j / n_frames)."""
        return loop_frames(self.n_video_frames, self.flow_scale)

    @property
    def sh_degree(self) -> int:
        return self.canonical.sh_degree

    @property
    def device(self) -> torch.device:
        return self.canonical.means.device

    def at_time(self, t: float) -> GaussianParams:
        """Deformed Gaussians at loop time ``t`` in [0, 1] (no grad; exactly periodic: t = 1 is t = 0).

        Returns N + M Gaussians: the canonical rows (moving ones as their copy 0) then the M copies 1;
        the count does not depend on ``t``.
        """
        if not math.isfinite(float(t)):
            raise ValueError(f"t must be finite, got {t}")
        with torch.no_grad():
            if self.flow_scale <= 0:  # a frozen scene: the Gaussians of t = 0 at every t
                t = 0.0
            return deform(
                self.canonical,
                self.moving_idx,
                self.motion,
                self.threshold,
                self.depth_ref,
                self.field,
                self.schedule,
                t,
            )

    def photo_rows(self) -> Tensor:
        """[N + M] bool: which rows of :meth:`at_time` were born from the photo (render/framing.py)."""
        return torch.cat([self.from_photo, self.from_photo[self.moving_idx]])

    def to(self, device: torch.device | str) -> FourDGaussians:
        return FourDGaussians(
            self.canonical.to(device),
            self.moving_idx.to(device),
            self.from_photo.to(device),
            self.motion.to(device),
            self.threshold.to(device),
            self.depth_ref.to(device),
            self.field.to(device),
            self.schedule,
            self.flow_scale,
            self.cameras,
        )


def save_trained(paths: GaussianPaths, iteration: int, model: FourDGaussians) -> None:
    """Write point_cloud.ply (canonical, standard 3DGS layout), deformation.safetensors and its JSON."""
    from safetensors.torch import save_file

    from scene.io import atomic_path

    save_ply(paths.ply(iteration), model.canonical)
    tensors = {f"field.{k}": v.detach().cpu().contiguous() for k, v in model.field.state_dict().items()}
    tensors["moving_idx"] = model.moving_idx.cpu().contiguous()
    tensors["from_photo"] = model.from_photo.to(torch.uint8).cpu().contiguous()
    tensors["motion"] = model.motion.cpu().contiguous()
    tensors["threshold"] = model.threshold.cpu().contiguous()
    tensors["depth_ref"] = model.depth_ref.cpu().contiguous()
    with atomic_path(paths.deformation(iteration)) as tmp:
        save_file(tensors, str(tmp))
    write_json(
        paths.deformation_json(iteration),
        {
            "format": MODEL_FORMAT,
            "deformation": model.field.config.to_dict(),
            "n_video_frames": model.n_video_frames,
            "loop": loop_record(model.schedule),
            "n_frames": model.n_frames,
            "flow_scale": model.flow_scale,
            "sh_degree": model.sh_degree,
            "n_gaussians": len(model.canonical),
            "n_moving": int(model.moving_idx.numel()),
        },
    )
    if model.cameras:
        write_cameras(paths.cameras, model.cameras)


def latest_iteration(paths: GaussianPaths) -> int | None:
    """The highest N of point_cloud/iteration_N that holds a complete model, or None."""
    best = None
    if paths.point_cloud_dir.is_dir():
        for d in paths.point_cloud_dir.iterdir():
            name = d.name
            if name.startswith("iteration_") and name[10:].isdigit():
                i = int(name[10:])
                complete = all(p.is_file() for p in (paths.ply(i), paths.deformation(i), paths.deformation_json(i)))
                if complete and (best is None or i > best):
                    best = i
    return best


def load_trained(scene: ScenePaths, device: str | torch.device = "cpu", iteration: int | None = None) -> FourDGaussians:
    """The trained 4D Gaussians of ``scene`` (the latest iteration unless ``iteration`` is given)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    paths = scene.gaussians
    cmd = GAUSSIANS_CMD.replace("SCENE", str(scene.root))
    it = latest_iteration(paths) if iteration is None else int(iteration)
    if it is None or not paths.ply(it).is_file():
        what = "no trained 4D Gaussians" if iteration is None else f"no trained 4D Gaussians at iteration {iteration}"
        raise UserError(f"{paths.dir} has {what}", f"run {cmd} first")
    meta = read_json(paths.deformation_json(it), "deformation JSON", cmd)
    if not isinstance(meta, dict):
        raise UserError(f"{paths.deformation_json(it)} is not a JSON object", f"re-run {cmd}")
    try:
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(f"format {meta.get('format')}, expected {MODEL_FORMAT}")
        config = DeformationConfig.from_dict(meta["deformation"])
        tensors = load_file(str(paths.deformation(it)))
        field_state = {k[6:]: v for k, v in tensors.items() if k.startswith("field.")}
        field = HexPlaneDeformation(config, field_state["lo"], field_state["hi"], field_state["w2c"])
        field.load_state_dict(field_state)
        schedule, flow_scale = loop_schedule(meta["loop"]), float(meta["flow_scale"])
        from_photo = tensors["from_photo"].bool()
    except (OSError, KeyError, ValueError, TypeError, AttributeError, RuntimeError, SafetensorError) as exc:
        raise UserError(f"{paths.deformation(it)} is not a valid deformation file ({exc})", f"re-run {cmd}") from None
    canonical = load_ply(paths.ply(it), device)
    moving_idx = tensors["moving_idx"].long()
    if moving_idx.numel() and int(moving_idx.max()) >= len(canonical):
        raise UserError(f"{paths.deformation(it)} does not match {paths.ply(it)}", f"re-run {cmd}")
    cameras = read_cameras(paths.cameras, cmd) if paths.cameras.is_file() else _stage1_cameras(scene)
    if from_photo.shape != (len(canonical),):
        raise UserError(f"{paths.deformation(it)} does not match {paths.ply(it)}", f"re-run {cmd}")
    return FourDGaussians(
        canonical,
        moving_idx.to(device),
        from_photo.to(device),
        tensors["motion"].float().to(device),
        tensors["threshold"].float().to(device),
        tensors["depth_ref"].float().to(device),
        field.to(device).eval(),
        schedule,
        flow_scale,
        cameras,
    )


def _stage1_cameras(scene: ScenePaths) -> list[Camera]:
    path: Path = scene.motion.cameras
    return read_cameras(path) if path.is_file() else []
