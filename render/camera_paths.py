"""Camera paths for render_4DGS.py: the original's presets (looping) and custom keyframed paths.

A path gives a camera for every phase ``s`` in [0, 1] of the video (all loops together); ``s = 1`` is
``s = 0`` for every looping path, so the video's last frame flows into its first when it repeats.

Presets move the camera relative to the photo's camera (``cameras[0]``) exactly as the original
(3D-Cinemagraphy's ``define_camera_path``, reused by 3D-MOM) does: an offset ``t`` is added to the
camera-frame coordinates of every point (``x_cam = x_photo_cam + t``, so the camera centre moves by
``-t``), with amplitudes 0.08 (up-down, y), 0.09 (side, x), 0.24 (zoom-in, z) and (0.04, 0.04, 0.09)
(circle). Those amplitudes are in the original's depth units, where the nearest content of the photo
has depth 1 (its disparity was normalised to a maximum of 1); here they are multiplied by the
``scale`` argument, which :func:`reference_depth` measures the same way (docs/camera_paths.md).

Custom paths: :func:`load_camera_path` reads the JSON format of docs/camera_paths.md.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from scene.cameras import Camera
from scene.io import read_json
from utils.errors import UserError

TWO_PI = 2.0 * math.pi
PATH_DOC = "see docs/camera_paths.md"


class CameraPath(Protocol):
    """Anything that gives a camera for a phase of the video."""

    name: str
    loops: bool  # True when camera(1) == camera(0)

    def camera(self, s: float, base: Camera, scale: float) -> Camera: ...


def _with_offset(base: Camera, t: np.ndarray, focal_factor: float = 1.0) -> Camera:
    """``base`` moved by a camera-frame offset ``t`` (x_cam' = x_cam + t), focal multiplied by ``focal_factor``."""
    shift = np.eye(4)
    shift[:3, 3] = t
    K = base.K.copy()
    K[0, 0] *= focal_factor
    K[1, 1] *= focal_factor
    return Camera(K, shift @ base.w2c, base.width, base.height)


@dataclass(frozen=True)
class PresetPath:
    """A preset: camera-frame offset ``t(s)`` (original units, times ``scale``) and a focal factor ``f(s)``."""

    name: str
    kind: str  # "static" | "up-down" | "side" | "zoom-in" | "zoom-in-once" | "circle" | "dolly-zoom"
    amplitude: tuple[float, float, float] = (0.0, 0.0, 0.0)
    loops: bool = True
    description: str = ""

    def offset(self, s: float) -> tuple[np.ndarray, float]:
        """(t [3] in original units, focal factor) at phase ``s``."""
        ax, ay, az = self.amplitude
        ping_pong = 0.5 * (1.0 - math.cos(TWO_PI * s))  # 0 -> 1 -> 0, smooth at the seam
        if self.kind == "static":
            return np.zeros(3), 1.0
        if self.kind in ("up-down", "side"):
            w = math.sin(TWO_PI * s)
            return np.array([ax * w, ay * w, 0.0]), 1.0
        if self.kind == "zoom-in":
            return np.array([0.0, 0.0, az * ping_pong]), 1.0
        if self.kind == "zoom-in-once":
            return np.array([0.0, 0.0, az * s]), 1.0
        if self.kind == "circle":
            # The original's phase runs over [-2, 2): x and y turn twice per video, z swings once.
            phase = -2.0 + 4.0 * s
            t = [ax * math.cos(phase * math.pi), ay * math.sin(phase * math.pi), az * math.cos(phase * math.pi / 2)]
            return np.array(t), 1.0
        if self.kind == "dolly-zoom":
            # Camera backs away by az * ping_pong while the focal grows so that content at the reference
            # depth (1 in original units) keeps its size: f' = f * (1 + back) / 1.
            back = az * ping_pong
            return np.array([0.0, 0.0, back]), 1.0 + back
        raise ValueError(f"unknown preset kind {self.kind!r}")

    def camera(self, s: float, base: Camera, scale: float) -> Camera:
        t, focal_factor = self.offset(s)
        return _with_offset(base, t * scale, focal_factor)


PRESETS: dict[str, PresetPath] = {
    p.name: p
    for p in (
        PresetPath("up-down", "up-down", (0.0, 0.08, 0.0), description="camera bobs up and down (+-0.08 in y)"),
        PresetPath("side", "side", (0.09, 0.0, 0.0), description="camera sways sideways (+-0.09 in x)"),
        PresetPath("zoom-in", "zoom-in", (0.0, 0.0, -0.24), description="camera moves in by 0.24 and back (ping-pong)"),
        PresetPath(
            "circle", "circle", (-0.04, -0.04, -0.09), description="the original's circle: x, y twice around, z once"
        ),
        PresetPath(
            "dolly-zoom", "dolly-zoom", (0.0, 0.0, 0.24), description="camera backs away by 0.24 while zooming in"
        ),
        PresetPath("static", "static", description="the photo's camera, still"),
        PresetPath(
            "zoom-in-once",
            "zoom-in-once",
            (0.0, 0.0, -0.24),
            loops=False,
            description="the original's one-way zoom (0 -> -0.24 over the video); the camera jumps back at the seam",
        ),
    )
}
DEFAULT_PATHS: tuple[str, ...] = tuple(name for name, p in PRESETS.items() if p.loops)


def resolve_presets(names: list[str]) -> list[PresetPath]:
    """Presets by name, in the given order, duplicates dropped; unknown names raise UserError."""
    out: list[PresetPath] = []
    for name in names:
        if name not in PRESETS:
            raise UserError(f"unknown camera path {name!r}", f"choose from {', '.join(PRESETS)}")
        if PRESETS[name] not in out:
            out.append(PRESETS[name])
    return out


def reference_depth(means: np.ndarray, camera: Camera, percentile: float = 5.0) -> float:
    """The depth of the photo's near content: the ``percentile``-th percentile of the z-depth of the points
    that ``camera`` sees (in front of it and inside the image).

    This plays the role of the original's depth 1 (its nearest content); presets scale by it.

    Args:
        means: [P, 3] world points (e.g. the Gaussians' centres at t = 0).
        camera: the photo's camera.
    """
    means = np.asarray(means, np.float64)
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be (P, 3), got {means.shape}")
    cam = means @ camera.w2c[:3, :3].T + camera.w2c[:3, 3]
    z = cam[:, 2]
    front = z > 1e-6
    uv = cam[front] @ camera.K.T
    uv = uv[:, :2] / uv[:, 2:3]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height)
    visible = z[front][inside]
    if visible.size == 0:
        return 1.0
    return float(np.percentile(visible, percentile))


