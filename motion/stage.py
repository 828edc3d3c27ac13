"""Stage 1 (train_motion.py): photo -> depth -> views with filled holes -> 2D flows -> 3D motion -> looping video.

:func:`run` reads what scripts/generate_mask.py wrote (photo, regions, hints), builds everything in a
staging folder (``SCENE/.motion.partial``, swapped in for ``SCENE/motion`` when complete) and writes
``manifests/motion.json`` last. Its two halves are separate functions: :func:`make_views` (depth, the
view set with filled holes, the merged point cloud, in memory) and :func:`make_motion` (flows, the 3D
motion fit and the videos, written into a motion folder), which benchmarks and tests also call on the
files of an earlier run (:func:`motion.outputs.read_views`). Formats: docs/scene_format.md.
"""

from __future__ import annotations

from contextlib import nullcontext

import cv2
import numpy as np
import torch

from motion.config import InpaintConfig, MotionConfig, video_view_indices
from motion.outputs import ViewSet, loss_plot, write_flows, write_loop_quality, write_video, write_views
from scene.cameras import image_size
from scene.io import Hint, read_hints, read_labels, read_rgb, to_uint8, write_json, write_npy, write_png
from scene.lock import scene_lock
from scene.loop import loop_record
from scene.manifest import StageRun, check_writable, require_stage, staged_dir
from scene.paths import MASK_CMD, MotionPaths, ScenePaths
from scene.quality import LoopMeter
from utils.config import command_line
from utils.console import info, track, warn
from utils.device import resolve_device
from utils.errors import UserError
from utils.failpoints import hold

PRIOR_WARNING = (
    "using the geometric landscape prior for depth (sky far, ground receding to the horizon; crude on real "
    "photos). For learned depth put Depth Anything V2 Small in ckpts/depth-anything-v2-small, run once "
    "online (it is downloaded), or pass --depth_model"
)


def run(config: MotionConfig) -> dict:
    """The whole stage; returns the manifest it wrote."""
    scene = ScenePaths(config.input_dir)
    if not scene.root.is_dir():
        raise UserError(f"{scene.root} is not a folder", "give the scene folder with --input_dir")
    with scene_lock(scene.root, f"train_motion.py --input_dir {scene.root}"):
        return _run(scene, config)


def _run(scene: ScenePaths, config: MotionConfig) -> dict:
    require_stage(scene, "mask")
    check_writable(scene.root)
    check_space(scene, config)
    check_models(config)
    device = str(resolve_device(config.device))
    if config.threads > 0:  # 0 keeps torch's default (one thread per core); results do not depend on it
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rerun = command_line("train_motion.py", config, MotionConfig())
    run_ = StageRun(scene, "motion", config, [scene.photo, scene.mask, scene.regions, scene.hints], rerun)
    run_.info["threads"] = torch.get_num_threads()
    flow_net = load_flow_model(config, device, run_)  # a bad checkpoint fails here, before any work
    try:
        views = make_views(scene, config, run_, device)
        with staged_dir(scene.motion.dir) as tmp:
            out = MotionPaths(tmp)
            with run_.step("write views"):
                write_views(out, views)
            hold("motion:views")
            make_motion(out, views, config, device, run_, flow_net)
            run_.invalidate()  # the previous outputs are about to be replaced
    except torch.cuda.OutOfMemoryError:
        raise UserError(
            f"out of GPU memory at {config.views.resolution or 'full'} resolution",
            "lower --resolution (e.g. --resolution 960)",
        ) from None
    return run_.finish(outputs=[scene.motion.dir])


def check_models(config: MotionConfig) -> None:
    """A local model path that does not exist fails here, before any work (hub ids are tried when loading)."""
    from thirdparty.depth_transformers import resolve_source

    if config.depth.depth_model and config.depth.depth != "prior":
        resolve_source(config.depth.depth_model, "depth model")
    if config.inpaint.inpaint_model and config.inpaint.inpaint not in ("texture", "opencv"):
        resolve_source(config.inpaint.inpaint_model, "inpainting model")


