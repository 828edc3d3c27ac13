"""SCENE/report.html: one page showing what every stage produced, rebuilt from the scene folder.

Each stage calls :func:`write_report` when it finishes. The page is derived only from files and
manifests in the folder (so it is always consistent with them); pictures (curves too) and videos are
referenced beside it with relative paths.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from scene.io import write_bytes
from scene.paths import ScenePaths

STAGES = (
    ("mask", "1. Annotation: regions and hints"),
    ("motion", "2. Multi-view images, flows, 3D motion, looping video"),
    ("gaussians", "3. 4D Gaussians"),
    ("render", "4. Rendered videos"),
)

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
figure{display:inline-block;margin:.4em;vertical-align:top} figcaption{font-size:.85em;color:#555}
img,video{max-width:520px;border:1px solid #ddd} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.2em .6em;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.warn{background:#fff3cd;border:1px solid #e0b000;padding:.6em;margin:.6em 0;font-weight:600}
.missing{color:#999}
"""


def _rel(scene: ScenePaths, path: Path) -> str:
    return path.relative_to(scene.root).as_posix()


def _figure(scene: ScenePaths, path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    src = html.escape(_rel(scene, path))
    if path.suffix == ".mp4":
        media = f'<video src="{src}" controls loop muted autoplay playsinline></video>'
    else:
        media = f'<img src="{src}" alt="{html.escape(caption)}">'
    return f"<figure>{media}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>" for a, b in rows)
    return f"<table><tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>{body}</table>"


def _manifest(scene: ScenePaths, stage: str) -> dict[str, Any] | None:
    path = scene.manifest(stage)
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _stage_media(scene: ScenePaths, stage: str, manifest: dict[str, Any]) -> list[str]:
    m = scene.motion
    if stage == "mask":
        return [_figure(scene, scene.mask_preview, "photo with motion regions and hints")]
    if stage == "motion":
        parts = [
            _figure(scene, m.depth_preview, "depth"),
            _figure(scene, m.views_sheet, "multi-view images (holes inpainted)"),
            _figure(scene, m.flow_arrows, "flow on the photo"),
            _figure(scene, m.flow_preview(0), "flow of view 0 (colour wheel)"),
            _figure(scene, m.motion_loss_plot, "3D motion optimisation loss"),
            _figure(scene, m.loop_quality_plot, "texture retention over the loop (1 = the photo's fine texture)"),
        ]
        parts += [_figure(scene, p, f"looping video, view {p.stem}") for p in sorted(m.video_dir.glob("*.mp4"))]
        return parts
    if stage == "gaussians":
        parts = [_figure(scene, scene.gaussians.training_plot, "training: loss and PSNR over the iterations")]
        previews = sorted((scene.gaussians_dir / "previews").glob("*.png"))
        return parts + [_figure(scene, p, f"preview {p.stem}") for p in previews[-4:]]
    listed = sorted(rel for rel in manifest.get("outputs", {}) if rel.endswith(".mp4"))  # what this render made
    parts = [_figure(scene, scene.root / rel, Path(rel).stem) for rel in listed]
    return [*parts, _figure(scene, scene.video_quality_plot, "texture retention of the static render over the loop")]


def _stage_section(scene: ScenePaths, stage: str, title: str, stale: dict[str, str]) -> str:
    manifest = _manifest(scene, stage)
    if manifest is None:
        return f'<h2>{html.escape(title)}</h2><p class="missing">not run yet</p>'
    info = manifest.get("info", {}) or {}
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if stale.get(stage):
        parts.append(f'<div class="warn">stale: {html.escape(stale[stage])}</div>')
    parts += [f'<div class="warn">warning: {html.escape(str(w))}</div>' for w in info.get("warnings", [])]
    parts += [p for p in _stage_media(scene, stage, manifest) if p]
    timings = [(k, f"{v:.2f} s") for k, v in manifest.get("timings_s", {}).items()]
    if timings:
        parts.append(_table(timings, ("step", "wall time")))
    figures = [(k, _fmt(v)) for k, v in _scalars(info) if not k.startswith(("warnings", "backends"))]
    figures += [(f"backend: {k}", str(v)) for k, v in (info.get("backends") or {}).items()]
    figures += [(k, _fmt(v)) for k, v in manifest.get("resources", {}).items()]
    if figures:
        parts.append(_table(figures, ("figure", "value")))
    parts.append(f"<p><small>command: <code>{html.escape(str(manifest.get('command', '')))}</code></small></p>")
    return "\n".join(parts)


def _scalars(info: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(name, value) of the scalar entries of ``info``, one level of nesting flattened as "outer inner"."""
    out: list[tuple[str, Any]] = []
    for key, value in info.items():
        if isinstance(value, dict) and not prefix:
            out += _scalars(value, f"{key} ")
        elif not isinstance(value, (list, dict)):
            out.append((f"{prefix}{key}", value))
    return out


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def build_report(scene: ScenePaths) -> str:
    title = f"3D-MOM report: {scene.root.name}"
    from scene.manifest import stale_stages

    stale = stale_stages(scene)
    sections = "\n".join(_stage_section(scene, stage, name, stale) for stage, name in STAGES)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{sections}\n</body></html>\n"
    )


def write_report(scene: ScenePaths) -> Path:
    """(Re)write ``SCENE/report.html`` from the scene folder; returns its path."""
    write_bytes(scene.report, build_report(scene).encode())
    return scene.report
