"""Run the whole pipeline on a scene and print a table: wall time per stage, peak memory, FPS, PSNRs.

    python scripts/benchmark_pipeline.py --scene ../shared/scenes/mom_scene_0      # GPU machine
    python scripts/benchmark_pipeline.py --scene demo/scene_0                      # this machine

The scene's image.png and image.json are copied to a fresh work folder (``--work``), so the source
folder is never written. Extra options per stage: ``--motion_args``, ``--gaussians_args``,
``--render_args`` (quoted strings). ``--size 1920x1080`` resizes the photo (bicubic) and scales its
annotation in the work folder: a 1280x720 scene then stands in for a full-HD photo.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.cli import make_parser, run_main  # noqa: E402
from utils.errors import UserError  # noqa: E402

STAGES = [
    ("mask", "scripts/generate_mask.py", "mask_args"),
    ("motion", "train_motion.py", "motion_args"),
    ("gaussians", "train_4DGS.py", "gaussians_args"),
    ("render", "render_4DGS.py", "render_args"),
]


def _copy_inputs(source: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for name in ("image.json", "image.png", "image.jpg", "image.jpeg"):
        if (source / name).is_file():
            shutil.copy2(source / name, work / name)


def _parse_size(size: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size.lower().split("x"))
        if not (16 <= width <= 8192 and 16 <= height <= 8192):
            raise ValueError
    except ValueError:
        raise UserError(f"--size {size!r} is not WIDTHxHEIGHT (16..8192)", "give e.g. --size 1920x1080") from None
    return width, height


def _resize_inputs(work: Path, size: str) -> None:
    """Resize the work folder's photo to ``size`` ("WxH") and scale every annotated point to match."""
    import cv2

    from scene.io import load_image_any, read_json, write_json, write_png

    width, height = _parse_size(size)
    photo = next((work / n for n in ("image.png", "image.jpg", "image.jpeg") if (work / n).is_file()), None)
    if photo is None:
        raise UserError(f"{work} has no image.png/.jpg to resize", "put the photo beside image.json in the scene")
    image = load_image_any(photo)  # as generate_mask.py reads it: RGB, 16-bit, palette and alpha converted
    sy, sx = height / image.shape[0], width / image.shape[1]
    write_png(work / "image.png", cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC))
    if photo.name != "image.png":
        photo.unlink()
    annotation = read_json(work / "image.json")
    for shape in annotation.get("shapes", []):
        shape["points"] = [[x * sx, y * sy] for x, y in shape["points"]]
    annotation.update(imagePath="image.png", imageData=None, imageWidth=width, imageHeight=height)
    write_json(work / "image.json", annotation)


def _run_stage(script: str, work: Path, extra: str) -> float:
    cmd = [sys.executable, str(ROOT / script), "--input_dir", str(work), *shlex.split(extra)]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode != 0:
        raise UserError(f"{script} failed with exit code {done.returncode}", "see its output above")
    return time.perf_counter() - start


def _figures(manifest: dict) -> dict[str, str]:
    out = {}
    res = manifest.get("resources", {})
    if "peak_gpu_memory_gb" in res:
        out["peak GPU GB"] = f"{res['peak_gpu_memory_gb']:.2f}"
    out["peak CPU GB"] = f"{res.get('peak_cpu_memory_gb', float('nan')):.2f}"
    info = manifest.get("info") or {}
    for key, value in info.items():
        if isinstance(value, (int, float)) and any(w in key.lower() for w in ("psnr", "fps", "epe", "gaussians")):
            out[key] = f"{value:.4g}" if isinstance(value, float) else str(value)
    for name, q in (info.get("quality") or {}).items():  # texture retention of a video (scene/quality.py)
        r = q.get("retention") or {}
        if r.get("median") is not None:
            out[f"retention {name} min/median/max"] = f"{r['min']:.2f}/{r['median']:.2f}/{r['max']:.2f}"
    paths = info.get("paths") or {}
    if any("filled_fraction_max" in p for p in paths.values()):
        out["filled max"] = " ".join(f"{k} {p['filled_fraction_max']:.3f}@x{p['zoom']:.2f}" for k, p in paths.items())
    return out


def main(argv=None) -> int:
    parser = make_parser("Benchmark the whole pipeline on one scene.")
    parser.add_argument("--scene", type=Path, required=True, help="folder with image.png + image.json")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temp folder)")
    parser.add_argument("--out_json", type=Path, default=None, help="also write the figures as JSON here")
    for _, _, key in STAGES:
        parser.add_argument(f"--{key}", default="", help="extra options for that stage")
    parser.add_argument("--flow_scale", default="2", help="train_4DGS --flow_scale")
    parser.add_argument("--size", default=None, help="resize the photo to WIDTHxHEIGHT first (e.g. 1920x1080)")
    args = parser.parse_args(argv)
    if not (args.scene / "image.json").is_file():
        raise UserError(f"{args.scene}/image.json not found", "give a scene folder with image.json")
    if args.size:
        _parse_size(args.size)  # before any folder is made
    work = args.work or Path(tempfile.mkdtemp(prefix="mom_bench_")) / args.scene.name
    if work.exists():
        shutil.rmtree(work)
    _copy_inputs(args.scene, work)
    if args.size:
        _resize_inputs(work, args.size)

    rows, total = [], 0.0
    for stage, script, key in STAGES:
        extra = getattr(args, key) + (f" --flow_scale {args.flow_scale}" if stage == "gaussians" else "")
        wall = _run_stage(script, work, extra)
        total += wall
        manifest = json.loads((work / "manifests" / f"{stage}.json").read_text())
        rows.append((stage, wall, _figures(manifest)))

    print(f"\nPipeline on {args.scene} (work folder {work})\n")
    print(f"| {'stage':<10} | {'wall s':>8} | figures")
    print(f"|{'-' * 12}|{'-' * 10}|{'-' * 40}")
    for stage, wall, figures in rows:
        text = ", ".join(f"{k} {v}" for k, v in figures.items())
        print(f"| {stage:<10} | {wall:8.1f} | {text}")
    print(f"| {'total':<10} | {total:8.1f} |")
    if args.out_json:
        args.out_json.write_text(json.dumps({"total_s": total, "stages": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
