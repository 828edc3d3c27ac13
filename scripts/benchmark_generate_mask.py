"""Timing of scripts/generate_mask.py (target: <= 2 s for a 1920x1080 annotation on a CPU).

    .venv/bin/python scripts/benchmark_generate_mask.py [--repeats 3] [--no-subprocess]

Prints a table: per-step seconds of the in-process run (median over repeats, from the manifest and
build timings) and the wall time of the whole command in a fresh Python process (imports included).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from annotation.labelme import build_mask, write_mask_outputs
from annotation.procedural import make_landscape, save_scene
from scene.io import read_json, write_json
from utils.cli import make_parser, run_main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "generate_mask.py"
SHARED = ROOT.parent / "shared" / "scenes"
STEPS = ("read_json", "read_image", "rasterise", "preview", "write")


def _heavy_annotation(folder: Path, n_polygons: int = 20, n_points: int = 400, n_hints: int = 50) -> None:
    """Replace the shapes of a procedural scene by many detailed polygons and many hints."""
    doc = read_json(folder / "image.json")
    w, h = doc["imageWidth"], doc["imageHeight"]
    rng = np.random.default_rng(0)
    shapes = []
    for i in range(n_polygons):
        centre = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
        angle = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
        radius = rng.uniform(0.03, 0.12) * w * (1 + 0.2 * np.sin(7 * angle))
        pts = centre + np.stack([np.cos(angle), np.sin(angle)], 1) * radius[:, None]
        shapes.append({"label": f"motion_{i}", "points": pts.round(2).tolist(), "shape_type": "polygon"})
    for i in range(n_hints):
        a = rng.uniform([0, 0], [w - 1, h - 1])
        shapes.append(
            {"label": f"hint_{i}", "points": [a.tolist(), (a + np.array([20.0, 5.0])).tolist()], "shape_type": "line"}
        )
    doc["shapes"] = shapes
    write_json(folder / "image.json", doc)


def _cases(work: Path) -> list[tuple[str, Path]]:
    scene = make_landscape(1920, 1080, seed=0)
    cases = []
    file_case = save_scene(scene, work / "procedural_1920x1080")
    cases.append(("procedural 1920x1080, image.png", file_case))
    embedded = save_scene(scene, work / "embedded_1920x1080")
    (embedded / "image.png").unlink()
    cases.append(("procedural 1920x1080, imageData only", embedded))
    heavy = save_scene(scene, work / "heavy_1920x1080")
    _heavy_annotation(heavy)
    cases.append(("1920x1080, 20 polygons x 400 pts, 50 hints", heavy))
    for name in ("mom_scene_0", "cine_0"):
        if (SHARED / name).is_dir():
            dest = work / name
            shutil.copytree(SHARED / name, dest, ignore=shutil.ignore_patterns("image_json"))
            for p in [dest, *dest.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
            cases.append((f"real {name} 1280x720", dest))
    return cases


def _in_process(folder: Path) -> dict[str, float]:
    start = time.perf_counter()
    result = build_mask(folder)
    write_mask_outputs(result, config={"input_dir": str(folder)})
    total = time.perf_counter() - start
    timings = json.loads((folder / "manifests" / "mask.json").read_text())["timings_s"]
    return {**{k: float(timings.get(k, 0.0)) for k in STEPS}, "total": total}


def _subprocess(folder: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--input_dir", str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"generate_mask failed on {folder}: {proc.stderr.strip()}")
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser("Benchmark scripts/generate_mask.py", prog="benchmark_generate_mask.py")
    parser.add_argument("--repeats", type=int, default=3, help="in-process runs per case (median reported)")
    parser.add_argument("--no-subprocess", dest="subprocess", action="store_false", help="skip the full-command run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_mask_") as tmp:
        cases = _cases(Path(tmp))
        header = f"{'case':<44} " + " ".join(f"{s:>10}" for s in (*STEPS, "total")) + f" {'command':>9}"
        print(header)
        print("-" * len(header))
        for name, folder in cases:
            runs = [_in_process(folder) for _ in range(max(1, args.repeats))]
            med = {k: statistics.median(r[k] for r in runs) for k in (*STEPS, "total")}
            wall = f"{_subprocess(folder):9.2f}" if args.subprocess else f"{'-':>9}"
            print(f"{name:<44} " + " ".join(f"{med[k]:10.3f}" for k in (*STEPS, "total")) + f" {wall}")
    print("seconds; steps and total: median in-process; command: python scripts/generate_mask.py, fresh process")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
