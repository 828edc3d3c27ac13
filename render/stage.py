"""Stage 3 (render_4DGS.py): the trained 4D scene along camera paths, whole loops, to looping videos.

:func:`run` checks every option before the model loads and before anything is written, renders
(render/videos.py) into ``SCENE/video/`` and writes ``manifests/render.json`` last.
"""

from __future__ import annotations

from pathlib import Path

from render.camera_paths import DEFAULT_PATHS, CameraPath, load_camera_path, resolve_presets
from render.config import RenderConfig, background_rgb
from render.videos import LoopModel, RenderOptions, RenderSummary, render_videos
from scene.cameras import image_size
from scene.lock import scene_lock
from scene.manifest import StageRun, check_writable, read_manifest, require_stage, staged_dir
from scene.paths import VIDEO_QUALITY, VIDEO_QUALITY_PLOT, ScenePaths
from scene.quality import LoopMeter
from utils.config import command_line, to_dict
from utils.console import info
from utils.device import resolve_device
from utils.errors import UserError


def select_paths(names: tuple[str, ...] | None, camera_path: str | None) -> tuple[CameraPath, ...]:
    """The presets named (``all`` = every looping preset) followed by the custom path, validated."""
    custom = load_camera_path(camera_path) if camera_path else None
    if names is None:
        names = () if custom else DEFAULT_PATHS
    flat = [n.strip() for name in names for n in name.split(",") if n.strip()]
    flat = [n for name in flat for n in (DEFAULT_PATHS if name == "all" else (name,))]
    paths: list[CameraPath] = list(resolve_presets(flat))
    if custom is not None:
        if custom.name in {p.name for p in paths}:
            raise UserError(
                f"the custom path's name {custom.name!r} clashes with a preset",
                'rename the file or set "name" in it',
            )
        paths.append(custom)
    if not paths:
        raise UserError("no camera path to render", f"give --paths (e.g. {DEFAULT_PATHS[0]}) or --camera_path")
    return tuple(paths)


def load_model(scene: ScenePaths, device, iteration: int | None) -> LoopModel:
    """The trained 4D scene (train_4DGS.py's outputs)."""
    from gaussians4d.model import load_trained

    return load_trained(scene, device=device, iteration=iteration)


def run(config: RenderConfig) -> RenderSummary:
    """Render every path of ``config``; returns the summary (also recorded in the manifest)."""
    scene = ScenePaths(config.input_dir)
    if not scene.root.is_dir():
        raise UserError(f"{scene.root} is not a folder", "give the scene folder with --input_dir")
    with scene_lock(scene.root, f"render_4DGS.py --input_dir {scene.root}"):
        return _run(scene, config)


