"""Typed, validating readers and writers for every artifact in a scene folder.

All writes are atomic: data goes to a temporary file beside the target, which is then renamed over
it, so a crash mid-write leaves the previous file intact. Readers check what they load and raise
:class:`utils.errors.UserError` naming the file and the command that (re)makes it.

Only inspectable formats: PNG, JSON, PLY, NPY. Conventions: docs/conventions.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from utils.errors import UserError

if TYPE_CHECKING:  # scene.cameras imports torch, which generate_mask.py never needs
    from scene.cameras import Camera

# ----------------------------------------------------------------------------- atomic writes

_TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]+)?")  # what atomic_path's mkstemp names look like


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temps(folder: str | os.PathLike, targets: list[Path] | None = None) -> int:
    """Delete the temporary files that :func:`atomic_path` writers killed mid-write left under ``folder``.

    ``targets``: only the temporary files of these files (directly in ``folder``), e.g. a stage's outputs
    in the scene folder itself; None: every temporary file under ``folder``, for a stage's own output
    folder. Call it before the stage writes, when no other run writes there. Returns the count.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    if targets is None:
        candidates = folder.rglob(".*.tmp*")
    else:
        stems = tuple(f"{Path(t).stem}." for t in targets)
        candidates = (p for p in folder.glob(".*.tmp*") if p.name.lstrip(".").startswith(stems))
    removed = 0
    for path in candidates:
        if path.is_file() and _TEMP_NAME.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _missing(path: Path, made_by: str | None) -> UserError:
    fix = f"run {made_by} first" if made_by else "check the path"
    return UserError(f"{path} is missing", fix)


def _bad(path: Path, what: str, made_by: str | None) -> UserError:
    fix = f"re-run {made_by}" if made_by else "replace the file"
    return UserError(f"{path} is not a valid {what}", fix)


# ----------------------------------------------------------------------------- JSON


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(data, indent=2, default=_json_default, allow_nan=False)
    write_bytes(path, (text + "\n").encode())


MAX_JSON_BYTES = 256 << 20  # the largest JSON read (a labelme file embedding a 64 MP photo is ~150 MB)


def read_json(path: str | os.PathLike, what: str = "JSON file", made_by: str | None = None) -> Any:
    """A JSON file's content; a missing, oversized (> 256 MB), undecodable or absurdly nested file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, made_by)
    fix = f"re-run {made_by}" if made_by else "fix the file"
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise UserError(f"{path} is {size >> 20} MB, more than the {MAX_JSON_BYTES >> 20} MB a {what} may be", fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not valid JSON ({str(exc)[:200]})", fix) from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be a {what}", fix) from None


# ----------------------------------------------------------------------------- images


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float in [0, 1] (or uint8) -> uint8, rounding."""
    if image.dtype == np.uint8:
        return image
    if not np.all(np.isfinite(image)):
        raise ValueError("image has non-finite values")
    return np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_png(path: str | os.PathLike, image: np.ndarray, compress_level: int = 6) -> None:
    """Write an (H, W) or (H, W, 3) image, uint8 or float in [0, 1], as an 8-bit PNG.

    ``compress_level`` is zlib's 0-9: 1 writes ~5x faster than the default 6 for ~20% larger files.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, 3|4), got {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG", compress_level=compress_level)


class ImageTooLarge(UserError):
    """A picture larger than :data:`MAX_PIXELS` (refused before decoding)."""


MAX_PIXELS = 64_000_000  # the largest picture read (an 8K photo is 33 MP); checked from the header, before decoding
MAX_PIXELS_FIX = "downscale it to at most 8000 pixels on its longest side and annotate the downscaled photo"


def load_image_any(path: Path | io.BytesIO, name: str | None = None) -> np.ndarray:
    """Any readable picture -> (H, W, 3) uint8 RGB (16-bit, palette, grey and alpha converted).

    A picture over :data:`MAX_PIXELS` is refused from its header, before any pixel is decoded; ``name``
    is what messages call it (default: the path)."""
    name = name or str(path)
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageTooLarge(
                    f"{name} is {im.width}x{im.height} ({im.width * im.height / 1e6:.0f} MP), more than the "
                    f"{MAX_PIXELS // 1_000_000} MP this pipeline reads",
                    MAX_PIXELS_FIX,
                )
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                peak = 65535.0 if arr.max() > 255 else 255.0
                arr = np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8)
                return np.repeat(arr[..., None], 3, axis=2)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
            return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as exc:  # Pillow's own limit (above ours) stops even the header
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too many pixels"
        raise ImageTooLarge(
            f"{name} has {size}, more than the {MAX_PIXELS // 1_000_000} MP this pipeline reads", MAX_PIXELS_FIX
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{name} is not a readable image ({exc})", "give a PNG or JPEG file") from None


def read_rgb(path: str | os.PathLike, made_by: str | None = None) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]."""
    return read_rgb8(path, made_by).astype(np.float32) / 255.0


