"""Write ``image.json`` and ``labelme_regions.png`` beside ``image.png`` with labelme's own code.

Run with the labelme that ``bash scripts/setup.sh --annotate`` installs (it needs only labelme, numpy and
Pillow; no display: Qt's offscreen platform is used)::

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/data/labelme/make_fixture.py [FOLDER]

The shapes are labelme ``Shape`` objects serialised as labelme's save does (``labelme.app._shape_to_dict``
then ``labelme._label_file.write_label_file``), so ``image.json`` is what the labelme GUI writes for
these clicks. ``labelme_regions.png`` is labelme's own rasterisation of the regions (``shapes_to_label``,
one instance per shape, hints left out): ``generate_mask.py``'s ``regions.png`` must equal it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# (label, shape_type, points, mask box) as a user would draw them on the 96x64 photo
SHAPES = [
    ("water", "polygon", [(56, 33), (40, 47), (20, 63), (66, 63), (64, 45), (62, 33)]),
    ("cloud", "rectangle", [(90, 4), (2, 17)]),  # clicked bottom-right first
    ("smoke", "circle", [(80, 40), (86, 44)]),
    ("mist", "oriented_rectangle", [(4, 30), (20, 26), (22, 34), (6, 38)]),
    ("sea", "mask", [(68, 50), (91, 61)]),  # an AI-mask shape: a bitmap over its box
    ("hint_0", "line", [(56.4, 42.0), (52.9, 47.5)]),
    ("hint_chain", "linestrip", [(28.8, 10.2), (36.5, 10.2), (44.0, 12.0)]),
    ("hint_sea", "line", [(70.0, 55.0), (80.0, 55.0)]),
    ("hint_smoke", "line", [(80.0, 40.0), (80.0, 36.0)]),
    ("hint_mist", "line", [(10.0, 32.0), (16.0, 31.0)]),
    ("peak", "point", [(48, 20)]),  # not a region type: generate_mask.py skips it with a warning
]


def sea_bitmap(box: list[tuple[int, int]]) -> np.ndarray:
    (x1, y1), (x2, y2) = box
    h, w = y2 - y1 + 1, x2 - x1 + 1
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - w / 2) ** 2 / (w / 2) ** 2 + (yy - h / 2) ** 2 / (h / 2) ** 2) <= 1.0  # an ellipse


def main(folder: Path) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from labelme import __version__
    from labelme._label_file import LabelFile
    from labelme._shape import Shape
    from labelme.app import _shape_to_dict
    from labelme.utils import shapes_to_label
    from PyQt5.QtCore import QPointF

    image = Image.open(folder / "image.png")
    shapes = []
    for label, kind, points in SHAPES:
        shape = Shape(label=label, shape_type=kind, flags={}, mask=sea_bitmap(points) if kind == "mask" else None)
        for x, y in points:
            shape.add_point(QPointF(float(x), float(y)))
        shape.close()
        shapes.append(_shape_to_dict(shape))
    LabelFile().save(str(folder / "image.json"), shapes, "image.png", image.height, image.width)

    loaded = LabelFile(str(folder / "image.json"))  # labelme reads it back: the "mask" field decoded
    regions = [s for s in loaded.shapes if not s["label"].startswith("hint") and s["shape_type"] != "point"]
    names = {s["label"]: k for k, s in enumerate(regions, 1)}
    _, instances = shapes_to_label((image.height, image.width), regions, names)
    Image.fromarray(instances.astype(np.uint8)).save(folder / "labelme_regions.png")
    print(f"labelme {__version__}: wrote {folder / 'image.json'} and labelme_regions.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
