"""The multi-view camera set of stage 1: the paper's 5 rotations x 5 orbits around the photo's camera.

Cameras, intrinsics and projection: scene/cameras.py (conventions: docs/conventions.md).
"""

from __future__ import annotations

import math

import numpy as np

from scene.cameras import Camera

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
