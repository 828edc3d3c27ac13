"""Stage 3 (render_4DGS.py): the trained 4D scene along camera paths, whole loops, to looping videos.

:func:`run` checks every option before the model loads and before anything is written, renders
(render/videos.py) into ``SCENE/video/`` and writes ``manifests/render.json`` last.
"""

from __future__ import annotations

from render.camera_paths import DEFAULT_PATHS, CameraPath, load_camera_path, resolve_presets
from render.config import RenderConfig, background_rgb
from render.videos import LoopModel, RenderOptions, RenderSummary, render_videos
from scene.cameras import image_size
from scene.io import remove_stale_temps
from scene.lock import scene_lock
from scene.manifest import StageRun, check_writable, read_manifest, require_stage
from scene.paths import ScenePaths
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
    if config.resolution is None:
        size = training_size(scene) or size
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
    recorded = {**to_dict(config), "paths": [p.name for p in paths]}  # presets and the custom path, resolved
    rerun = command_line("render_4DGS.py", config, RenderConfig())
    run_ = StageRun(scene, "render", recorded, [scene.manifest("gaussians")], rerun)
    run_.invalidate()
    remove_stale_temps(scene.video_dir)  # half-written videos of a killed run
    meters = static_meter(scene, model) if any(p.name == "static" for p in paths) else {}
    with run_.step("render"):
        summary = render_videos(model, scene.video_dir, options, device, meters)
    run_.timings["bake"] = summary.bake_s
    run_.timings["rasterize"] = summary.raster_s
    run_.info.update(summary.info())
    outputs = summary.outputs()
    if meters:
        run_.info["quality"] = {"static": write_quality(scene, meters["static"].result())}
        outputs += [scene.video_quality, scene.video_quality_plot]
    remove_others(scene.video_dir, outputs)
    run_.finish(outputs=outputs)
    return summary


def remove_others(folder, outputs) -> None:
    """Remove what an earlier run left in ``folder`` that this run did not make (a video of a path not rendered
    now would look current beside the new ones): the folder holds what the manifest lists."""
    import shutil
    from pathlib import Path

    keep = {Path(p).resolve() for p in outputs}
    gone = []
    for path in sorted(Path(folder).rglob("*"), reverse=True):  # files before their folders
        resolved = path.resolve()
        if resolved in keep or any(k in resolved.parents for k in keep if k.is_dir()):
            continue
        if path.is_file():
            path.unlink()
            gone.append(path.name)
        elif path.is_dir() and not any(path.iterdir()):
            shutil.rmtree(path)
    if gone:
        info(f"removed {len(gone)} file(s) of an earlier render that this one did not make: {', '.join(gone[:6])}")


def training_size(scene: ScenePaths) -> tuple[int, int] | None:
    """The size a CPU-preset model was trained at, the default size of its videos (rendering it larger
    shows a blur, slowly); None for other presets (their videos take the photo's size)."""
    import json

    try:
        config = json.loads(scene.gaussians.config.read_text())
        metrics = json.loads(scene.gaussians.metrics.read_text())
        if config.get("preset") == "cpu":
            w, h = (int(v) for v in metrics["resolution"])
            info(f"rendering at the CPU preset's training size {w}x{h} (--resolution to change it)")
            return w, h
    except (OSError, ValueError, KeyError, TypeError):
        pass
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


def write_quality(scene: ScenePaths, result: dict) -> dict:
    """video/quality.json and quality.png (the retention curve); the summary the manifest records."""
    from scene.io import write_json, write_png
    from scene.quality import retention_plot

    write_json(scene.video_quality, {"static": result})
    write_png(scene.video_quality_plot, retention_plot({"static render": result["texture_retention"]}))
    return {k: v for k, v in result.items() if k != "texture_retention"}
