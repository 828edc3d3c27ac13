"""``batch_summary.csv`` and ``batch_summary.html``: one row per scene, read from the scene folders.

Columns (docs/batch.md): the scene, its status, the failing stage and its error line, the seconds of each
stage (measured now when it ran now, else as its manifest recorded it), the held-out PSNR of the 4D model
(``gaussians/metrics.json``: ``psnr_heldout``), the median texture retention of stage 1's video of view 0
(``motion/loop_quality.json``: ``["00"]["retention"]["median"]``) and of the static render
(``video/quality.json``: ``["static"]["retention"]["median"]``), the ground-truth figures when ``gt.mp4``
exists, a thumbnail and the scene's report page. Figures and recorded seconds are taken only from stages
that were fresh when the task ended. Both files are written atomically; the thumbnails go to
``thumbnails/`` beside them. A figure that is not there is an empty cell.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batch.stages import FAILED, OK, STAGE_SCRIPTS, SceneResult
from scene.io import atomic_path, write_bytes
from scene.paths import ScenePaths

CSV_NAME, HTML_NAME, THUMBS = "batch_summary.csv", "batch_summary.html", "thumbnails"
THUMB_WIDTH = 192
COLUMNS = [
    "scene",
    "status",
    "failed_stage",
    "error",
    "stages_run",
    *(f"seconds_{s}" for s in STAGE_SCRIPTS),
    "seconds_total",
    "psnr_heldout",
    "retention_video_median",
    "retention_render_median",
    "gt_frames",
    "gt_psnr",
    "gt_ssim",
    "gt_lpips",
    "thumbnail",
    "report",
    "path",
]


def _json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _number(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return "inf" if math.isinf(value) else ("" if math.isnan(value) else f"{value:.{digits}f}")


def stage_seconds(scene: ScenePaths, result: SceneResult) -> dict[str, float]:
    """Seconds per stage: measured now for the stages run now, else for a fresh stage the ``timings_s.total``
    its manifest recorded."""
    out = {}
    for stage in STAGE_SCRIPTS:
        if stage in result.seconds:
            out[stage] = result.seconds[stage]
        elif stage in result.fresh:
            recorded = _dig(_json(scene.manifest(stage)), "timings_s", "total")
            if isinstance(recorded, (int, float)):
                out[stage] = float(recorded)
    return out


def figures(scene: ScenePaths, fresh: Sequence[str]) -> dict[str, Any]:
    """The quality figures of the ``fresh`` stages of a scene (None where missing or stale: outputs left by an
    earlier run whose inputs have changed since are not this scene's figures any more)."""

    def read(stage: str, path: Path, *keys: str) -> Any:
        return _dig(_json(path), *keys) if stage in fresh else None

    return {
        "psnr_heldout": read("gaussians", scene.gaussians.metrics, "psnr_heldout"),
        "retention_video_median": read("motion", scene.motion.loop_quality, "00", "retention", "median"),
        "retention_render_median": read("render", scene.video_quality, "static", "retention", "median"),
    }


def thumbnail_source(scene: ScenePaths, fresh: Sequence[str]) -> np.ndarray | None:
    """Frame 0 of the static render, else of another render, else of stage 1's video (those of ``fresh``
    stages only), else the photo; None if the scene has no readable picture."""
    from batch.evaluate import read_frames
    from scene.io import load_image_any

    videos = sorted(scene.video_dir.glob("*.mp4"), key=lambda p: p.stem != "static") if "render" in fresh else []
    for video in videos:
        try:
            return read_frames(video, 1)[0]
        except Exception:  # a damaged video: the next source will do for a thumbnail
            continue
    pictures = [scene.motion.video_frame(0, 0)] if "motion" in fresh else []
    pictures += [scene.photo, *(scene.root / f"image.{e}" for e in ("png", "jpg", "jpeg"))]
    for path in pictures:
        if path.is_file():
            try:
                return load_image_any(path)
            except Exception:  # as above
                continue
    return None


def write_thumbnail(scene: ScenePaths, dest: Path, fresh: Sequence[str]) -> bool:
    """A JPEG ``THUMB_WIDTH`` pixels wide of :func:`thumbnail_source`; False when the scene has no picture."""
    from PIL import Image

    image = thumbnail_source(scene, fresh)
    if image is None:
        return False
    picture = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    height = max(1, round(picture.height * THUMB_WIDTH / picture.width))
    with atomic_path(dest) as tmp:
        picture.resize((THUMB_WIDTH, height), Image.Resampling.LANCZOS).save(tmp, format="JPEG", quality=85)
    return True


def _evaluation_cells(evaluation: dict | None) -> dict[str, str]:
    if not evaluation:
        return {"gt_frames": "", "gt_psnr": "", "gt_ssim": "", "gt_lpips": ""}
    if "error" in evaluation:
        return {"gt_frames": "", "gt_psnr": evaluation["error"], "gt_ssim": "", "gt_lpips": ""}
    lpips = evaluation.get("lpips")
    return {
        "gt_frames": str(evaluation.get("frames", "")),
        "gt_psnr": _number(evaluation.get("psnr"), 2),
        "gt_ssim": _number(evaluation.get("ssim"), 4),
        "gt_lpips": _number(lpips, 4) if isinstance(lpips, (int, float)) else str(lpips),
    }


def summary_row(result: SceneResult, out_dir: Path) -> dict[str, str]:
    """The row of one scene (every value a string); writes its thumbnail under ``out_dir/thumbnails``."""
    scene = ScenePaths(result.path)
    seconds = stage_seconds(scene, result)
    row = {"scene": result.name, "status": result.status, "failed_stage": result.failed_stage, "error": result.error}
    row["stages_run"] = " ".join(result.ran)
    row.update({f"seconds_{s}": _number(seconds.get(s), 1) for s in STAGE_SCRIPTS})
    row["seconds_total"] = _number(sum(seconds.values()), 1) if seconds else ""
    found = figures(scene, result.fresh)
    row["psnr_heldout"] = _number(found["psnr_heldout"], 2)
    row["retention_video_median"] = _number(found["retention_video_median"], 3)
    row["retention_render_median"] = _number(found["retention_render_median"], 3)
    row.update(_evaluation_cells(result.evaluation))
    thumb = out_dir / THUMBS / f"{result.name}.jpg"
    row["thumbnail"] = f"{THUMBS}/{thumb.name}" if write_thumbnail(scene, thumb, result.fresh) else ""
    row["report"] = os.path.relpath(scene.report, out_dir) if scene.report.is_file() else ""
    row["path"] = str(scene.root)
    return row


def csv_text(rows: Sequence[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:middle;font-size:14px}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#1a7f37}.failed{color:#c62828}
.skipped{color:#666}.err{max-width:34em;font-family:monospace;font-size:12px}"""


def _cell(column: str, value: str) -> str:
    text = html.escape(value)
    if column == "thumbnail":
        return f'<td><img src="{text}" width="128" alt=""></td>' if value else "<td></td>"
    if column == "report":
        return f'<td><a href="{text}">report</a></td>' if value else "<td></td>"
    if column == "status":
        kind = {OK: "ok", FAILED: "failed"}.get(value, "skipped")
        return f'<td class="{kind}">{text}</td>'
    if column == "error":
        return f'<td class="err">{text}</td>'
    numeric = column.startswith(("seconds_", "psnr", "retention", "gt_"))
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def html_text(rows: Sequence[dict[str, str]]) -> str:
    shown = [c for c in COLUMNS if c != "path"]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in shown)
    body = "\n".join(
        f'<tr title="{html.escape(r["path"])}">' + "".join(_cell(c, r[c]) for c in shown) + "</tr>" for r in rows
    )
    counts = {s: sum(r["status"] == s for r in rows) for s in dict.fromkeys(r["status"] for r in rows)}
    tally = ", ".join(f"{n} {html.escape(s)}" for s, n in counts.items())
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>batch summary</title><style>{_STYLE}</style>'
        f"</head><body>\n<h1>Batch summary</h1>\n<p>{len(rows)} scene(s): {tally}. Seconds of stages not run now are "
        f"those their manifests recorded.</p>\n<table><tr>{head}</tr>\n{body}\n</table>\n</body></html>\n"
    )


def write_summary(results: Sequence[SceneResult], out_dir: Path) -> tuple[Path, Path]:
    """Write ``batch_summary.csv`` and ``batch_summary.html`` (and the thumbnails) into ``out_dir``."""
    out_dir = Path(out_dir)
    rows = [summary_row(r, out_dir) for r in results]
    csv_path, html_path = out_dir / CSV_NAME, out_dir / HTML_NAME
    write_bytes(csv_path, csv_text(rows).encode("utf-8"))
    write_bytes(html_path, html_text(rows).encode("utf-8"))
    return csv_path, html_path
