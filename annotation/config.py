"""The configuration of scripts/generate_mask.py (stage 0): where the annotation is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MaskConfig:
    """Options of scripts/generate_mask.py."""

    input_dir: str = ""
    """Scene folder holding image.json and the photo (or the old labelme_json_to_dataset folder SCENE/image_json)."""
