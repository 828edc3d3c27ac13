"""Bad inputs for the four scripts: each gives one clear line, exit code 2, no traceback, scene folder unchanged.

Every case starts from a copy of a state of the tiny pipeline (tests/pipeline_fixtures.py), spoils it
(``prepare``), snapshots the scene folder ({relative path: sha256}, hidden files and folders included),
runs the script as a subprocess from the repository root and snapshots again. The selected cases run
concurrently (they are independent processes on independent copies); each test checks one case.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from scene.io import write_labels
from tests.pipeline_fixtures import (
    ROOT,
    SCRIPTS,
    TINY,
    Pipeline,
    diff,
    pipeline,  # noqa: F401 (fixture)
    rehash,
    run_stage,
    snapshot,
    stage_env,
)

Prepare = Callable[[Path, Path], None]  # (scene folder, a scratch folder outside it)


@dataclass(frozen=True)
class Case:
    """One bad input: start from ``state``, ``prepare`` it, run ``stage`` with ``args``; ``expect`` is in the line."""

    id: str
    stage: str
    state: str
    args: tuple[str, ...] = ()
    prepare: Prepare | None = None
    expect: str = ""
    input_dir: str | None = "{scene}"  # None = no --input_dir at all


@dataclass
class Outcome:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]


# ----------------------------------------------------------------------------- ways to spoil a scene


def write(rel: str, content: str | bytes, *, rehashed: bool = False, stages: tuple[str, ...] | None = None) -> Prepare:
    """Replace ``rel`` by ``content``; ``rehashed``: the manifests (of ``stages``, default all) vouch for it."""

    def prepare(scene: Path, tmp: Path) -> None:
        path = scene / rel
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if rehashed:
            rehash(scene, rel, stages)

    return prepare


def truncate(rel: str) -> Prepare:
    """Keep the first half of ``rel``: a file half-written by a killed stage."""

    def prepare(scene: Path, tmp: Path) -> None:
        data = (scene / rel).read_bytes()
        (scene / rel).write_bytes(data[: len(data) // 2])

    return prepare


def remove(*rels: str) -> Prepare:
    def prepare(scene: Path, tmp: Path) -> None:
        for rel in rels:
            (scene / rel).unlink()

    return prepare


def npy(rel: str, shape: tuple[int, ...], *, rehashed: bool) -> Prepare:
    def prepare(scene: Path, tmp: Path) -> None:
        np.save(scene / rel, np.ones(shape, np.float32))
        if rehashed:
            rehash(scene, rel)

    return prepare


def edit_labelme(change: Callable[[dict], None]) -> Prepare:
    def prepare(scene: Path, tmp: Path) -> None:
        doc = json.loads((scene / "image.json").read_text())
        change(doc)
        (scene / "image.json").write_text(json.dumps(doc))

    return prepare


def _move_first_hint(doc: dict) -> None:
    hint = next(s for s in doc["shapes"] if s["label"].startswith("hint"))
    hint["points"][1] = [hint["points"][1][0] + 5.0, hint["points"][1][1]]


def _no_photo(doc: dict) -> None:
    doc["imageData"] = None


def stale_mask(scene: Path, tmp: Path) -> None:
    """The user moves a hint in labelme and re-runs generate_mask: stage 1's inputs are now stale."""
    edit_labelme(_move_first_hint)(scene, tmp)
    run_stage("mask", scene)


def regions_wrong_size(scene: Path, tmp: Path) -> None:
    write_labels(scene / "regions.png", np.ones((32, 48), np.int32))
    rehash(scene, "regions.png")


def motion_partial_leftover(scene: Path, tmp: Path) -> None:
    """What a train_motion killed mid-run leaves: a .motion.partial folder and no manifest."""
    partial = scene / ".motion.partial" / "views"
    partial.mkdir(parents=True)
    (partial / "00.png").write_bytes(b"\x89PNG half")


def motion_rerun(scene: Path, tmp: Path) -> None:
    """train_motion re-ran after training (its manifest and motion3d changed): the 4D Gaussians are stale."""
    np.save(scene / "motion" / "motion3d.npy", np.load(scene / "motion" / "motion3d.npy") * 2)
    rehash(scene, "motion/motion3d.npy", stages=("motion",))


def camera_path_file(content: str) -> Prepare:
    def prepare(scene: Path, tmp: Path) -> None:
        (tmp / "path.json").write_text(content)

    return prepare


