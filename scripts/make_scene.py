"""Make a procedural landscape scene folder: image.png + labelme image.json (+ ground truth).

python scripts/make_scene.py --out demo/scene_0 --width 640 --height 360 --seed 0
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.procedural import make_landscape, save_scene
from utils.cli import make_parser, run_main
from utils.errors import require


def main(argv=None) -> int:
    parser = make_parser("Make a procedural landscape photo and its labelme annotation.")
    parser.add_argument("--out", required=True, type=Path, help="scene folder to write")
    parser.add_argument("--width", type=int, default=640, help="image width in pixels")
    parser.add_argument("--height", type=int, default=360, help="image height in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scene)")
    parser.add_argument("--ground_truth", action="store_true", help="also write ground_truth/ (regions, depth)")
    args = parser.parse_args(argv)
    require(args.width >= 32 and args.height >= 32, "--width and --height must be at least 32", "give a larger size")
    require(args.width * args.height <= 8192 * 8192, "the image is too large", "give at most 8192x8192")
    folder = save_scene(make_landscape(args.width, args.height, args.seed), args.out, args.ground_truth)
    print(folder / "image.json")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