def load_flow_model(config: MotionConfig, device: str, run: StageRun):
    """3D-Cinemagraphy's flow network when ``--flow`` asks for it (else None); recorded as the flow backend."""
    if not config.flow.uses_model:
        run.info.setdefault("backends", {})["flow"] = "hints"
        return None
    from thirdparty.cinemagraphy_flow import load_sceneflow

    with run.step("flow model"):
        net = load_sceneflow(config.flow.flow_model, device)
    run.info.setdefault("backends", {})["flow"] = f"model:{config.flow.flow_model}"
    return net


# ----------------------------------------------------------------------------- depth and views


def check_space(scene: ScenePaths, config: MotionConfig) -> None:
    """Refuse before any work when the outputs cannot fit on the disk (utils/space.py's estimate)."""
    from PIL import Image

    from motion.config import video_view_indices
    from utils.space import motion_bytes, require_space

    with Image.open(scene.photo) as im:  # the header only
        w, h = image_size(config.views.resolution, im.width, im.height)
    n_video = len(video_view_indices(config.video.video_views, config.views.n_views))
    need = motion_bytes(w * h, config.views.n_views, config.video.n_frames, n_video)
    require_space(scene.root, need, f"train_motion.py at {w}x{h}")


def read_inputs(scene: ScenePaths, resolution: str | None) -> tuple[np.ndarray, np.ndarray, list[Hint]]:
    """Photo (uint8), regions and hints at the working resolution (``--resolution``)."""
    made_by = MASK_CMD.replace("SCENE", str(scene.root))
    photo = to_uint8(read_rgb(scene.photo, made_by))
    regions = read_labels(scene.regions, made_by)
    hints = read_hints(scene.hints, made_by)
    h, w = photo.shape[:2]
    if regions.shape != (h, w):
        raise UserError(
            f"{scene.regions} is {regions.shape[1]}x{regions.shape[0]}, the photo {w}x{h}", f"re-run {made_by}"
        )
    ww, wh = image_size(resolution, w, h)
    if (ww, wh) != (w, h):
        photo = cv2.resize(photo, (ww, wh), interpolation=cv2.INTER_AREA if ww < w else cv2.INTER_CUBIC)
        regions = cv2.resize(regions.astype(np.uint16), (ww, wh), interpolation=cv2.INTER_NEAREST).astype(np.int32)
    return photo, regions, [h_.scaled(ww / w, wh / h) for h_ in hints]


def make_inpainter(config: InpaintConfig, device: str, seed: int):
    """The hole filler chosen by --inpaint / --inpaint_model (the texture fill unless a model is named and loads)."""
    from motion.fill import TextureInpainter
    from motion.multiview import inpaint_opencv

    if config.inpaint == "opencv":
        return inpaint_opencv, "opencv"
    if config.inpaint == "texture" or not config.inpaint_model:
        return TextureInpainter(device, seed), "texture"
    from thirdparty.depth_transformers import ModelUnavailable
    from thirdparty.inpaint_diffusers import DEFAULT_PROMPT, DiffusersInpainter

    try:
        prompt = config.inpaint_prompt or DEFAULT_PROMPT
        model = DiffusersInpainter(
            config.inpaint_model, device, config.inpaint_steps, prompt, seed, config.inpaint_size
        )
    except ModelUnavailable as exc:
        if config.inpaint == "model":
            raise UserError(str(exc), "download it into ckpts/ and pass the folder, or use --inpaint texture") from None
        warn(f"{exc}; using the classical texture fill instead")
        return TextureInpainter(device, seed), "texture"
    return model, f"model:{config.inpaint_model}"


def _record_depth(run: StageRun, result) -> None:
    """Say which depth was used and record it (manifest ``info.depth``; the prior is a report banner)."""
    run.info["depth"] = {"method": result.method, **result.info}
    if result.method != "prior":
        info(f"depth: {result.method} ({result.info.get('found', 'given')})")
        return
    source, missing = result.info.get("fallback_from"), result.info.get("no_model")
    if source:  # estimate_depth has warned already
        note = f"the depth prior replaced the depth model {source} (it could not be loaded)"
    elif missing:
        note = f"depth from the geometric landscape prior: {missing}"
        warn(f"depth: {missing}; {PRIOR_WARNING}")
    else:  # asked for with --depth prior: recorded, not warned
        note = "depth from the geometric landscape prior (--depth prior)"
    run.info.setdefault("warnings", []).append(note)


