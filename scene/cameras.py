"""Cameras: the pinhole model, the photo's intrinsics, and projection in one place.

Conventions (docs/conventions.md): OpenCV axes (x right, y down, z forward), 4x4 world-to-camera
matrices ``w2c``, intrinsics ``K`` in pixels with the principal point at the image centre, pixel
centres at integer coordinates. The photo is view 0 with the identity pose, so world coordinates are
the photo camera's.

Projection is written with element-wise products and sums over the 3 coordinates in a fixed order
(no matmul or einsum): the result does not depend on the CPU thread count or on the BLAS kernel
(utils/ordered.py), which stage 1's byte-identical outputs rely on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from utils.errors import UserError

FOCAL_AT_512 = 582.69  # the original's focal length in pixels for a 512-pixel-high image


@dataclass
class Camera:
    """A pinhole camera: OpenCV axes, 4x4 world-to-camera ``w2c``, intrinsics ``K`` in pixels."""

    K: np.ndarray  # (3, 3) float64
    w2c: np.ndarray  # (4, 4) float64
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, np.float64)
        self.w2c = np.asarray(self.w2c, np.float64)
        if self.K.shape != (3, 3) or self.w2c.shape != (4, 4):
            raise ValueError("Camera needs K (3, 3) and w2c (4, 4)")
        if not (np.all(np.isfinite(self.K)) and np.all(np.isfinite(self.w2c))):
            raise ValueError("Camera has non-finite values")
        if self.width <= 0 or self.height <= 0:
            raise ValueError("Camera size must be positive")

    @property
    def c2w(self) -> np.ndarray:
        return np.linalg.inv(self.w2c)

    def scaled(self, width: int, height: int) -> Camera:
        """The same camera at another image size (K rescaled)."""
        s = np.diag([width / self.width, height / self.height, 1.0])
        return Camera(s @ self.K, self.w2c.copy(), width, height)


def image_size(spec: str | None, width: int, height: int, *, upscale: bool = False) -> tuple[int, int]:
    """``--resolution``, with one meaning in every stage -> (W, H) for a ``width`` x ``height`` source.

    None, "", "0" or "full": the source size. "N": longest side N pixels, aspect ratio kept (never above
    the source size unless ``upscale``). "WxH": exactly W x H. Each side must come out in 16..8192.
    """
    text = "" if spec is None else str(spec).strip().lower().replace("×", "x")
    fix = "give --resolution as N (the longest side in pixels, e.g. 640) or WxH (e.g. 1280x720)"
    if text in ("", "0", "full", "none"):
        w, h = int(width), int(height)
    elif m := re.fullmatch(r"(\d+)\s*[x,]\s*(\d+)", text):
        w, h = int(m[1]), int(m[2])
    elif text.isdigit():
        scale = int(text) / max(width, height)
        scale = scale if upscale else min(1.0, scale)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
    else:
        raise UserError(f"--resolution {spec!r} is not N or WxH", fix)
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise UserError(f"--resolution {w}x{h} is outside 16..8192 pixels per side", fix)
    return w, h


def default_focal(height: int) -> float:
    """The original's focal length scaled to the image height: 582.69 px * H / 512 (vertical FOV ~47.4 deg)."""
    return FOCAL_AT_512 * float(height) / 512.0


def intrinsics(width: int, height: int, fov_y_deg: float | None = None) -> np.ndarray:
    """(3, 3) K in pixels, square pixels, principal point at the image centre (W / 2, H / 2).

    ``fov_y_deg`` is the vertical field of view; None gives :func:`default_focal`.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if fov_y_deg is None:
        focal = default_focal(height)
    else:
        if not 1.0 <= fov_y_deg <= 170.0:
            raise ValueError(f"fov_y_deg must be in [1, 170], got {fov_y_deg}")
        focal = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def source_camera(width: int, height: int, fov_y_deg: float | None = None) -> Camera:
    """View 0: the photo's camera, identity pose."""
    return Camera(intrinsics(width, height, fov_y_deg), np.eye(4), int(width), int(height))


def rotate(R: Tensor, x: Tensor) -> Tensor:
    """``R @ x`` for rotations R [..., 3, 3] and vectors x [..., 3] (broadcast), summed in a fixed order."""
    return R[..., 0] * x[..., 0:1] + R[..., 1] * x[..., 1:2] + R[..., 2] * x[..., 2:3]