def damaged_flow_model(scene: Path, tmp: Path) -> None:
    (tmp / "bad.pth").write_bytes(b"PK\x03\x04 not a checkpoint")


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (its pixels are absent: a reader must stop at the header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def photo_outside(scene: Path, tmp: Path) -> None:
    """An annotation whose imagePath leads out of the scene folder, and no photo beside it."""
    (tmp / "secret.png").write_bytes((scene / "image.png").read_bytes())
    (scene / "image.png").unlink()
    edit_labelme(lambda d: d.update(imagePath="../secret.png", imageData=None))(scene, tmp)


def huge_photo(scene: Path, tmp: Path) -> None:
    (scene / "image.png").write_bytes(huge_png_header(20000, 20000))
    edit_labelme(lambda d: d.update(imageData=None, imageWidth=20000, imageHeight=20000))(scene, tmp)


def _many_hints(doc: dict) -> None:
    hint = next(s for s in doc["shapes"] if s["label"].startswith("hint"))
    doc["shapes"] += [{**hint, "label": f"hint_{i}"} for i in range(2000)]


def oversized_json(scene: Path, tmp: Path) -> None:
    with open(scene / "image.json", "r+b") as f:  # sparse: 300 MB on paper, nothing on the disk
        f.truncate(300 << 20)


def many_hints_file(scene: Path, tmp: Path) -> None:
    one = {"start": [10.0, 10.0], "end": [12.0, 10.0], "region": 1, "label": "hint"}
    write("hints.json", json.dumps([one] * 1500), rehashed=True)(scene, tmp)


def read_only(scene: Path, tmp: Path) -> None:
    """chmod a-w on the scene folder (the project refuses it even as root, by its mode bits)."""
    scene.chmod(scene.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


# ----------------------------------------------------------------------------- the battery

PLY = "motion/points.ply"
ITER = "gaussians/point_cloud/iteration_12"  # the tiny preset trains 6 + 6 iterations
CASES = [
    # --- scripts/generate_mask.py
    Case("mask-input-dir-missing", "mask", "raw", input_dir="{tmp}/no_such_scene", expect="is not a folder"),
    Case("mask-no-input-dir-option", "mask", "raw", input_dir=None, expect="--input_dir"),
    Case("mask-labelme-json-missing", "mask", "raw", prepare=remove("image.json"), expect="image.json"),
    Case("mask-labelme-json-malformed", "mask", "raw", prepare=write("image.json", '{"shapes": ['), expect="JSON"),
    Case("mask-labelme-shapes-string", "mask", "raw", prepare=edit_labelme(lambda d: d.update(shapes="polygons"))),
    Case(
        "mask-polygon-points-not-numbers",
        "mask",
        "raw",
        prepare=edit_labelme(lambda d: d["shapes"][0].update(points="abc")),
    ),
    Case(
        "mask-photo-corrupt",
        "mask",
        "raw",
        prepare=lambda s, t: (write("image.png", b"not a png")(s, t), edit_labelme(_no_photo)(s, t)),
    ),
    Case("mask-read-only-folder", "mask", "raw", prepare=read_only, expect="cannot write"),
    Case("mask-image-path-outside-the-scene", "mask", "raw", prepare=photo_outside, expect="outside the scene folder"),
    Case("mask-photo-20000x20000", "mask", "raw", prepare=huge_photo, expect="400 MP"),
    Case("mask-thousands-of-hints", "mask", "raw", prepare=edit_labelme(_many_hints), expect="more than 1000 hint"),
    Case("mask-labelme-json-300-mb", "mask", "raw", prepare=oversized_json, expect="300 MB"),
    Case("mask-labelme-json-nested-deep", "mask", "raw", prepare=write("image.json", "[" * 100_000 + "]" * 100_000), expect="nested"),
    Case("mask-mask-shape-not-png", "mask", "raw", prepare=edit_labelme(lambda d: d["shapes"][0].update(shape_type="mask", points=[[1, 1], [9, 9]], mask="bm90IGEgcG5n")), expect="not a base64 PNG"),
    # --- train_motion.py
    Case("motion-before-mask", "motion", "raw", expect="generate_mask"),
    Case("motion-stale-labelme", "motion", "mask", prepare=edit_labelme(_move_first_hint), expect="stale"),
    Case("motion-mask-manifest-malformed", "motion", "mask", prepare=write("manifests/mask.json", "{"), expect="JSON"),
    Case("motion-hints-truncated", "motion", "mask", prepare=truncate("hints.json"), expect="modified"),
    Case("motion-hints-string", "motion", "mask", prepare=write("hints.json", '"north"', rehashed=True)),
    Case("motion-hints-thousands", "motion", "mask", prepare=many_hints_file, expect="1500 hints"),
    Case("motion-regions-wrong-size", "motion", "mask", prepare=regions_wrong_size, expect="48x32"),
    Case("motion-photo-missing", "motion", "mask", prepare=remove("image_rgb.png"), expect="missing"),
    Case("motion-n-frames-0", "motion", "mask", ("--n_frames", "0"), expect="--n_frames"),
    Case("motion-train-iteration-negative", "motion", "mask", ("--train_iteration", "-5"), expect="--train_iteration"),
    Case("motion-n-views-26", "motion", "mask", ("--n_views", "26"), expect="--n_views"),
    Case("motion-resolution-0x0", "motion", "mask", ("--resolution", "0x0"), expect="--resolution"),
    Case("motion-speed-nan", "motion", "mask", ("--speed", "nan"), expect="--speed"),
    Case("motion-video-views-outside", "motion", "mask", ("--video_views", "7"), expect="--video_views"),
    Case("motion-depth-model-missing", "motion", "mask", ("--depth_model", "/no/such/depth_model"), expect="depth"),
    Case("motion-depth-model-not-given", "motion", "mask", ("--depth", "model"), expect="--depth_model"),
    Case("motion-inpaint-model-missing", "motion", "mask", ("--inpaint_model", "./no/such/sd"), expect="inpainting model"),
    Case("motion-read-only-folder", "motion", "mask", prepare=read_only, expect="cannot write"),
    Case("4dgs-labelme-edited", "gaussians", "motion", prepare=edit_labelme(_move_first_hint), expect="generate_mask"),
    Case("4dgs-mask-rerun", "gaussians", "motion", prepare=stale_mask, expect="train_motion.py --input_dir"),
    Case("4dgs-mask-rerun-keeps-options", "gaussians", "motion", prepare=stale_mask, expect="--n_views 3"),
    Case("render-labelme-edited", "render", "gaussians", prepare=edit_labelme(_move_first_hint), expect="generate_mask"),
    Case("render-mask-rerun", "render", "gaussians", prepare=stale_mask, expect="train_motion.py --input_dir"),
    Case("motion-flow-model-missing", "motion", "mask", ("--flow_model", "{tmp}/sceneflow_model.pth"), expect="does not exist"),
    Case("motion-flow-model-not-given", "motion", "mask", ("--flow", "model"), expect="--flow_model"),
    Case("motion-flow-model-damaged", "motion", "mask", ("--flow_model", "{tmp}/bad.pth"), damaged_flow_model, expect="flow model"),
    Case("motion-cycle-not-a-divisor", "motion", "mask", ("--cycle", "7"), expect="--cycle"),
    # --- train_4DGS.py
    Case("4dgs-before-motion", "gaussians", "mask", expect="train_motion"),
    Case("4dgs-motion-partial-leftover", "gaussians", "mask", prepare=motion_partial_leftover, expect="motion"),
    Case("4dgs-stale-after-mask-rerun", "gaussians", "motion", prepare=stale_mask, expect="stale"),
    Case("4dgs-motion-manifest-not-object", "gaussians", "motion", prepare=write("manifests/motion.json", "[]")),
    Case("4dgs-points-truncated", "gaussians", "motion", prepare=truncate(PLY), expect="modified"),
    Case("4dgs-points-corrupt", "gaussians", "motion", prepare=write(PLY, b"ply\nrubbish\n", rehashed=True)),
    Case("4dgs-view-depth-wrong-shape", "gaussians", "motion", prepare=npy("motion/views/01_depth.npy", (3, 3), rehashed=False)),
    Case("4dgs-motion3d-wrong-shape", "gaussians", "motion", prepare=npy("motion/motion3d.npy", (5, 2), rehashed=True), expect="shape"),
    Case("4dgs-cameras-malformed", "gaussians", "motion", prepare=write("motion/cameras.json", "{[", rehashed=True), expect="JSON"),
    Case("4dgs-view-image-missing", "gaussians", "motion", prepare=remove("motion/views/01.png"), expect="missing"),
    Case("4dgs-flow-scale-negative", "gaussians", "motion", ("--flow_scale", "-1"), expect="--flow_scale"),
    Case("4dgs-flow-scale-nan", "gaussians", "motion", ("--flow_scale", "nan"), expect="--flow_scale"),
    Case("4dgs-max-gaussians-0", "gaussians", "motion", ("--max_gaussians", "0"), expect="--max_gaussians"),
    Case("4dgs-fine-iterations-negative", "gaussians", "motion", ("--fine_iterations", "-5"), expect="iterations"),
    Case("4dgs-resolution-0x0", "gaussians", "motion", ("--resolution", "0x0"), expect="--resolution"),
    Case("4dgs-read-only-folder", "gaussians", "motion", prepare=read_only, expect="cannot write"),
    # --- render_4DGS.py
    Case("render-before-4dgs", "render", "motion", expect="train_4DGS"),
    Case("render-stale-after-motion-rerun", "render", "gaussians", prepare=motion_rerun, expect="stale"),
    Case("render-ply-truncated", "render", "gaussians", prepare=truncate(f"{ITER}/point_cloud.ply"), expect="modified"),
    Case("render-ply-corrupt", "render", "gaussians", prepare=write(f"{ITER}/point_cloud.ply", b"ply\nrubbish\n", rehashed=True), expect="PLY"),
    Case("render-deformation-json-corrupt", "render", "gaussians", prepare=write(f"{ITER}/deformation.json", '{"format": 7}', rehashed=True)),
    Case("render-iteration-absent", "render", "gaussians", ("--iteration", "999"), expect="999"),
    Case("render-loops-0", "render", "gaussians", ("--loops", "0"), expect="--loops"),
    Case("render-fps-0", "render", "gaussians", ("--fps", "0"), expect="--fps"),
    Case("render-resolution-0x0", "render", "gaussians", ("--resolution", "0x0"), expect="--resolution"),
    Case("render-unknown-path", "render", "gaussians", ("--paths", "somersault"), expect="somersault"),
    Case("render-camera-path-missing", "render", "gaussians", ("--camera_path", "{tmp}/nope.json"), expect="nope.json"),
    Case("render-camera-path-malformed", "render", "gaussians", ("--camera_path", "{tmp}/path.json"), camera_path_file('{"keyframes": [')),
    Case("render-camera-path-keyframes-string", "render", "gaussians", ("--camera_path", "{tmp}/path.json"), camera_path_file('{"keyframes": "up"}'), expect="keyframes"),
    Case("render-background-bad", "render", "gaussians", ("--background", "purple"), expect="--background"),
    Case("render-read-only-folder", "render", "gaussians", prepare=read_only, expect="cannot write"),
]  # fmt: skip


def _params():
    for case in CASES:
        yield pytest.param(case, id=case.id)


def _command(case: Case, scene: Path, tmp: Path) -> list[str]:
    import sys

    fill = {"scene": str(scene), "tmp": str(tmp)}
    cmd = [sys.executable, SCRIPTS[case.stage]]
    if case.input_dir is not None:
        cmd += ["--input_dir", case.input_dir.format(**fill)]
    # The tiny options come first so that the case's options override them (argparse: the last one wins),
    # and so that a bad input wrongly accepted costs seconds, not minutes.
    return cmd + list(TINY[case.stage]) + [a.format(**fill) for a in case.args]


def _restore_writable(folder: Path) -> None:
    folder.chmod(folder.stat().st_mode | stat.S_IWUSR)


def run_case(case: Case, states: Pipeline, tmp: Path) -> Outcome:
    import subprocess

    scene = states.copy(case.state, tmp / "scene")
    if case.prepare is not None:
        case.prepare(scene, tmp)
    cmd = _command(case, scene, tmp)
    before = snapshot(scene)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=stage_env(), capture_output=True, text=True, timeout=600)
        after = snapshot(scene)
    finally:
        _restore_writable(scene)  # so that pytest can clean up
    return Outcome(cmd, proc.returncode, proc.stdout, proc.stderr, before, after)


@pytest.fixture(scope="module")
def outcomes(request, pipeline, tmp_path_factory) -> dict[str, Future]:  # noqa: F811
    """Run the selected cases concurrently (independent processes, independent copies); {case id: Future}."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if item.path == Path(__file__) and hasattr(item, "callspec") and "case" in item.callspec.params
    }
    workers = max(2, min(4, os.cpu_count() or 2))
    pool = ThreadPoolExecutor(max_workers=workers)
    request.addfinalizer(lambda: pool.shutdown(wait=True, cancel_futures=True))
    return {
        case.id: pool.submit(run_case, case, pipeline, tmp_path_factory.mktemp(case.id))
        for case in CASES
        if case.id in selected
    }


def test_battery_is_large_and_distinct():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 25
    assert all(sum(c.stage == s for c in CASES) >= 5 for s in SCRIPTS)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_params()))
def test_bad_input(case: Case, outcomes):
    out: Outcome = outcomes[case.id].result()
    shown = f"\n$ {' '.join(out.cmd[1:])}\n--- stdout\n{out.stdout}--- stderr\n{out.stderr}"
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, f"exit code {out.returncode}{shown}"
    assert "Traceback" not in out.stderr + out.stdout, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line{shown}"
    assert "Fix:" in lines[0], f"the line names no fix{shown}"
    assert case.expect.lower() in lines[0].lower(), f"expected {case.expect!r} in the line{shown}"
    changes = diff(out.before, out.after)
    assert not changes, f"the scene folder changed: {changes}{shown}"