def make_views(scene: ScenePaths, config: MotionConfig, run: StageRun, device: str) -> ViewSet:
    """Depth, cameras, views with filled holes and the merged point cloud (in memory)."""
    from motion.depth import estimate_depth
    from motion.multiview import build_views
    from motion.views import view_cameras
    from scene.cameras import source_camera

    photo, regions, hints = read_inputs(scene, config.views.resolution)
    h, w = photo.shape[:2]
    source = source_camera(w, h, config.views.fov)
    with run.step("depth"):
        result = estimate_depth(photo, float(source.K[1, 1]), config.depth.depth, config.depth.depth_model, device)
    _record_depth(run, result)
    cameras = view_cameras(source, config.views.n_views, config.views.view_span, config.views.pivot_depth)
    with run.step("inpainter"):
        inpaint, inpaint_name = make_inpainter(config.inpaint, device, config.seed)
    with run.step("views"):
        views, points = build_views(photo, result.depth, regions, cameras, inpaint, device, track)
    run.info.setdefault("backends", {}).update(depth=result.method, inpaint=inpaint_name, device=str(device))
    run.info["views"] = {
        "size": [w, h],
        "inpaint": inpaint_name,
        "points": len(points.xyz),
        "points_from_photo": h * w,
        "holes": [v.info["holes"] for v in views],
        "hole_fraction": [v.info["hole_fraction"] for v in views],
        "photo_fraction": [v.info["photo_fraction"] for v in views],
    }
    return ViewSet(views, hints, points.to_cloud())


# ----------------------------------------------------------------------------- flows, 3D motion, video


def make_motion(
    out: MotionPaths, views: ViewSet, config: MotionConfig, device: str, run: StageRun | None = None, flow_net=None
):
    """Flows, 3D motion and videos written into ``out``; returns what the manifest records (``info.motion``).

    ``run`` (optional) times each step and records the result; ``flow_net`` is the learned flow network
    (:func:`load_flow_model`) when ``--flow`` uses one.
    """
    from motion.animate import LoopAnimator, view_animation_inputs
    from motion.flow import view_flows
    from motion.motion3d import fit_scene_motion

    video_views = video_view_indices(config.video.video_views, len(views.views))

    def step(name: str):
        return run.step(name) if run is not None else nullcontext()

    with step("flows"):
        flows, moving = view_flows(views, config.flow, device, flow_net)
        write_flows(out, flows, views)
    with step("motion3d"):
        motion, report = fit_scene_motion(views, flows, moving, config.fit, device)
        write_npy(out.motion3d, motion)
        hold("motion:motion3d")
        write_json(out.motion_loss, report)
        write_png(out.motion_loss_plot, loss_plot(report))
    if report["epe_px_per_frame"] is not None:
        info(
            f"3D motion: {report['moving_points']} moving points, EPE {report['epe_px_per_frame']:.4f} px/frame "
            f"(zero motion: {report['epe_zero_motion_px_per_frame']:.4f}) after {config.fit.train_iteration} steps"
        )
    photo = views.photo.camera
    schedule = config.video.schedule(config.seed, (photo.width, photo.height))
    videos, quality = [], {}
    with step("video"):
        for v in video_views:
            inputs = view_animation_inputs(views, v, flows, motion, moving, schedule, device)
            animator = LoopAnimator(schedule=schedule, **inputs)
            meter = LoopMeter(views.views[v].image, inputs["mask"].cpu().numpy(), inputs["flow"].cpu().numpy(), 1.0, 2)
            videos.append(write_video(out, v, animator, config.video.fps, meter))
            quality[v] = meter.result()
        summary = write_loop_quality(out, quality)
    result = {
        "moving_regions": moving,
        "epe_px_per_frame": report["epe_px_per_frame"],
        "moving_points": report["moving_points"],
        "videos": videos,
    }
    if run is not None:
        run.info["motion"] = result
        run.info["loop"] = loop_record(schedule)
        run.info["quality"] = summary
    return result
