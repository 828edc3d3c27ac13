"""Stage 0 (scripts/generate_mask.py): a labelme annotation -> motion regions and motion hints.

Reading is strict and separated from writing: :func:`build_mask` parses and validates everything in
memory (raising :class:`utils.errors.UserError` with one line on any problem); only then
:func:`write_mask_outputs` writes the outputs, each through a temporary file, all renamed at the end,
the manifest last. So a bad annotation never leaves a half-written scene. The rules for what the
annotation may contain are in docs/scene_format.md ("generate_mask").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotation.config import MaskConfig
from annotation.labelme import (
    LEGACY_FILES,
    check_legacy_agrees,
    is_legacy_dir,
    load_annotation_image,
    read_labelme,
    split_shapes,
)
from annotation.masks import assign_hint_regions, drop_empty_regions, rasterize_regions, render_preview
from scene.io import Hint, atomic_path, remove_stale_temps, write_hints, write_labels, write_mask, write_png
from scene.lock import scene_lock
from scene.manifest import StageRun, check_writable
from scene.paths import ScenePaths
from utils.console import warn
from utils.errors import UserError
from utils.failpoints import hold


@dataclass
class MaskResult:
    """Everything scripts/generate_mask.py writes, computed and validated in memory."""

    scene: ScenePaths  # where the outputs go
    json_path: Path
    image_path: Path | None  # the picture file used; None = the embedded imageData
    image: np.ndarray  # (H, W, 3) uint8 RGB at annotation size
    regions: np.ndarray  # (H, W) int32, 0 = static, 1..K in shape order
    region_labels: list[str]  # label of region k at index k - 1
    hints: list[Hint]  # full-resolution pixels, region = region of the start point (0 = none)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step of build_mask

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool union of the regions."""
        return self.regions > 0


class _Warnings(list):
    """Collects warnings and shows each at once (so the user sees them even if a later check fails)."""

    def add(self, message: str) -> None:
        self.append(message)
        warn(message)


def run(config: MaskConfig) -> MaskResult:
    """The whole stage: read and check the annotation, then write the outputs and the manifest."""
    scene, _ = resolve_input(config.input_dir)
    with scene_lock(scene.root, f"generate_mask.py --input_dir {config.input_dir}"):
        result = build_mask(config.input_dir)
        write_mask_outputs(result, config)
    return result