@dataclass(frozen=True)
class CameraBatch:
    """V cameras as float32 tensors on one device, built once and used for every projection.

    ``R`` [V, 3, 3] and ``t`` [V, 3] map world to camera coordinates; ``focal`` [V, 2] is (fx, fy) and
    ``centre`` [V, 2] the principal point; ``viewmats`` [V, 4, 4] and ``Ks`` [V, 3, 3] are what the
    rasterizer takes.
    """

    viewmats: Tensor
    Ks: Tensor

    @classmethod
    def of(cls, cameras: list[Camera], device: torch.device | str = "cpu") -> CameraBatch:
        if not cameras:
            raise ValueError("cameras must be a non-empty list of Camera")
        viewmats = torch.tensor(np.stack([c.w2c for c in cameras]), dtype=torch.float32, device=device)
        Ks = torch.tensor(np.stack([c.K for c in cameras]), dtype=torch.float32, device=device)
        return cls(viewmats, Ks)

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    @property
    def R(self) -> Tensor:
        return self.viewmats[:, :3, :3]

    @property
    def t(self) -> Tensor:
        return self.viewmats[:, :3, 3]

    @property
    def focal(self) -> Tensor:
        return torch.stack([self.Ks[:, 0, 0], self.Ks[:, 1, 1]], -1)

    @property
    def centre(self) -> Tensor:
        return self.Ks[:, :2, 2]

    def to_camera(self, xyz: Tensor) -> Tensor:
        """Camera coordinates [V, P, 3] of world points xyz [P, 3] (the same in every view) or [V, P, 3]."""
        if xyz.ndim == 2:
            xyz = xyz[None]
        return rotate(self.R[:, None], xyz) + self.t[:, None]

    def project(self, xyz: Tensor) -> tuple[Tensor, Tensor]:
        """Pixels uv [V, P, 2] (x right, y down) and depth z [V, P] of world points [P, 3] or [V, P, 3].

        Points with z <= 0 get non-finite or meaningless uv: callers mask them with ``z > 0``.
        Differentiable with respect to ``xyz``.
        """
        cam = self.to_camera(xyz)
        z = cam[..., 2]
        uv = cam[..., :2] / z[..., None] * self.focal[:, None] + self.centre[:, None]
        return uv, z


def project_points(xyz: Tensor, camera: Camera) -> tuple[Tensor, Tensor]:
    """World points [P, 3] -> pixels uv [P, 2] and depth z [P] in one camera (see :meth:`CameraBatch.project`)."""
    if not isinstance(xyz, Tensor) or xyz.ndim != 2 or xyz.shape[1] != 3 or not xyz.is_floating_point():
        raise ValueError(f"xyz must be a float (P, 3) tensor, got {getattr(xyz, 'shape', type(xyz))}")
    uv, z = CameraBatch.of([camera], xyz.device).project(xyz)
    return uv[0].to(xyz.dtype), z[0].to(xyz.dtype)


def pixel_grid(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """[H * W, 2] pixel centres (x, y) in row-major order (row = y)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)


def unproject(uv: Tensor, z: Tensor, camera: Camera) -> Tensor:
    """Pixels uv [P, 2] with z-depth z [P] (along the optical axis, not the ray) -> world points [P, 3]."""
    if uv.ndim != 2 or uv.shape[1] != 2 or z.shape != uv.shape[:1]:
        raise ValueError(f"uv must be (P, 2) and z (P,), got {tuple(uv.shape)} and {tuple(z.shape)}")
    K = torch.as_tensor(camera.K, dtype=uv.dtype, device=uv.device)
    c2w = torch.as_tensor(camera.c2w, dtype=uv.dtype, device=uv.device)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    return rotate(c2w[:3, :3], torch.stack([x, y, z], 1)) + c2w[:3, 3]


def unproject_depth(depth: Tensor, camera: Camera) -> Tensor:
    """A [H, W] z-depth map -> [H * W, 3] world points, one per pixel in row-major order."""
    if depth.ndim != 2 or tuple(depth.shape) != (camera.height, camera.width):
        raise ValueError(f"depth must be ({camera.height}, {camera.width}), got {tuple(depth.shape)}")
    uv = pixel_grid(camera.height, camera.width, depth.device).to(depth.dtype)
    return unproject(uv, depth.reshape(-1), camera)