def _run(scene: ScenePaths, config: RenderConfig) -> RenderSummary:
    paths = select_paths(config.paths, config.camera_path)
    device = resolve_device(config.device)
    require_stage(scene, "gaussians")
    check_writable(scene.root)
    model = load_model(scene, device, config.iteration)
    if not model.cameras:
        raise UserError(
            f"{scene.root} has no cameras for the trained model", "re-run train_motion.py and train_4DGS.py"
        )
    photo = model.cameras[0]
    size = image_size(config.resolution, photo.width, photo.height, upscale=True)
    trained = training_size(scene) if config.resolution is None else None
    size = trained or size
    options = RenderOptions(
        paths=paths,
        loops=config.loops,
        fps=config.fps,
        size=size,
        gif=config.gif,
        save_frames=config.save_frames,
        export_ply=config.export_ply,
        background=background_rgb(config.background),
        backend=config.backend,
        path_scale=config.path_scale,
        fill_limit=config.fill_limit,
        max_zoom=config.max_zoom,
    )
    from utils.space import render_bytes, require_space

    frames = config.loops * int(model.n_frames)
    ply = 250 * frames * len(model.at_time(0.0).means) if config.export_ply else 0
    need = render_bytes(size[0] * size[1], frames, len(paths), config.save_frames, config.gif, ply)
    require_space(scene.root, need, "render_4DGS.py")
    if trained:
        info(f"rendering at the CPU preset's training size {size[0]}x{size[1]} (--resolution to change it)")
    recorded = {**to_dict(config), "paths": [p.name for p in paths]}  # presets and the custom path, resolved
    rerun = command_line("render_4DGS.py", config, RenderConfig())
    run_ = StageRun(scene, "render", recorded, [scene.manifest("gaussians")], rerun)
    meters = static_meter(scene, model) if any(p.name == "static" for p in paths) else {}
    before = _files_in(scene.video_dir)
    # Rendered into SCENE/.video.partial and swapped in whole: until then the earlier videos (and their
    # manifest) are as they were, whatever stops the run (Ctrl-C, a full disk); after, the folder holds
    # exactly what the manifest lists.
    with staged_dir(scene.video_dir) as out:
        with run_.step("render"):
            summary = render_videos(model, out, options, device, meters)
        made = summary.outputs()
        if meters:
            run_.info["quality"] = {"static": write_quality(out, meters["static"].result())}
            made += [out / VIDEO_QUALITY, out / VIDEO_QUALITY_PLOT]
        run_.invalidate()  # the previous videos are about to be replaced
    run_.timings["bake"] = summary.bake_s
    run_.timings["rasterize"] = summary.raster_s
    run_.info.update(summary.info())
    outputs = [scene.video_dir / Path(p).relative_to(out) for p in made]
    gone = sorted(before - _files_in(scene.video_dir))
    if gone:
        info(f"removed {len(gone)} file(s) of an earlier render that this one did not make: {', '.join(gone[:6])}")
    run_.finish(outputs=outputs)
    return summary


def _files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def training_size(scene: ScenePaths) -> tuple[int, int] | None:
    """The size a CPU-preset model was trained at, the default size of its videos (rendering it larger
    shows a blur, slowly); None for other presets (their videos take the photo's size)."""
    import json

    try:
        config = json.loads(scene.gaussians.config.read_text())
        metrics = json.loads(scene.gaussians.metrics.read_text())
        if config.get("preset") == "cpu":
            w, h = (int(v) for v in metrics["resolution"])
            if 0 < w <= 1 << 14 and 0 < h <= 1 << 14:
                return w, h
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        pass  # an unreadable record: the photo's size
    return None


def static_meter(scene: ScenePaths, model: LoopModel) -> dict[str, LoopMeter]:
    """A meter for the static path (the photo's camera): texture retention against stage 1's photo view
    inside its moving regions, the motion against its flow (scene/quality.py)."""
    import numpy as np

    from scene.io import read_labels, read_npy, read_rgb, to_uint8

    manifest = read_manifest(scene, "motion") or {}
    moving = ((manifest.get("info") or {}).get("motion") or {}).get("moving_regions") or []
    if not moving or not scene.motion.flow(0).is_file():  # nothing moves, or no stage 1 beside the model
        return {}
    mask = np.isin(read_labels(scene.motion.view_regions(0)), moving)
    photo = to_uint8(read_rgb(scene.motion.view_image(0)))
    flow = read_npy(scene.motion.flow(0))
    scale = getattr(model, "n_video_frames", model.n_frames) / model.n_frames  # video frames per rendered frame
    return {"static": LoopMeter(photo, mask, flow, scale, 2)}


def write_quality(folder: Path, result: dict) -> dict:
    """quality.json and quality.png (the retention curve) in the video folder; the summary the manifest records."""
    from scene.io import write_json, write_png
    from scene.quality import retention_plot

    write_json(folder / VIDEO_QUALITY, {"static": result})
    write_png(folder / VIDEO_QUALITY_PLOT, retention_plot({"static render": result["texture_retention"]}))
    return {k: v for k, v in result.items() if k != "texture_retention"}