def resolve_input(input_dir: str | Path) -> tuple[ScenePaths, Path | None]:
    """(scene whose outputs are written, legacy image_json folder or None) for ``--input_dir``."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder", "give --input_dir the scene folder holding image.json")
    if is_legacy_dir(folder):
        return ScenePaths(folder.resolve().parent), folder  # resolve: "." has no parent
    return ScenePaths(folder), None


def build_mask(input_dir: str | Path) -> MaskResult:
    """Parse and validate the annotation of a scene folder (or a legacy image_json/ folder) into memory.

    Raises UserError (one line) for every problem listed in docs/scene_format.md; writes nothing.
    """
    scene, legacy = resolve_input(input_dir)
    json_path = scene.labelme_json
    if legacy is not None and not json_path.is_file():
        raise UserError(
            f"{legacy} holds only painted strokes (label.png), not the hint lines, and {json_path} is missing",
            f"put the labelme JSON the folder was made from at {json_path}",
        )
    log = _Warnings()
    t0 = time.perf_counter()
    doc = read_labelme(json_path)
    t1 = time.perf_counter()
    extra = (legacy / "img.png",) if legacy is not None else ()
    image, image_path = load_annotation_image(json_path, doc, extra)
    t2 = time.perf_counter()
    h, w = image.shape[:2]
    shapes, hints = split_shapes(json_path, doc, w, h, log.add)
    if not shapes:
        raise UserError(
            f"{json_path} has no motion region (polygon, rectangle or circle not labelled hint*)",
            "draw a polygon around each part that should move",
        )
    if not hints:
        raise UserError(
            f"{json_path} has no motion hint (a line labelled hint*)",
            "draw a line labelled hint_0 from where the motion starts to where it goes",
        )
    regions, shapes = drop_empty_regions(rasterize_regions(shapes, w, h), shapes, log.add)
    if not shapes:
        raise UserError(f"every motion region of {json_path} lies outside the image", "redraw the regions")
    hints = assign_hint_regions(hints, regions, log.add)
    warn_what_will_not_move(shapes, hints, w, h, log.add)
    if legacy is not None and all((legacy / n).is_file() for n in LEGACY_FILES):
        check_legacy_agrees(legacy, regions, log.add)
    labels = [s.label for s in shapes]
    timings = {"read_json": t1 - t0, "read_image": t2 - t1, "rasterise": time.perf_counter() - t2}
    return MaskResult(scene, json_path, image_path, image, regions, labels, hints, list(log), timings)


def warn_what_will_not_move(shapes, hints: list[Hint], width: int, height: int, add) -> None:
    """Say now, where labelme can fix it, what train_motion.py would otherwise find: a region no hint starts
    in stays still; a hint whose end leaves the image is read at the image's border."""
    driven = {h_.region for h_ in hints}
    for k, shape in enumerate(shapes, 1):
        if k not in driven:
            add(f"region {k} '{shape.label}' has no hint starting inside it: it will not move (draw a hint line in it)")
    for h_ in hints:
        x, y = h_.end
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            add(
                f"hint '{h_.label}' points out of the image (its end is at {x:.0f}, {y:.0f}): its depth is read at the border"
            )


@contextlib.contextmanager
def _all_or_nothing(paths: list[Path]) -> Iterator[dict[Path, Path]]:
    """Temporary paths for every output; all renamed over their targets only if the block succeeds."""
    with contextlib.ExitStack() as stack:
        yield {p: stack.enter_context(atomic_path(p)) for p in paths}


def write_mask_outputs(result: MaskResult, config: MaskConfig) -> list[Path]:
    """Write image_rgb.png, mask.png, regions.png, hints.json, mask_preview.png, then the manifest."""
    scene = result.scene
    check_writable(scene.root)
    from utils.space import require_space

    h, w = result.regions.shape
    require_space(scene.root, 16 * w * h + (1 << 20), "generate_mask.py")  # five pictures and their temporaries
    inputs = [q for q in (_inside(p, scene.root) for p in (result.json_path, result.image_path)) if q is not None]
    run = StageRun(scene, "mask", config, inputs=inputs)
    run.timings.update(result.timings)
    with run.step("preview"):
        preview = render_preview(result.image, result.regions, result.hints)
    outputs = [scene.photo, scene.mask, scene.regions, scene.hints, scene.mask_preview]
    run.invalidate()  # the old manifest must not vouch for a half-replaced set
    remove_stale_temps(scene.root, outputs)  # what a killed run left half-written
    with run.step("write"), _all_or_nothing(outputs) as tmp:
        write_png(tmp[scene.photo], result.image)
        write_mask(tmp[scene.mask], result.mask)
        write_labels(tmp[scene.regions], result.regions)
        hold("mask:write")
        write_hints(tmp[scene.hints], result.hints)
        write_png(tmp[scene.mask_preview], preview)
    run.info.update(
        image_source=str(result.image_path) if result.image_path else "imageData",
        size=[int(result.image.shape[1]), int(result.image.shape[0])],
        region_labels=result.region_labels,
        region_pixels=np.bincount(result.regions.ravel())[1:].tolist(),
        hints=len(result.hints),
        warnings=result.warnings,
    )
    run.finish(outputs=outputs)
    return outputs


def _inside(path: Path | None, root: Path) -> Path | None:
    """``path`` spelled under ``root`` (manifests hash files relative to the scene), None if outside it."""
    if path is None:
        return None
    try:
        return root / path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
