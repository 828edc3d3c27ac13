"""Stage 0: a labelme annotation -> motion regions and motion hints.

    python scripts/generate_mask.py --input_dir SCENE          # reads SCENE/image.json + the photo
    python scripts/generate_mask.py --inputdir SCENE/image_json  # the original workflow's folder

Writes into SCENE: image_rgb.png, mask.png, regions.png, hints.json, mask_preview.png, and
manifests/mask.json last. On any problem: one line, exit code 2, nothing written.
The stage is annotation/stage.py; formats and rules: docs/scene_format.md ("generate_mask").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import config_from_args, config_parser, run_main  # the standard library only: errors stay one line


def main(argv: Sequence[str] | None = None) -> int:
    from annotation.config import MaskConfig

    parser = config_parser(MaskConfig, "generate_mask.py", __doc__)
    config = config_from_args(MaskConfig(), parser.parse_args(argv))
    from annotation.stage import run
    from utils.console import info

    result = run(config)
    h, w = result.regions.shape
    counts = ", ".join(f"{k}:{lab}" for k, lab in enumerate(result.region_labels, 1))
    info(
        f"{result.scene.root}: {w}x{h}, {len(result.region_labels)} region(s) ({counts}), "
        f"{len(result.hints)} hint(s), {len(result.warnings)} warning(s) -> mask.png, regions.png, hints.json; "
        f"report: {result.scene.report}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
