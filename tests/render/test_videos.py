"""render_4DGS.py and render.videos: frame counts, sizes, the loop seam, custom paths, PLY export,
determinism, and one-line refusals of bad input that leave the scene folder untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import render.stage
import render_4DGS
from render.camera_paths import PRESETS, path_cameras
from render.videos import (
    RenderOptions,
    bake_loop,
    export_loop_ply,
    render_frames,
    render_videos,
    resize_camera,
)
from scene.cameras import image_size, source_camera
from scene.gaussians import load_ply
from scene.manifest import StageRun, read_manifest
from scene.paths import ScenePaths
from tests.render.stand_in import StandInLoop
from utils.cli import run_main
from utils.errors import UserError
from utils.video import read_video

N_FRAMES = 4


@pytest.fixture(scope="module")
def model():
    return StandInLoop(n_gaussians=400, width=48, height=32, n_frames=N_FRAMES, sh_degree=1, seed=0)


@pytest.fixture(scope="module")
def baked(model):
    return bake_loop(model, "cpu")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, model):
    """Two presets, two loops, PNG frames and GIFs, at 40x24 (a different aspect from the photo's)."""
    out = tmp_path_factory.mktemp("video")
    options = RenderOptions(
        paths=(PRESETS["up-down"], PRESETS["circle"]), loops=2, size=(40, 24), gif=True, save_frames=True
    )
    return out, render_videos(model, out, options, "cpu")


def test_frame_count_and_size(rendered):
    out, summary = rendered
    assert summary.loop_frames == N_FRAMES and summary.size == (40, 24)
    for name in ("up-down", "circle"):
        video = read_video(out / f"{name}.mp4")
        assert video.shape == (2 * N_FRAMES, 24, 40, 3)
        pngs = sorted((out / "frames" / name).glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:04d}.png" for i in range(2 * N_FRAMES)]
        assert (out / f"{name}.gif").is_file()
    assert [r.frames for r in summary.results] == [2 * N_FRAMES, 2 * N_FRAMES]
    assert summary.render_fps > 0 and summary.raster_s > 0


def test_video_matches_the_frames(rendered):
    from PIL import Image

    out, _ = rendered
    video = read_video(out / "circle.mp4").astype(np.float64)
    frames = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "frames" / "circle").glob("*.png"))])
    assert np.abs(video - frames).mean() < 12.0  # H.264 at tiny sizes is lossy, but it is the same content


def test_scene_repeats_every_loop(model, baked):
    """From a still camera, frame j + N is frame j (the baked loop is reused) and the scene moves."""
    cams = [path_cameras(PRESETS["static"], model.cameras[0], 2 * N_FRAMES)]
    frames = [f[0] for f in render_frames(baked, cams)]
    for j in range(N_FRAMES):
        assert np.array_equal(frames[j], frames[j + N_FRAMES])
    assert not np.array_equal(frames[0], frames[1])


def test_loop_seam(model, baked):
    """Frame F (one past the last) equals frame 0: camera path and scene are both periodic."""
    base = model.cameras[0]
    for name in ("up-down", "side", "zoom-in", "circle", "dolly-zoom"):
        path = PRESETS[name]
        n_video = 2 * N_FRAMES
        cams = path_cameras(path, base, n_video, scale=2.0)
        after_last = path.camera(1.0, base, 2.0)
        scene_after_last = model.at_time(1.0)
        for a, b in zip(scene_after_last.tensors(), baked[0].tensors()):
            assert torch.equal(a, b)
        frames = [f for f in render_frames([baked[0]], [[cams[0]], [after_last]])]
        first, seam = frames[0]
        assert np.abs(first.astype(int) - seam.astype(int)).max() <= 1
        # and the last frame differs from the first (the video is not stuck)
        last = next(iter(render_frames([baked[(n_video - 1) % N_FRAMES]], [[cams[-1]]])))[0]
        assert not np.array_equal(last, first)


def test_batched_paths_match_single_renders(model, baked):
    base = model.cameras[0]
    cams = [path_cameras(PRESETS[n], base, N_FRAMES, 2.0) for n in ("side", "zoom-in")]
    together = [f for f in render_frames(baked, cams)]
    alone = [f for f in render_frames(baked, [cams[1]])]
    for j in range(N_FRAMES):
        assert np.abs(together[j][1].astype(int) - alone[j][0].astype(int)).max() <= 1


def test_deterministic(model):
    base = model.cameras[0]
    cams = [path_cameras(PRESETS["circle"], base, N_FRAMES, 2.0)]
    run1 = [f for f in render_frames(bake_loop(model, "cpu"), cams)]
    run2 = [f for f in render_frames(bake_loop(model, "cpu"), cams)]
    for a, b in zip(run1, run2):
        assert np.array_equal(a, b)