def read_rgb8(path: str | os.PathLike, made_by: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, made_by)
    return load_image_any(path)


def read_mask(path: str | os.PathLike, made_by: str | None = None) -> np.ndarray:
    """An 8-bit 0/255 mask PNG -> (H, W) bool."""
    path = Path(path)
    arr = _read_gray(path, made_by)
    if arr.dtype != np.uint8 or not np.isin(arr, (0, 255)).all():
        raise _bad(path, "mask (8-bit, values 0 or 255)", made_by)
    return arr == 255


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    write_png(path, np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8))


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """(H, W) integer label map (0 = static, 1..K) as an 8-bit (K < 256) or 16-bit PNG."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) > 65535:
        raise ValueError("labels must be (H, W) with values in [0, 65535]")
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    with atomic_path(path) as tmp:
        Image.fromarray(labels.astype(dtype)).save(tmp, format="PNG")


def read_labels(path: str | os.PathLike, made_by: str | None = None) -> np.ndarray:
    """(H, W) int32 label map."""
    return _read_gray(Path(path), made_by).astype(np.int32)


def _read_gray(path: Path, made_by: str | None) -> np.ndarray:
    if not path.is_file():
        raise _missing(path, made_by)
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "P", "1"):
                raise _bad(path, f"single-channel PNG (mode {im.mode})", made_by)
            arr = np.asarray(im)
    except OSError:
        raise _bad(path, "PNG", made_by) from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return arr


# ----------------------------------------------------------------------------- arrays


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def read_npy(
    path: str | os.PathLike,
    shape: tuple[int | None, ...] | None = None,
    dtype: type | None = np.float32,
    made_by: str | None = None,
    finite: bool = True,
) -> np.ndarray:
    """Load an .npy array and check its shape (None = any size), dtype and finiteness."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, made_by)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not a valid .npy array ({exc})", f"re-run {made_by}" if made_by else None) from None
    if shape is not None and (
        arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True))
    ):
        raise UserError(
            f"{path} has shape {arr.shape}, expected {tuple('*' if s is None else s for s in shape)}",
            f"re-run {made_by}" if made_by else None,
        )
    if dtype is not None and arr.dtype != dtype:
        raise UserError(
            f"{path} has dtype {arr.dtype}, expected {np.dtype(dtype)}", f"re-run {made_by}" if made_by else None
        )
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise UserError(f"{path} contains NaN or infinite values", f"re-run {made_by}" if made_by else None)
    return arr


# ----------------------------------------------------------------------------- hints


@dataclass(frozen=True)
class Hint:
    """A motion hint: an arrow from ``start`` to ``end`` in full-resolution pixels (x right, y down)."""

    start: tuple[float, float]
    end: tuple[float, float]
    region: int  # region id it falls in (0 = none)
    label: str = "hint"

    @property
    def vector(self) -> np.ndarray:
        return np.subtract(self.end, self.start, dtype=np.float64)

    def scaled(self, sx: float, sy: float) -> Hint:
        """The same hint in an image scaled by (sx, sy) (pixels of the new size)."""
        return Hint(
            (self.start[0] * sx, self.start[1] * sy), (self.end[0] * sx, self.end[1] * sy), self.region, self.label
        )


def write_hints(path: str | os.PathLike, hints: list[Hint]) -> None:
    write_json(
        path,
        [{"label": h.label, "start": list(h.start), "end": list(h.end), "region": int(h.region)} for h in hints],
    )


MAX_HINTS = 1000  # hint segments per scene: each costs a Gaussian weight per moving pixel of every view
MAX_HINTS_FIX = "a few hints per region are enough: delete most of them in labelme"


