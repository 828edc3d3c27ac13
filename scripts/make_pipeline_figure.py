"""Compose the README's pipeline picture from a scene folder that went through all four stages.

python scripts/make_pipeline_figure.py --input_dir demo/scene_0 --out docs/pipeline.png
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image, ImageDraw

from scene.io import load_image_any, write_png
from scene.paths import ScenePaths
from utils.cli import make_parser, run_main
from utils.errors import UserError
from utils.video import read_video

TILE_W = 320


def _tile(image: np.ndarray, caption: str) -> np.ndarray:
    h, w = image.shape[:2]
    im = Image.fromarray(image).resize((TILE_W, round(h * TILE_W / w)), Image.BILINEAR)
    canvas = Image.new("RGB", (TILE_W, im.height + 22), "white")
    canvas.paste(im, (0, 22))
    ImageDraw.Draw(canvas).text((4, 5), caption, fill=(20, 20, 20))
    return np.asarray(canvas)


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{path} is missing", "run all four stages on the scene first")
    return load_image_any(path)


def _video_frame(path: Path, fraction: float) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{path} is missing", "run all four stages on the scene first")
    frames = read_video(path)
    return frames[int(fraction * (len(frames) - 1))]


def main(argv=None) -> int:
    parser = make_parser("Compose a picture of the pipeline from a finished scene folder.")
    parser.add_argument("--input_dir", type=Path, required=True, help="scene folder after render_4DGS.py")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    scene = ScenePaths(args.input_dir)
    m = scene.motion
    tiles = [
        _tile(_read(scene.mask_preview), "1. photo + regions + hints"),
        _tile(_read(m.depth_preview), "2. depth"),
        _tile(_read(m.views_sheet), "3. 25 views, holes inpainted"),
        _tile(_read(m.flow_arrows), "4. flow from the hints"),
        _tile(_video_frame(m.video_mp4(0), 0.5), "5. looping video (mid-loop)"),
        _tile(_video_frame(scene.video_dir / "circle.mp4", 0.3), "6. 4D Gaussians, circle path"),
    ]
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)), constant_values=255) for t in tiles]
    rows = [np.concatenate(tiles[i : i + 3], axis=1) for i in (0, 3)]
    write_png(args.out, np.concatenate(rows, axis=0))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
