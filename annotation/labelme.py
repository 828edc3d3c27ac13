"""Reading labelme annotations: the JSON document, its photo (a file beside it or the embedded imageData),
region shapes and hint lines, and the old ``labelme_json_to_dataset`` folder. Strict: any problem is a
:class:`utils.errors.UserError` with one line; nothing here writes.

Coordinates are labelme's: x right, y down, in full-resolution pixels, pixel (i, j) centred on
(x=i, y=j). Regions are rasterised exactly like labelme's ``shape_to_mask`` (PIL ImageDraw, fill and
outline). The rules for what the annotation may contain are in docs/scene_format.md ("generate_mask").
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image

from scene.io import (
    MAX_HINTS,
    MAX_HINTS_FIX,
    MAX_PIXELS,
    Hint,
    ImageTooLarge,
    load_image_any,
    read_json,
)
from utils.console import warn
from utils.errors import UserError

REGION_TYPES = ("polygon", "rectangle", "circle", "oriented_rectangle", "mask")
HINT_TYPES = ("line", "linestrip")
IMAGE_NAMES = ("image.png", "image.jpg", "image.jpeg")
LEGACY_FILES = ("label.png", "label_names.txt")
LABELME_FIX = "annotate the photo in labelme (bash scripts/setup.sh --annotate installs it) and save it (File > Save) as SCENE/image.json"

# EXIF orientation -> the PIL transpose that shows the image as labelme displays it.
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RegionShape:
    """One motion-region shape of the annotation."""

    label: str
    shape_type: str  # "polygon" | "rectangle" | "circle" | "oriented_rectangle" | "mask"
    points: np.ndarray  # (N, 2) float64, x right, y down, pixels (a mask: its box's two corners)
    index: int  # position in the labelme "shapes" list (0-based), for messages
    bitmap: np.ndarray | None = None  # a "mask" shape (labelme's AI tools): (h, w) bool over its box


# ----------------------------------------------------------------------------- the labelme document


def is_hint_label(label: str) -> bool:
    """Hints are shapes whose label starts with "hint" (case-insensitive, surrounding spaces ignored)."""
    return label.strip().lower().startswith("hint")


def read_labelme(json_path: Path) -> dict[str, Any]:
    """Read a labelme JSON file and check its structure (a dict with a ``shapes`` list of valid shapes)."""
    json_path = Path(json_path)
    if not json_path.is_file():
        others = sorted(p.name for p in json_path.parent.glob("*.json"))
        fix = f"rename {others[0]} to {json_path.name}" if len(others) == 1 else LABELME_FIX
        raise UserError(f"{json_path} is missing", fix)
    doc = read_json(json_path, "labelme annotation")
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise UserError(f"{json_path} is not a labelme annotation (no 'shapes' list)", LABELME_FIX)
    for i, shape in enumerate(doc["shapes"]):
        _check_shape(json_path, i, shape)
    for key in ("imageWidth", "imageHeight"):
        value = doc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise UserError(f"{json_path}: '{key}' is {value!r}, not a positive integer", LABELME_FIX)
    return doc


def _check_shape(json_path: Path, i: int, shape: Any) -> None:
    where = f"{json_path}: shape {i}"
    if not isinstance(shape, dict):
        raise UserError(f"{where} is not an object", LABELME_FIX)
    if not isinstance(shape.get("label"), str):
        raise UserError(f"{where} has no text 'label'", LABELME_FIX)
    if not isinstance(shape.get("shape_type", "polygon"), str | type(None)):
        raise UserError(f"{where} ('{shape['label']}') has a non-text 'shape_type'", LABELME_FIX)
    points = shape.get("points")
    if not isinstance(points, list) or not all(_is_point(p) for p in points):
        raise UserError(f"{where} ('{shape['label']}') has no valid 'points' list of [x, y] numbers", LABELME_FIX)


def _is_point(p: Any) -> bool:
    return (
        isinstance(p, list | tuple)
        and len(p) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in p)
    )


def _shape_type(shape: dict[str, Any]) -> str:
    # labelme 3.x files have no shape_type: everything was a polygon then.
    return str(shape.get("shape_type") or "polygon").strip().lower()


# ----------------------------------------------------------------------------- the photo


def _decode_image_bytes(data: bytes, what: str) -> np.ndarray:
    try:
        return _exif_upright(load_image_any(io.BytesIO(data), what), io.BytesIO(data))
    except ImageTooLarge:
        raise
    except UserError:
        raise UserError(f"{what} is not a readable image", "re-save the annotation in labelme") from None


def _exif_upright(image: np.ndarray, source: Path | io.BytesIO) -> np.ndarray:
    """Apply the EXIF orientation, as labelme does when it opens a photo (annotations are upright)."""
    try:
        with Image.open(source) as im:
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, ValueError):
        return image
    method = _EXIF_TRANSPOSE.get(orientation)
    return image if method is None else np.asarray(Image.fromarray(image).transpose(method))


def _embedded_bytes(json_path: Path, doc: dict[str, Any]) -> bytes | None:
    data = doc.get("imageData")
    if data in (None, ""):
        return None
    if not isinstance(data, str):
        raise UserError(f"{json_path}: 'imageData' is not base64 text", "re-save the annotation in labelme")
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise UserError(f"{json_path}: 'imageData' is not valid base64", "re-save the annotation in labelme") from None


def image_candidates(json_path: Path, doc: dict[str, Any], extra: tuple[Path, ...] = ()) -> list[Path]:
    """Picture files to try, in priority order: ``image.png|jpg|jpeg`` beside the JSON, the file ``imagePath``
    names (relative to the JSON), its file name beside the JSON, then ``extra``. Only existing files.

    An annotation is data from whoever drew it: a file is taken only when it resolves (symlinks followed)
    inside the JSON's folder. When none does and ``imagePath`` or a picture beside the JSON leads out of
    the folder, that is a :class:`UserError`, never a read.
    """
    folder = json_path.parent
    root = folder.resolve()
    out: list[Path] = [folder / name for name in IMAGE_NAMES]
    named = doc.get("imagePath")
    if isinstance(named, str) and named.strip():
        out += _named_paths(folder, named.strip())
    out += list(extra)
    seen: list[Path] = []
    escapes: list[Path] = []
    for p in out:
        if not p.is_file():
            continue
        resolved = p.resolve()
        if not resolved.is_relative_to(root):
            escapes.append(p)
        elif resolved not in [q.resolve() for q in seen]:
            seen.append(p)
    if not seen and escapes:
        raise UserError(
            f"{json_path}: the photo {escapes[0]} lies outside the scene folder {folder} (imagePath or a link)",
            f"copy the photo into {folder} as image.png",
        )
    return seen


def _named_paths(folder: Path, raw: str) -> list[Path]:
    """Where ``imagePath`` may point: as written (relative to the JSON), then its file name beside the JSON."""
    if "\\" in raw:  # written by labelme on Windows
        win = PureWindowsPath(raw)
        return ([] if win.anchor else [folder.joinpath(*win.parts)]) + [folder / win.name]
    path = Path(raw)
    return [path if path.is_absolute() else folder / path, folder / path.name]


def load_annotation_image(
    json_path: Path, doc: dict[str, Any], extra: tuple[Path, ...] = ()
) -> tuple[np.ndarray, Path | None]:
    """The photo the annotation was drawn on, (H, W, 3) uint8 RGB, and the file it came from
    (None = the base64 ``imageData`` embedded in the JSON, used only when no file is found).

    Its size must equal ``imageWidth`` x ``imageHeight`` when the JSON has them; without them, a file
    and the embedded image must agree with each other.
    """
    files = image_candidates(json_path, doc, extra)
    embedded = _embedded_bytes(json_path, doc)
    if not files and embedded is None:
        raise UserError(
            f"no photo for {json_path}: no file '{doc.get('imagePath')}', no image.png/.jpg beside it, no imageData",
            "put the annotated photo beside the JSON as image.png",
        )
    if files:
        image = _exif_upright(load_image_any(files[0]), files[0])
        source: Path | None = files[0]
    else:
        image = _decode_image_bytes(embedded, f"the imageData embedded in {json_path}")  # type: ignore[arg-type]
        source = None
    _check_image_size(json_path, doc, image, source, embedded)
    return image, source


def _check_image_size(
    json_path: Path, doc: dict[str, Any], image: np.ndarray, source: Path | None, embedded: bytes | None
) -> None:
    h, w = image.shape[:2]
    what = str(source) if source is not None else "its imageData"
    jw, jh = doc.get("imageWidth"), doc.get("imageHeight")
    if jw is not None and jh is not None:
        if (w, h) != (jw, jh):
            fix = "give the photo the annotation was drawn on (same size), or re-annotate this photo"
            if source is not None and embedded is not None:
                fix += f"; remove {source.name} to use the photo embedded in the JSON"
            raise UserError(f"{what} is {w}x{h} but {json_path.name} says {jw}x{jh}", fix)
        return
    if source is not None and embedded is not None:
        try:
            with Image.open(io.BytesIO(embedded)) as im:  # header only: cheap
                ew, eh = _exif_size(im)
        except OSError:
            return  # unreadable imageData is irrelevant when a file was found
        if (ew, eh) != (w, h):
            raise UserError(
                f"{source} is {w}x{h} but the photo embedded in {json_path.name} is {ew}x{eh}",
                "give the photo the annotation was drawn on",
            )


def _exif_size(im: Image.Image) -> tuple[int, int]:
    w, h = im.size
    return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


# ----------------------------------------------------------------------------- shapes


def split_shapes(
    json_path: Path, doc: dict[str, Any], width: int, height: int, add: Callable[[str], None] = warn
) -> tuple[list[RegionShape], list[Hint]]:
    """Sort the shapes into motion regions and hints (hint regions still 0), validating each.

    Raises UserError for a polygon with < 3 points, a rectangle/circle without 2 points, a ``line``
    hint without exactly 2 points, a ``linestrip`` hint with < 2 points. Other shape types, non-hint
    lines and zero-length hints are reported through ``add`` and skipped. Region shapes extending
    outside the image are clipped when rasterised (warned). A hint whose start is outside the image is
    moved, vector unchanged, so that its start is on the border (warned); an end outside is kept as
    it is, since only the vector end - start is used.
    """
    regions: list[RegionShape] = []
    hints: list[Hint] = []
    for i, shape in enumerate(doc["shapes"]):
        label, kind = shape["label"], _shape_type(shape)
        points = np.asarray(shape["points"], np.float64).reshape(-1, 2)
        name = f"shape {i} '{label}' ({kind})"
        if is_hint_label(label):
            # Counted before a huge linestrip is parsed: a linestrip of P points is P - 1 segments.
            if kind in HINT_TYPES and len(hints) + len(points) - 1 > MAX_HINTS:
                raise UserError(f"{json_path} has more than {MAX_HINTS} hint segments", MAX_HINTS_FIX)
            hints += _parse_hint(json_path, name, label, kind, points, width, height, add)
        elif kind in REGION_TYPES:
            _check_region_points(json_path, name, kind, points)
            bitmap = _shape_bitmap(json_path, name, shape, points) if kind == "mask" else None
            if _outside(points, width, height):
                add(f"{name} extends outside the {width}x{height} image: clipped to it")
            regions.append(RegionShape(label, kind, points, i, bitmap))
        elif kind in HINT_TYPES:
            add(f"{name} is a line whose label does not start with 'hint': skipped (rename it hint... to use it)")
        else:
            add(
                f"{name}: shape type '{kind}' is not supported (regions: polygon, rectangle, circle, oriented rectangle, mask; hints: line, linestrip): skipped"
            )
    return regions, hints


def _check_region_points(json_path: Path, name: str, kind: str, points: np.ndarray) -> None:
    if kind == "polygon" and len(points) < 3:
        raise UserError(f"{json_path}: {name} has {len(points)} points, a polygon needs >= 3", "redraw or delete it")
    if kind == "circle" and len(points) != 2:
        raise UserError(f"{json_path}: {name} has {len(points)} points, a circle needs 2", "redraw or delete it")
    if kind == "rectangle" and len(points) not in (2, 4):
        raise UserError(f"{json_path}: {name} has {len(points)} points, a rectangle needs 2", "redraw or delete it")
    if kind == "oriented_rectangle" and len(points) != 4:
        raise UserError(f"{json_path}: {name} has {len(points)} points, it needs 4", "redraw or delete it")
    if kind == "mask" and len(points) != 2:
        raise UserError(f"{json_path}: {name} has {len(points)} points, a mask needs its box's 2", "redraw it")


def _shape_bitmap(json_path: Path, name: str, shape: dict[str, Any], points: np.ndarray) -> np.ndarray:
    """The pixels of a labelme "mask" shape: a base64 PNG covering its box (corners ``points``, inclusive,
    truncated to integers as labelme does)."""
    fix = "re-save the annotation in labelme, or redraw the region as a polygon"
    data = shape.get("mask")
    if not isinstance(data, str) or not data:
        raise UserError(f"{json_path}: {name} has no 'mask' image", fix)
    try:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            if im.width * im.height > MAX_PIXELS:
                raise UserError(f"{json_path}: {name}'s mask is {im.width}x{im.height}, larger than any photo", fix)
            bitmap = np.asarray(im.convert("L")) > 0
    except (OSError, ValueError, binascii.Error, Image.DecompressionBombError):
        raise UserError(f"{json_path}: {name}'s 'mask' is not a base64 PNG", fix) from None
    (x1, y1), (x2, y2) = points.astype(int)
    if bitmap.shape != (y2 - y1 + 1, x2 - x1 + 1):
        raise UserError(
            f"{json_path}: {name}'s mask is {bitmap.shape[1]}x{bitmap.shape[0]} but its box is "
            f"{x2 - x1 + 1}x{y2 - y1 + 1}",
            fix,
        )
    return bitmap


def _parse_hint(
    json_path: Path,
    name: str,
    label: str,
    kind: str,
    points: np.ndarray,
    width: int,
    height: int,
    add: Callable[[str], None],
) -> list[Hint]:
    # A 2-point "polygon" is how labelme 3.x (no shape_type) stored a line.
    if kind == "polygon" and len(points) == 2:
        kind = "line"
    if kind not in HINT_TYPES:
        add(f"{name} is labelled as a hint but is not a line: skipped (draw hints with Create Line)")
        return []
    if kind == "line" and len(points) != 2:
        raise UserError(
            f"{json_path}: hint {name} has {len(points)} points, a hint line needs exactly 2 (start, end)",
            "redraw it with Create Line, or use Create LineStrip for a chain of hints",
        )
    if kind == "linestrip" and len(points) < 2:
        raise UserError(f"{json_path}: hint {name} has {len(points)} point, needs >= 2", "redraw or delete it")
    out = []
    for j in range(len(points) - 1):
        start, end = points[j], points[j + 1]
        if np.array_equal(start, end):
            add(f"hint {name} segment {j} has zero length (no direction): skipped")
            continue
        if _outside(start[None], width, height):
            # Move the whole arrow so that its start is on the image: its vector (the motion) is kept.
            shift = np.clip(start, 0.0, [width - 1.0, height - 1.0]) - start
            start, end = start + shift, end + shift
            add(f"hint {name} starts outside the {width}x{height} image: moved onto its border, same vector")
        out.append(Hint((float(start[0]), float(start[1])), (float(end[0]), float(end[1])), 0, label))
    return out


def _outside(points: np.ndarray, width: int, height: int) -> bool:
    """Any point beyond the pixel area (labelme keeps points within [0, W-1] x [0, H-1])."""
    return bool(np.any(points < -0.5) or np.any(points[:, 0] > width - 0.5) or np.any(points[:, 1] > height - 0.5))


# ----------------------------------------------------------------------------- legacy image_json/


def is_legacy_dir(folder: Path) -> bool:
    """A ``labelme_json_to_dataset`` output folder (label.png, label_names.txt or img.png; no image.json)."""
    return not (folder / "image.json").is_file() and any((folder / n).is_file() for n in (*LEGACY_FILES, "img.png"))


def read_legacy_labels(folder: Path) -> tuple[np.ndarray, list[str]]:
    """image_json/label.png (H, W) class ids and label_names.txt (class id -> name)."""
    names = [n.strip() for n in (folder / "label_names.txt").read_text(encoding="utf-8").splitlines() if n.strip()]
    try:
        with Image.open(folder / "label.png") as im:
            labels = np.asarray(im).astype(np.int32)
    except OSError:
        raise UserError(f"{folder / 'label.png'} is not a readable PNG", "re-run labelme_json_to_dataset") from None
    if labels.ndim != 2 or labels.max(initial=0) >= max(len(names), 1):
        raise UserError(
            f"{folder / 'label.png'} does not match {folder / 'label_names.txt'}", "re-run labelme_json_to_dataset"
        )
    return labels, names


def check_legacy_agrees(folder: Path, regions: np.ndarray, add: Callable[[str], None] = warn) -> float | None:
    """IoU between label.png's motion classes and our region union (pixels painted as hints excluded).

    label.png is the old tool's rasterisation of the same JSON, with hint strokes painted over the
    regions and one class per label; it is only a cross-check. Warns when they disagree (IoU < 0.98).
    """
    labels, names = read_legacy_labels(folder)
    if labels.shape != regions.shape:
        add(f"{folder / 'label.png'} is {labels.shape[1]}x{labels.shape[0]}, not the annotation size: not checked")
        return None
    hint_ids = [i for i, n in enumerate(names) if is_hint_label(n)]
    motion_ids = [i for i, n in enumerate(names) if i > 0 and not is_hint_label(n) and n != "_background_"]
    valid = ~np.isin(labels, hint_ids)
    theirs, ours = np.isin(labels, motion_ids) & valid, (regions > 0) & valid
    union = np.count_nonzero(theirs | ours)
    iou = 1.0 if union == 0 else np.count_nonzero(theirs & ours) / union
    if iou < 0.98:
        add(f"{folder / 'label.png'} disagrees with image.json (IoU {iou:.3f}): image.json is used")
    return float(iou)
