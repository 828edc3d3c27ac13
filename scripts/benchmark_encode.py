"""H.264 encoding of a video's frames with each libx264 preset: seconds, file size, PSNR to the frames.

    python scripts/benchmark_encode.py --video SCENE/video/circle.mp4
    python scripts/benchmark_encode.py --video SCENE/video/circle.mp4 --presets medium veryfast

The frames are decoded from ``--video`` (any video), then encoded as utils/video.py's write_mp4 does
(imageio-ffmpeg quality 8, yuv420p) with each preset, one encoder at a time; PSNR is of the decoded
result against those frames.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from utils.cli import make_parser, run_main  # noqa: E402
from utils.errors import UserError  # noqa: E402


def main(argv=None) -> int:
    import utils.video as video

    parser = make_parser("Time libx264's presets on a video's frames.")
    parser.add_argument("--video", type=Path, required=True, help="a video whose frames are encoded")
    parser.add_argument("--presets", nargs="+", default=["medium", "faster", "veryfast", "superfast"])
    args = parser.parse_args(argv)
    if not args.video.is_file():
        raise UserError(f"{args.video} not found", "give a video file, e.g. SCENE/video/circle.mp4")
    frames = video.read_video(args.video)
    h, w = frames.shape[1:3]
    print(f"{len(frames)} frames of {w}x{h} from {args.video}\n")
    print(f"| {'preset':<10} | {'seconds':>8} | {'MB':>6} | {'PSNR dB':>8} |")
    print(f"|{'-' * 12}|{'-' * 10}|{'-' * 8}|{'-' * 10}|")
    default = video.X264_PRESET
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for preset in args.presets:
                video.X264_PRESET = preset
                out = Path(tmp) / f"{preset}.mp4"
                start = time.perf_counter()
                video.write_mp4(out, frames, fps=30)
                seconds = time.perf_counter() - start
                back = video.read_video(out).astype(np.float64)
                psnr = 10 * np.log10(255.0**2 / max(float(((back - frames) ** 2).mean()), 1e-12))
                print(
                    f"| {preset:<10} | {seconds:8.2f} | {os.path.getsize(out) / 1e6:6.2f} | {psnr:8.2f} |", flush=True
                )
    finally:
        video.X264_PRESET = default
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
