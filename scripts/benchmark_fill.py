"""Quality and time of the hole fills of stage 1's views: before (``--inpaint opencv``) and after (the default,
``--inpaint texture``), on the two shared scenes at 1280x720 and the demo scene.

    .venv/bin/python scripts/benchmark_fill.py                         # prints a markdown table
    .venv/bin/python scripts/benchmark_fill.py --figures /tmp/fill-figures --device cuda

For each scene (copied into a temporary folder, then generate_mask) it builds all 25 views with each fill
(default depth prior, default view set) and, over the views with >= 5 % filled pixels, reports the
median texture ratio and gradient anisotropy of the filled pixels (scene/quality.py; targets:
ratio >= 0.5, anisotropy <= 2.5) and the fill's seconds. For reference (medians over the same views):
``surroundings`` is the texture ratio of the photo pixels within 64 px of the hole, and ``photo
anisotropy`` that of all photo-derived pixels: what a fill exactly like its surroundings would score.
``--figures`` writes, per scene, the views side by side (before | after) as PNG.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "scenes"


class Timed:
    """An inpainter that records the seconds of each call (and keeps its ``guided`` flag)."""

    def __init__(self, inpaint, device: str):
        self.inpaint, self.device, self.seconds = inpaint, device, []
        self.guided = getattr(inpaint, "guided", False)

    def __call__(self, *args):
        start = time.perf_counter()
        out = self.inpaint(*args)
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - start)
        return out


def scene_views(folder: Path, inpaint, device: str):
    """All views of ``folder`` (after generate_mask) at its full size with ``inpaint``."""
    from motion.depth import estimate_depth
    from motion.multiview import build_views
    from motion.stage import read_inputs
    from motion.views import view_cameras
    from scene.cameras import source_camera
    from scene.paths import ScenePaths

    photo, regions, _ = read_inputs(ScenePaths(folder), None)
    h, w = photo.shape[:2]
    source = source_camera(w, h)
    depth = estimate_depth(photo, float(source.K[1, 1]), "auto", None, device).depth
    views, _ = build_views(photo, depth, regions, view_cameras(source, 25), inpaint, device)
    return views


def surroundings_ratio(view, band: int = 64) -> float:
    """Texture energy of the photo pixels within ``band`` px of the hole over that of all photo pixels of
    the view: the texture ratio a fill that looked exactly like its surroundings would score."""
    from scene.quality import texture_energy

    near = cv2.dilate(view.hole.astype(np.uint8), np.ones((2 * band + 1, 2 * band + 1), np.uint8)) > 0
    photo = view.valid & ~view.hole
    return texture_energy(view.image, near & photo) / texture_energy(view.image, photo)


def measure(views) -> dict:
    from scene.quality import fill_anisotropy, fill_texture_ratio

    big = [v for v in views[1:] if v.hole is not None and v.hole.mean() >= 0.05]
    return {
        "views": len(big),
        "ratio": statistics.median(fill_texture_ratio(v.image, v.hole, v.valid) for v in big),
        "aniso": statistics.median(fill_anisotropy(v.image, v.hole) for v in big),
        "photo_aniso": statistics.median(fill_anisotropy(v.image, v.valid & ~v.hole) for v in big),
        "around": statistics.median(surroundings_ratio(v) for v in big),
    }


def figure(path: Path, before, after, width: int = 640) -> None:
    """Every view with a hole: before | after, scaled to ``width`` each, stacked."""
    rows = []
    for b, a in zip(before[1:], after[1:]):
        if b.hole is not None and b.hole.mean() >= 0.05:
            h = round(b.image.shape[0] * width / b.image.shape[1])
            pair = [cv2.resize(x.image, (width, h), interpolation=cv2.INTER_AREA) for x in (b, a)]
            rows.append(np.concatenate([pair[0], np.full((h, 6, 3), 255, np.uint8), pair[1]], 1))
    cv2.imwrite(str(path), np.concatenate(rows, 0)[..., ::-1])


def main(argv=None) -> int:
    from motion.fill import TextureInpainter
    from motion.multiview import inpaint_opencv
    from scripts.benchmark_motion import prepare_scene

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="*", default=[str(SHARED / "mom_scene_0"), str(SHARED / "cine_0"), "demo"])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (1: a fair CPU timing)")
    parser.add_argument("--figures", default=None, help="folder for before/after PNGs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print(
        "| scene | views >= 5 % filled | fill | texture ratio (median) | anisotropy (median) | surroundings ratio | "
        "photo anisotropy | fill s/view | fill s total |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenes:
            source = ROOT / "demo" / "scene_0" if name == "demo" else Path(name)
            folder = prepare_scene(source, Path(tmp) / name.replace("/", "_"))
            results = {}
            for label, inpaint in (("opencv", inpaint_opencv), ("texture", TextureInpainter(args.device))):
                timed = Timed(inpaint, args.device)
                results[label] = scene_views(folder, timed, args.device)
                m = measure(results[label])
                total = sum(timed.seconds)
                print(
                    f"| {source.name} | {m['views']} | {label} | {m['ratio']:.3f} | {m['aniso']:.2f} | "
                    f"{m['around']:.3f} | {m['photo_aniso']:.2f} | {total / len(timed.seconds):.3f} | {total:.1f} |",
                    flush=True,
                )
            if args.figures:
                Path(args.figures).mkdir(parents=True, exist_ok=True)
                figure(Path(args.figures) / f"{source.name}_before_after.png", results["opencv"], results["texture"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