def read_hints(path: str | os.PathLike, made_by: str | None = "scripts/generate_mask.py") -> list[Hint]:
    data = read_json(path, "hints file", made_by)
    if not isinstance(data, list):
        raise _bad(Path(path), "hints file (a JSON list)", made_by)
    if len(data) > MAX_HINTS:
        raise UserError(f"{path} has {len(data)} hints, more than the {MAX_HINTS} a scene may have", MAX_HINTS_FIX)
    hints = []
    for item in data:
        try:
            start = tuple(float(v) for v in item["start"])
            end = tuple(float(v) for v in item["end"])
            region = int(item.get("region", 0))
        except (KeyError, TypeError, ValueError):
            raise _bad(Path(path), "hints file (objects with start, end, region)", made_by) from None
        if len(start) != 2 or len(end) != 2 or not all(map(math.isfinite, start + end)):
            raise _bad(Path(path), "hints file (start/end must be finite [x, y])", made_by)
        hints.append(Hint(start, end, region, str(item.get("label", "hint"))))  # type: ignore[arg-type]
    return hints


# ----------------------------------------------------------------------------- cameras


def write_cameras(path: str | os.PathLike, cameras: list[Camera]) -> None:
    write_json(
        path,
        {
            "convention": "OpenCV (x right, y down, z forward); w2c is world-to-camera; K in pixels",
            "cameras": [
                {"id": i, "width": c.width, "height": c.height, "K": c.K.tolist(), "w2c": c.w2c.tolist()}
                for i, c in enumerate(cameras)
            ],
        },
    )


def read_cameras(path: str | os.PathLike, made_by: str | None = "train_motion.py") -> list[Camera]:
    from scene.cameras import Camera

    data = read_json(path, "cameras file", made_by)
    try:
        return [Camera(c["K"], c["w2c"], int(c["width"]), int(c["height"])) for c in data["cameras"]]
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: a size of Infinity (found by fuzzing)
        raise _bad(Path(path), "cameras file", made_by) from None


# ----------------------------------------------------------------------------- point cloud


@dataclass
class PointCloud:
    """Stage 1's point cloud. Rows of ``motion3d.npy`` align with these rows."""

    xyz: np.ndarray  # (P, 3) float32, world units
    rgb: np.ndarray  # (P, 3) uint8
    region: np.ndarray  # (P,) int32, 0 = static
    view: np.ndarray  # (P,) int32, the view the point was made from (0 = the photo)

    def __post_init__(self) -> None:
        n = len(self.xyz)
        if self.xyz.shape != (n, 3) or self.rgb.shape != (n, 3) or self.region.shape != (n,) or self.view.shape != (n,):
            raise ValueError("PointCloud arrays must be (P, 3), (P, 3), (P,), (P,)")

    def __len__(self) -> int:
        return len(self.xyz)


_PLY_FIELDS = [
    ("x", "f4"),
    ("y", "f4"),
    ("z", "f4"),
    ("red", "u1"),
    ("green", "u1"),
    ("blue", "u1"),
    ("region", "i4"),
    ("view", "i4"),
]


def write_points(path: str | os.PathLike, cloud: PointCloud) -> None:
    from plyfile import PlyData, PlyElement

    data = np.empty(len(cloud), dtype=_PLY_FIELDS)
    for i, axis in enumerate("xyz"):
        data[axis] = cloud.xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        data[channel] = cloud.rgb[:, i]
    data["region"] = cloud.region
    data["view"] = cloud.view
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp))


def read_points(path: str | os.PathLike, made_by: str | None = "train_motion.py") -> PointCloud:
    from plyfile import PlyData, PlyParseError

    path = Path(path)
    if not path.is_file():
        raise _missing(path, made_by)
    try:
        v = PlyData.read(str(path))["vertex"].data
        cloud = PointCloud(
            xyz=np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32),
            rgb=np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.uint8),
            region=np.asarray(v["region"], np.int32),
            view=np.asarray(v["view"], np.int32),
        )
    except (KeyError, ValueError, OSError, IndexError, PlyParseError) as exc:
        raise UserError(f"{path} is not a valid point cloud PLY ({exc})", f"re-run {made_by}") from None
    if not np.all(np.isfinite(cloud.xyz)):
        raise UserError(f"{path} has non-finite coordinates", f"re-run {made_by}")
    return cloud
