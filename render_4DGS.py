"""Stage 3: render the trained 4D Gaussian scene along camera paths into looping videos.

    python render_4DGS.py --input_dir SCENE                         # every looping preset, one loop each
    python render_4DGS.py --input_dir SCENE --paths circle side --loops 2 --resolution 1280x720 --gif
    python render_4DGS.py --input_dir SCENE --camera_path my_path.json --export_ply

Writes SCENE/video/<path>.mp4 (and <path>.gif, frames/<path>/NNNN.png, ply/frame_NNNN.ply on request),
then manifests/render.json last. Every option is a field of render/config.py; the stage is
render/stage.py; camera paths and the custom path format: docs/camera_paths.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils.cli import config_from_args, config_parser, run_main  # the standard library only: errors stay one line


def main(argv: Sequence[str] | None = None) -> int:
    start = time.perf_counter()
    from render.config import RenderConfig

    parser = config_parser(RenderConfig, "render_4DGS.py", __doc__)
    config = config_from_args(RenderConfig(), parser.parse_args(argv))
    from render.stage import run
    from utils.console import info

    summary = run(config)
    w, h = summary.size
    info(
        f"{len(summary.results)} path(s) x {summary.results[0].frames} frames at {w}x{h}: "
        f"rasterizer {summary.render_fps:.1f} FPS (timed over the first frames of every path, nothing else "
        f"running); total {time.perf_counter() - start:.1f} s -> {Path(config.input_dir) / 'video'}; "
        f"report: {Path(config.input_dir) / 'report.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