def test_bake_shares_unchanged_tensors(baked):
    assert len(baked) == N_FRAMES
    assert baked[1].sh is baked[0].sh and baked[1].opacities is baked[0].opacities
    assert not torch.equal(baked[1].means, baked[0].means)


def test_ply_export_round_trip(tmp_path, baked):
    from plyfile import PlyData

    folder = export_loop_ply(baked, tmp_path / "ply")
    index = json.loads((folder / "index.json").read_text())
    assert index["n_frames"] == N_FRAMES and index["times"] == [i / N_FRAMES for i in range(N_FRAMES)]
    for i, name in enumerate(index["files"]):
        names = PlyData.read(str(folder / name))["vertex"].data.dtype.names
        assert names[:9] == ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
        assert {"opacity", "scale_0", "rot_3", "f_rest_8"} <= set(names)
        back = load_ply(folder / name)
        for a, b in zip(back.tensors(), baked[i].tensors()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_resolution_parsing():
    """--resolution has one meaning in every stage (scene.cameras.image_size); rendering may upscale."""
    assert image_size(None, 96, 64, upscale=True) == (96, 64)
    assert image_size("1280x720", 96, 64, upscale=True) == (1280, 720)
    assert image_size("960", 1920, 1080, upscale=True) == (960, 540)
    assert image_size("192", 96, 64, upscale=True) == (192, 128)
    assert image_size("192", 96, 64) == (96, 64)  # stages 1 and 2 never upscale
    for bad in ("abc", "-1", "0.5", "10x", "1280x720x3", "8x8", "nan"):
        with pytest.raises(UserError, match="resolution"):
            image_size(bad, 96, 64, upscale=True)


def test_resize_camera_keeps_vertical_fov():
    cam = source_camera(96, 64)
    wide = resize_camera(cam, 160, 64)
    assert wide.K[1, 1] == cam.K[1, 1] and wide.K[0, 0] == cam.K[0, 0]
    np.testing.assert_allclose(wide.K[:2, 2], [80, 32])
    half = resize_camera(cam, 48, 32)
    np.testing.assert_allclose(half.K[:2, :2], cam.K[:2, :2] / 2)


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def trained_scene(tmp_path, model, monkeypatch):
    """A scene folder whose 'gaussians' stage is complete, with the stand-in as the trained model."""
    scene = ScenePaths(tmp_path / "scene")
    scene.root.mkdir()
    (scene.root / "gaussians").mkdir()
    (scene.root / "gaussians" / "point_cloud.ply").write_bytes(b"stand-in")
    for stage in ("mask", "motion"):  # stand-ins of the earlier stages: the chain of manifests is complete
        StageRun(scene, stage, {}, inputs=[]).finish(outputs=[])
    StageRun(scene, "gaussians", {}, inputs=[]).finish(outputs=[scene.root / "gaussians"])
    monkeypatch.setattr(render.stage, "load_model", lambda scene, device, iteration: model)
    return scene


def snapshot(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_cli_renders_and_writes_the_manifest_last(trained_scene, tmp_path, capsys):
    custom = tmp_path / "sweep.json"
    custom.write_text(json.dumps({"keyframes": [{"position": [0, 0, 0]}, {"position": [0.05, 0, 0.05]}]}))
    argv = ["--input_dir", str(trained_scene.root), "--paths", "side,static", "--camera_path", str(custom)]
    argv += ["--loops", "1", "--resolution", "32x24", "--export_ply"]
    assert run_main(render_4DGS.main, argv) == 0
    video = trained_scene.video_dir
    for name in ("side", "static", "sweep"):
        assert read_video(video / f"{name}.mp4").shape == (N_FRAMES, 24, 32, 3)
    assert len(list((video / "ply").glob("frame_*.ply"))) == N_FRAMES
    manifest = read_manifest(trained_scene, "render")
    assert manifest["config"]["paths"] == ["side", "static", "sweep"]
    assert "video/sweep.mp4" in manifest["outputs"] and "video/ply/frame_0003.ply" in manifest["outputs"]
    assert manifest["info"]["frames_rendered"] == 3 * N_FRAMES and manifest["info"]["render_fps"] > 0
    newest_output = max((trained_scene.root / rel).stat().st_mtime_ns for rel in manifest["outputs"])
    assert trained_scene.manifest("render").stat().st_mtime_ns >= newest_output
    assert "FPS" in capsys.readouterr().err


BAD_ARGS = [
    (["--loops", "0"], "--loops must be"),
    (["--fps", "0"], "--fps must be"),
    (["--fps", "-5"], "--fps must be"),
    (["--resolution", "big"], "--resolution 'big' is not N or WxH"),
    (["--resolution", "4x4"], "outside 16..8192"),
    (["--paths", "orbit"], "unknown camera path 'orbit'"),
    (["--background", "pink"], "bad --background"),
    (["--path_scale", "-1"], "--path_scale must be positive"),
    (["--camera_path", "MISSING.json"], "missing"),
    (["--camera_path", "BAD.json"], "camera path"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_ARGS)
def test_cli_refuses_bad_input_with_one_line(trained_scene, tmp_path, capsys, extra, message):
    (tmp_path / "BAD.json").write_text(json.dumps({"keyframes": [{"time": 0}]}))
    extra = [str(tmp_path / a) if a.endswith(".json") else a for a in extra]
    before = snapshot(trained_scene.root)
    code = run_main(render_4DGS.main, ["--input_dir", str(trained_scene.root), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert snapshot(trained_scene.root) == before


def test_cli_refuses_a_scene_without_stage_2(tmp_path, capsys):
    """An empty folder names the first stage of the chain to run; one with stages 0-1 names train_4DGS."""
    scene = tmp_path / "empty"
    scene.mkdir()
    code = run_main(render_4DGS.main, ["--input_dir", str(scene)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no complete 'mask' outputs" in err and "generate_mask.py" in err and "later stages" in err
    assert list(scene.iterdir()) == []
    for stage in ("mask", "motion"):
        StageRun(ScenePaths(scene), stage, {}, inputs=[]).finish(outputs=[])
    code = run_main(render_4DGS.main, ["--input_dir", str(scene)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no complete 'gaussians' outputs" in err and "train_4DGS.py" in err


def test_cli_refuses_a_stale_stage_2(trained_scene, capsys):
    (trained_scene.root / "gaussians" / "point_cloud.ply").write_bytes(b"changed")
    before = snapshot(trained_scene.root)
    assert run_main(render_4DGS.main, ["--input_dir", str(trained_scene.root)]) == 2
    assert "was modified" in capsys.readouterr().err
    assert snapshot(trained_scene.root) == before


@pytest.mark.gpu
def test_gpu_matches_cpu(model):
    """gsplat on CUDA renders the same frames as the CPU reference (within rasterizer tolerance)."""
    base = model.cameras[0]
    cams = [path_cameras(PRESETS["circle"], base, N_FRAMES, 2.0)]
    cpu = [f for f in render_frames(bake_loop(model, "cpu"), cams, backend="torch")]
    gpu = [f for f in render_frames(bake_loop(model, "cuda"), cams, backend="gsplat")]
    again = [f for f in render_frames(bake_loop(model, "cuda"), cams, backend="gsplat")]
    for a, b, c in zip(cpu, gpu, again):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
        assert np.array_equal(b, c)


# ----------------------------------------------------------------------------- a trained scene, end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny procedural stage-1 scene trained by train_4DGS.py (a few CPU iterations), then rendered by the
    CLI with every default path, two loops, PNG frames and the PLY export."""
    train_4dgs = pytest.importorskip("train_4DGS")
    fixture = pytest.importorskip("tests.gaussians4d.fixture")
    root = tmp_path_factory.mktemp("trained") / "scene"
    scene = fixture.make_stage1_scene(root, 48, 32, n_frames=4)
    train = ["--input_dir", str(root), "--preset", "cpu", "--device", "cpu", "--resolution", "48"]
    train += ["--coarse_iterations", "2", "--fine_iterations", "3", "--max_points", "400"]
    assert run_main(train_4dgs.main, train) == 0
    render = ["--input_dir", str(root), "--loops", "2", "--save_frames", "--export_ply", "--device", "cpu"]
    assert run_main(render_4DGS.main, render) == 0
    return scene, render


def test_trained_scene_every_default_path(trained):
    from gaussians4d.model import load_trained
    from render.camera_paths import DEFAULT_PATHS

    scene, _ = trained
    model = load_trained(scene)
    n = model.n_frames
    for name in DEFAULT_PATHS:
        assert read_video(scene.video_dir / f"{name}.mp4").shape == (2 * n, 32, 48, 3)
        assert len(list((scene.video_dir / "frames" / name).glob("*.png"))) == 2 * n
    assert read_manifest(scene, "render")["info"]["loop_frames"] == n


def test_trained_scene_loop_seam(trained):
    from gaussians4d.model import load_trained

    scene, _ = trained
    model = load_trained(scene)
    for a, b in zip(model.at_time(1.0).tensors(), model.at_time(0.0).tensors()):
        assert torch.equal(a, b)
    base = model.cameras[0]
    for name in ("circle", "zoom-in"):
        first = PRESETS[name].camera(0.0, base, 2.0)
        after_last = PRESETS[name].camera(1.0, base, 2.0)
        frames = next(iter(render_frames([model.at_time(1.0)], [[first], [after_last]])))
        assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() <= 1


def test_trained_scene_ply_export(trained):
    from gaussians4d.model import load_trained

    scene, _ = trained
    model = load_trained(scene)
    files = sorted((scene.video_dir / "ply").glob("frame_*.ply"))
    assert len(files) == model.n_frames
    for i in (0, model.n_frames - 1):
        back, expected = load_ply(files[i]), model.at_time(i / model.n_frames)
        for a, b in zip(back.tensors(), expected.tensors()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_trained_scene_renders_identically_twice(trained, tmp_path):
    import shutil

    from PIL import Image

    scene, argv = trained
    copy = tmp_path / "copy"
    shutil.copytree(scene.root, copy)
    argv = [copy.as_posix() if a == str(scene.root) else a for a in argv]
    assert run_main(render_4DGS.main, [*argv, "--paths", "side"]) == 0
    for name in ("side",):
        for png in sorted((scene.video_dir / "frames" / name).glob("*.png")):
            again = copy / "video" / "frames" / name / png.name
            assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(again)))


@pytest.mark.gpu
def test_gpu_videos(tmp_path):
    """The whole render on CUDA (gsplat): frame counts and sizes at 1280x720, all default paths."""
    from render.camera_paths import DEFAULT_PATHS

    model = StandInLoop(n_gaussians=20000, width=1280, height=720, n_frames=6, sh_degree=3)
    options = RenderOptions(paths=tuple(PRESETS[n] for n in DEFAULT_PATHS), size=(1280, 720))
    summary = render_videos(model, tmp_path, options, "cuda")
    for name in DEFAULT_PATHS:
        assert read_video(tmp_path / f"{name}.mp4").shape == (6, 720, 1280, 3)
    assert summary.render_fps > 0


def test_interrupted_render_keeps_previous_outputs(tmp_path, model, monkeypatch):
    """Ctrl-C mid-render: the previous video and frames stay as they were, no temporary files are left."""
    import render.videos as rv

    options = RenderOptions(paths=(PRESETS["side"],), size=(32, 24), save_frames=True)
    render_videos(model, tmp_path, options, "cpu")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real = rv.render_frames

    def interrupted(*args, **kwargs):
        for j, item in enumerate(real(*args, **kwargs)):
            if j == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(rv, "render_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render_videos(model, tmp_path, RenderOptions(paths=(PRESETS["side"],), size=(32, 24), save_frames=True), "cpu")
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.rglob(".*")]


def test_encoder_failure_is_raised(tmp_path, model, monkeypatch):
    import render.videos as rv

    def broken(path, frames, fps):
        for i, _ in enumerate(frames):
            if i == 1:
                raise OSError("disk full")
        return 0

    monkeypatch.setattr(rv, "write_mp4", broken)
    with pytest.raises(OSError, match="disk full"):
        render_videos(model, tmp_path, RenderOptions(paths=(PRESETS["side"],), size=(32, 24)), "cpu")
    assert not (tmp_path / "side.mp4").exists()


def test_a_new_render_leaves_only_its_own_videos(trained_scene, capsys):
    """Videos of paths not rendered this time are removed: the folder (and the report) show what the manifest lists."""
    root = str(trained_scene.root)
    assert run_main(render_4DGS.main, ["--input_dir", root, "--paths", "side", "static", "--gif"]) == 0
    assert (trained_scene.video_dir / "side.mp4").is_file() and (trained_scene.video_dir / "side.gif").is_file()
    capsys.readouterr()
    assert run_main(render_4DGS.main, ["--input_dir", root, "--paths", "static"]) == 0
    assert "removed 3 file(s) of an earlier render" in capsys.readouterr().err  # side.mp4, side.gif, static.gif
    left = sorted(p.relative_to(trained_scene.video_dir).as_posix() for p in trained_scene.video_dir.rglob("*"))
    listed = sorted(rel.removeprefix("video/") for rel in read_manifest(trained_scene, "render")["outputs"])
    assert left == listed == ["static.mp4"]
    page = trained_scene.report.read_text()
    assert "static.mp4" in page and "side.mp4" not in page


def test_timed_pass_comes_first_and_leaves_the_frames_unchanged(model):
    baked = bake_loop(model, "cpu")
    base = model.cameras[0]
    cams = [path_cameras(PRESETS["circle"], base, 4, 2.0)]
    plain = list(render_frames(baked, cams))
    stream = render_frames(baked, cams, timed_frames=3)
    seconds = next(stream)
    assert isinstance(seconds, float) and seconds > 0
    timed = list(stream)
    assert len(timed) == len(plain) == 4 and all(np.array_equal(a, b) for a, b in zip(timed, plain))