# ----------------------------------------------------------------------------- rotations


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """wxyz quaternion (normalised here) -> (3, 3) rotation matrix."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> unit wxyz quaternion with w >= 0 (Shepperd's method)."""
    R = np.asarray(R, np.float64)
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + R[i, i] - R[j, j] - R[k, k], 1e-12))
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + k] = (R[k, i] + R[i, k]) / s
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def slerp(q0: np.ndarray, q1: np.ndarray, u: float) -> np.ndarray:
    """Spherical linear interpolation of unit wxyz quaternions along the shorter arc."""
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # same rotation, shorter way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: lerp is exact enough and avoids dividing by sin(0)
        q = q0 + u * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(dot, 1.0))
    return (math.sin((1 - u) * theta) * q0 + math.sin(u * theta) * q1) / math.sin(theta)


def look_at_rotation(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(3, 3) camera-to-world rotation of an OpenCV camera at ``position`` looking at ``target``.

    ``up`` is the world direction that should appear up in the image (OpenCV: [0, -1, 0] is up).
    """
    forward = np.asarray(target, np.float64) - np.asarray(position, np.float64)
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise ValueError("look_at target coincides with the position")
    z = forward / norm
    x = np.cross(-np.asarray(up, np.float64), z)  # image x = right; camera y points down = -up
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("up is parallel to the viewing direction")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


# ----------------------------------------------------------------------------- custom keyframed paths


@dataclass
class Keyframe:
    """One key of a custom path, in the photo camera's frame (OpenCV axes)."""

    time: float  # phase of the video in [0, 1]
    position: np.ndarray  # (3,) camera centre
    rotation: np.ndarray  # (4,) wxyz unit quaternion, camera-to-world
    fov: float | None = None  # vertical field of view in degrees; None = the photo's


@dataclass
class KeyframePath:
    """A path interpolated between keyframes: position Catmull-Rom (or linear), rotation slerp, fov linear."""

    name: str
    keyframes: list[Keyframe]
    loops: bool = True  # closed: the path wraps from the last key back to the first
    interpolation: str = "catmull-rom"  # or "linear"
    units: str = "relative"  # "relative": positions times the scene's path scale; "world": as given
    _times: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.keyframes:
            raise ValueError("a keyframe path needs at least one keyframe")
        self._times = np.array([k.time for k in self.keyframes])

    def _segment(self, s: float) -> tuple[int, int, float, float]:
        """(index a, index b, local u in [0, 1], segment length) for phase ``s``."""
        times, n = self._times, len(self.keyframes)
        if n == 1:
            return 0, 0, 0.0, 1.0
        if self.loops:
            s = (s - times[0]) % 1.0 + times[0]  # into [t0, t0 + 1)
            a = int(np.searchsorted(times, s, side="right") - 1)
            b = (a + 1) % n
            t_a, t_b = times[a], times[b] + (1.0 if b == 0 else 0.0)
        else:
            s = min(max(s, times[0]), times[-1])
            a = min(int(np.searchsorted(times, s, side="right") - 1), n - 2)
            b = a + 1
            t_a, t_b = times[a], times[b]
        h = t_b - t_a
        return a, b, float(np.clip((s - t_a) / h, 0.0, 1.0)), float(h)

    def _tangent(self, i: int) -> np.ndarray:
        """Catmull-Rom tangent (position per unit phase) at key ``i`` for non-uniform key times."""
        n, times = len(self.keyframes), self._times
        p = [k.position for k in self.keyframes]
        if self.loops:
            prev_t = times[i - 1] - (1.0 if i == 0 else 0.0)
            next_t = times[(i + 1) % n] + (1.0 if i == n - 1 else 0.0)
            return (p[(i + 1) % n] - p[i - 1]) / (next_t - prev_t)
        lo, hi = max(i - 1, 0), min(i + 1, n - 1)
        return (p[hi] - p[lo]) / (times[hi] - times[lo])

    def position(self, s: float) -> np.ndarray:
        a, b, u, h = self._segment(s)
        p0, p1 = self.keyframes[a].position, self.keyframes[b].position
        if self.interpolation == "linear" or a == b:
            return p0 + u * (p1 - p0)
        m0, m1 = self._tangent(a) * h, self._tangent(b) * h
        u2, u3 = u * u, u * u * u  # cubic Hermite basis
        return (2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * m0 + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * m1

    def rotation(self, s: float) -> np.ndarray:
        a, b, u, _ = self._segment(s)
        return slerp(self.keyframes[a].rotation, self.keyframes[b].rotation, u)

    def fov(self, s: float, base_fov: float) -> float:
        a, b, u, _ = self._segment(s)
        f0 = self.keyframes[a].fov or base_fov
        f1 = self.keyframes[b].fov or base_fov
        return f0 + u * (f1 - f0)

    def camera(self, s: float, base: Camera, scale: float) -> Camera:
        """The camera at phase ``s``: keyframe poses are in the frame of ``base`` (the photo's camera)."""
        position = self.position(s) * (scale if self.units == "relative" else 1.0)
        c2w_local = np.eye(4)
        c2w_local[:3, :3] = quat_to_matrix(self.rotation(s))
        c2w_local[:3, 3] = position
        w2c = np.linalg.inv(base.c2w @ c2w_local)
        base_fov = math.degrees(2 * math.atan(0.5 * base.height / base.K[1, 1]))
        factor = math.tan(math.radians(base_fov) / 2) / math.tan(math.radians(self.fov(s, base_fov)) / 2)
        K = base.K.copy()
        K[0, 0] *= factor
        K[1, 1] *= factor
        return Camera(K, w2c, base.width, base.height)


def frame_phases(n_frames: int, loops: bool) -> np.ndarray:
    """Phases of the video's frames: ``j / n`` for a looping path (frame n would be frame 0), ``j / (n - 1)``
    for a one-way path (its last frame reaches the end of the path)."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if loops or n_frames == 1:
        return np.arange(n_frames) / n_frames
    return np.arange(n_frames) / (n_frames - 1)


def path_cameras(path: CameraPath, base: Camera, n_frames: int, scale: float = 1.0) -> list[Camera]:
    """The cameras of a ``n_frames``-frame video along ``path`` (see :func:`frame_phases`)."""
    return [path.camera(float(s), base, scale) for s in frame_phases(n_frames, path.loops)]


# ----------------------------------------------------------------------------- the custom path file


def _fail(file: Path, problem: str) -> UserError:
    return UserError(f"camera path {file}: {problem}", PATH_DOC)


def _vector(file: Path, where: str, value: object, length: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(file, f"{where} must be a list of {length} numbers") from None
    if arr.shape != (length,) or not np.all(np.isfinite(arr)):
        raise _fail(file, f"{where} must be a list of {length} finite numbers")
    return arr


def _matrix_pose(file: Path, where: str, value: object) -> tuple[np.ndarray, np.ndarray]:
    """A c2w 4x4 (or 3x4) matrix -> (position, wxyz quaternion); the rotation must be orthonormal."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(file, f"{where}.c2w must be a 4x4 matrix of numbers") from None
    if m.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(m)):
        raise _fail(file, f"{where}.c2w must be a 4x4 (or 3x4) matrix of finite numbers")
    R = m[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise _fail(file, f"{where}.c2w rotation part is not a rotation (orthonormal, det +1)")
    return m[:3, 3].copy(), matrix_to_quat(R)


def _keyframe(file: Path, i: int, item: object, time: float) -> Keyframe:
    where = f"keyframe {i}"
    if not isinstance(item, dict):
        raise _fail(file, f"{where} must be an object")
    unknown = set(item) - {"time", "c2w", "position", "rotation", "look_at", "up", "fov"}
    if unknown:
        raise _fail(file, f"{where} has unknown field(s) {', '.join(sorted(unknown))}")
    if "c2w" in item:
        if {"position", "rotation", "look_at"} & set(item):
            raise _fail(file, f"{where} gives c2w together with position/rotation/look_at; give one pose")
        position, quat = _matrix_pose(file, where, item["c2w"])
    elif "position" in item:
        position = _vector(file, f"{where}.position", item["position"], 3)
        if "rotation" in item and "look_at" in item:
            raise _fail(file, f"{where} gives both rotation and look_at; give one")
        if "rotation" in item:
            q = _vector(file, f"{where}.rotation", item["rotation"], 4)
            if np.linalg.norm(q) < 1e-9:
                raise _fail(file, f"{where}.rotation is a zero quaternion")
            quat = q / np.linalg.norm(q)
        elif "look_at" in item:
            target = _vector(file, f"{where}.look_at", item["look_at"], 3)
            up = _vector(file, f"{where}.up", item.get("up", [0.0, -1.0, 0.0]), 3)
            try:
                quat = matrix_to_quat(look_at_rotation(position, target, up))
            except ValueError as exc:
                raise _fail(file, f"{where}: {exc}") from None
        else:
            quat = np.array([1.0, 0.0, 0.0, 0.0])
    else:
        raise _fail(file, f"{where} needs a pose: c2w, or position (+ rotation or look_at)")
    fov = item.get("fov")
    if fov is not None and (isinstance(fov, bool) or not isinstance(fov, (int, float)) or not 1.0 <= fov <= 170.0):
        raise _fail(file, f"{where}.fov must be a vertical field of view in degrees within [1, 170]")
    return Keyframe(time, position, quat, None if fov is None else float(fov))


def _times(file: Path, items: list, closed: bool) -> list[float]:
    given = ["time" in item for item in items if isinstance(item, dict)]
    if not any(given):  # evenly spaced
        n = len(items)
        return [i / n if closed else (i / (n - 1) if n > 1 else 0.0) for i in range(n)]
    if not all(given) or len(given) != len(items):
        raise _fail(file, "give a time on every keyframe or on none")
    times = []
    for i, item in enumerate(items):
        t = item["time"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise _fail(file, f"keyframe {i}.time must be a number in [0, 1] (a fraction of the video)")
        times.append(float(t))
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise _fail(file, "keyframe times must increase strictly")
    if closed and times[-1] - times[0] >= 1.0:
        raise _fail(file, "a closed path's keyframe times must span less than 1 (time 1 is time 0)")
    return times


def _choice(file: Path, data: dict, key: str, choices: tuple, default: object) -> object:
    value = data.get(key, default)
    if value not in choices:
        raise _fail(file, f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def load_camera_path(file: str | os.PathLike) -> KeyframePath:
    """Read and validate a custom camera path (docs/camera_paths.md); a bad file raises a one-line UserError."""
    file = Path(file)
    data = read_json(file, "camera path")
    if isinstance(data, list):
        data = {"keyframes": data}
    if not isinstance(data, dict):
        raise _fail(file, "must be a JSON object with a keyframes list")
    unknown = set(data) - {"keyframes", "closed", "interpolation", "units", "name", "version"}
    if unknown:
        raise _fail(file, f"unknown field(s) {', '.join(sorted(unknown))}")
    items = data.get("keyframes")
    if not isinstance(items, list) or not items:
        raise _fail(file, "keyframes must be a non-empty list")
    closed = _choice(file, data, "closed", (True, False), True)
    interpolation = _choice(file, data, "interpolation", ("catmull-rom", "linear"), "catmull-rom")
    units = _choice(file, data, "units", ("relative", "world"), "relative")
    name = data.get("name", file.stem)
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise _fail(file, "name must be a file-name-safe string (letters, digits, - _ .)")
    times = _times(file, items, bool(closed))
    keys = [_keyframe(file, i, item, t) for i, (item, t) in enumerate(zip(items, times))]
    return KeyframePath(name, keys, bool(closed), str(interpolation), str(units))
