"""Cameras of stage 1: intrinsics from a field of view, projection/unprojection, the multi-view camera set.

Conventions (docs/conventions.md): OpenCV axes (x right, y down, z forward), 4x4 world-to-camera
matrices, K in pixels with the principal point at the image centre, pixel centres at integer
coordinates. The photo is view 0 with the identity pose, so world coordinates are the photo camera's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from scene.io import Camera

FOCAL_AT_512 = 582.69  # the original's focal length in pixels for a 512-pixel-high image


def default_focal(height: int) -> float:
    """The original's focal length scaled to the image height: 582.69 px * H / 512 (vertical FOV ~47.4 deg)."""
    return FOCAL_AT_512 * float(height) / 512.0


def intrinsics(width: int, height: int, fov_y_deg: float | None = None) -> np.ndarray:
    """(3, 3) K in pixels, square pixels, principal point at the image centre (W / 2, H / 2; docs/conventions.md).

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


def _tensor(array: np.ndarray, like: Tensor) -> Tensor:
    return torch.as_tensor(array, dtype=like.dtype, device=like.device)


def project_points(xyz: Tensor, camera: Camera) -> tuple[Tensor, Tensor]:
    """World points -> pixel coordinates and depth in ``camera``.

    Args:
        xyz: [P, 3] world points (float tensor, any device).
        camera: the camera (K in pixels, w2c world-to-camera).

    Returns:
        uv [P, 2] pixel coordinates (x right, y down, pixel centres at integers; inf/nan where z <= 0 is
        possible: filter with ``z > 0``), z [P] depth along the camera's optical axis (scene units).
        Differentiable with respect to ``xyz``.
    """
    if not isinstance(xyz, Tensor) or xyz.ndim != 2 or xyz.shape[1] != 3 or not xyz.is_floating_point():
        raise ValueError(f"xyz must be a float (P, 3) tensor, got {getattr(xyz, 'shape', type(xyz))}")
    w2c = _tensor(camera.w2c, xyz)
    K = _tensor(camera.K, xyz)
    cam = xyz @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    pix = cam @ K.T
    uv = pix[:, :2] / z[:, None]
    return uv, z


def pixel_grid(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """[H * W, 2] pixel centres (x, y) in row-major order (row = y)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)


def unproject(uv: Tensor, z: Tensor, camera: Camera) -> Tensor:
    """Pixels with z-depth -> [P, 3] world points (inverse of :func:`project_points`).

    Args:
        uv: [P, 2] pixel coordinates; z: [P] z-depth along the optical axis (not ray length).
    """
    if uv.ndim != 2 or uv.shape[1] != 2 or z.shape != uv.shape[:1]:
        raise ValueError(f"uv must be (P, 2) and z (P,), got {tuple(uv.shape)} and {tuple(z.shape)}")
    K = _tensor(camera.K, uv)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    cam = torch.stack([x, y, z], 1)
    c2w = _tensor(camera.c2w, uv)
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def unproject_depth(depth: Tensor, camera: Camera) -> Tensor:
    """A [H, W] z-depth map -> [H * W, 3] world points, one per pixel in row-major order."""
    if depth.ndim != 2 or tuple(depth.shape) != (camera.height, camera.width):
        raise ValueError(f"depth must be ({camera.height}, {camera.width}), got {tuple(depth.shape)}")
    uv = pixel_grid(camera.height, camera.width, depth.device).to(depth.dtype)
    return unproject(uv, depth.reshape(-1), camera)


# ----------------------------------------------------------------------------- the multi-view camera set

# The paper's set (its released code: 5 "look-around" rotations x 5 "hemisphere" orbit offsets):
# rotations about the camera centre (no parallax, new content at the frame edges) ...
ROTATIONS_DEG = ((0.0, 0.0), (20.0, 0.0), (-20.0, 0.0), (0.0, 22.5), (0.0, -22.5))  # (yaw right, pitch up)
# ... times small orbits about a pivot on the (rotated) optical axis (parallax, disocclusions).
ORBITS_DEG = ((0.0, 0.0), (5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0))
PIVOT_DEPTH = 4.3  # scene units in front of the camera (the original's constant; near ground is ~2 units)


def rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(3, 3) camera-to-world rotation turning the view right by ``yaw_deg`` then up by ``pitch_deg``.

    OpenCV axes: positive yaw moves the optical axis towards +x (right), positive pitch towards -y (up).
    """
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    yaw = np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)], [0.0, math.sin(b), math.cos(b)]])
    return yaw @ pitch


def orbit_c2w(yaw_deg: float, pitch_deg: float, pivot_depth: float) -> np.ndarray:
    """(4, 4) camera-to-world pose of a camera orbiting the point (0, 0, ``pivot_depth``), looking at it."""
    R = rotation(yaw_deg, pitch_deg)
    pivot = np.array([0.0, 0.0, pivot_depth])
    c2w = np.eye(4)
    c2w[:3, :3] = R
    c2w[:3, 3] = pivot - R @ pivot  # the optical axis still passes through the pivot
    return c2w


def view_poses(n_views: int = 25, span: float = 1.0, pivot_depth: float = PIVOT_DEPTH) -> list[dict]:
    """The first ``n_views`` (rotation, orbit) pairs of the 5 x 5 set, rotation-major, view 0 = identity.

    ``span`` scales every angle (1.0 = the paper's +-20 deg yaw, +-22.5 deg pitch, +-5 deg orbit).
    Returns dicts with the angles (degrees) and the (4, 4) world-to-camera matrix ``w2c``.
    """
    total = len(ROTATIONS_DEG) * len(ORBITS_DEG)
    if not 1 <= n_views <= total:
        raise ValueError(f"n_views must be in [1, {total}], got {n_views}")
    if not 0.0 <= span <= 3.0:
        raise ValueError(f"span must be in [0, 3], got {span}")
    if pivot_depth <= 0:
        raise ValueError(f"pivot_depth must be positive, got {pivot_depth}")
    poses = []
    for yaw, pitch in ROTATIONS_DEG:
        for oyaw, opitch in ORBITS_DEG:
            c2w_rot = np.eye(4)
            c2w_rot[:3, :3] = rotation(span * yaw, span * pitch)
            c2w = c2w_rot @ orbit_c2w(span * oyaw, span * opitch, pivot_depth)
            poses.append(
                {
                    "rotation_deg": [span * yaw, span * pitch],
                    "orbit_deg": [span * oyaw, span * opitch],
                    "w2c": np.linalg.inv(c2w),
                }
            )
    return poses[:n_views]


def view_cameras(
    source: Camera, n_views: int = 25, span: float = 1.0, pivot_depth: float = PIVOT_DEPTH
) -> list[Camera]:
    """Cameras of the multi-view set, same intrinsics and size as ``source``; view 0 is ``source``."""
    cams = [
        Camera(source.K.copy(), p["w2c"] @ source.w2c, source.width, source.height)
        for p in view_poses(n_views, span, pivot_depth)
    ]
    cams[0] = Camera(source.K.copy(), source.w2c.copy(), source.width, source.height)  # exact, no round-off
    return cams
