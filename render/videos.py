"""Render a trained 4D Gaussian scene along camera paths into looping videos (render_4DGS.py's engine).

The scene loops every ``N = model.n_frames`` frames, so the deformed Gaussians of the ``N`` loop frames
are evaluated once (:func:`bake_loop`) and reused by every path and every loop. Each video has
``loops * N`` frames: frame ``j`` shows the scene at ``t = (j mod N) / N`` from the path's camera at
phase ``j / (loops * N)``; both are periodic, so frame ``loops * N`` would be frame 0 and the video
repeats without a seam. Rasterization (timed alone) overlaps with H.264 encoding, which runs in one
background thread per path.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from render.camera_paths import CameraPath, path_cameras, reference_depth
from render.framing import Coverage, Framing, frame_path, paths_maps
from scene.cameras import Camera, CameraBatch
from scene.gaussians import GaussianParams, save_ply
from scene.io import write_json, write_png
from scene.manifest import staged_dir
from utils.console import info, track
from utils.errors import UserError
from utils.failpoints import hold
from utils.video import write_gif, write_mp4

GIF_MAX_WIDTH = 480  # GIFs are previews: full-HD GIFs are tens of MB and slow to quantise
TIMED_FRAMES = 20  # frames of every path in the quiet timed pass of the rasterizer (render_frames)
TIMED_BYTES = 256 * 2**20  # the most device memory the timed pass's frames may hold (6 full-HD paths: 6 frames)


class LoopModel(Protocol):
    """What rendering needs from a trained 4D scene (gaussians4d.model.FourDGaussians)."""

    n_frames: int  # frames per loop
    cameras: list[Camera]  # cameras[0] = the photo's camera
    sh_degree: int

    def at_time(self, t: float) -> GaussianParams: ...


@dataclass(frozen=True)
class RenderOptions:
    """Everything that decides the rendered outputs (validated by the CLI before anything is written)."""

    paths: tuple[CameraPath, ...]  # presets and/or custom paths, rendered in this order
    loops: int = 1  # whole scene loops per video
    fps: float = 30.0  # frames per second of the videos
    size: tuple[int, int] | None = None  # (width, height) of the videos; None = the photo's size
    gif: bool = False  # also write <path>.gif (at most GIF_MAX_WIDTH wide)
    save_frames: bool = False  # also write every frame as PNG under video/frames/<path>/
    export_ply: bool = False  # also write one 3DGS PLY per loop frame under video/ply/
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB in [0, 1]
    backend: str = "auto"  # rasterizer: "auto" | "torch" | "gsplat"
    path_scale: float | None = None  # presets' unit; None = reference depth of the photo (camera_paths.py)
    fill_limit: float = 0.02  # most of a frame's pixels that may show filled content (render/framing.py); 1 = off
    max_zoom: float = 1.3  # the framing zooms at most this much before it shrinks a preset's motion


@dataclass
class PathResult:
    name: str
    frames: int
    raster_s: float  # rasterization only: its frames at the speed of the quiet timed pass (render_frames)
    video: Path
    extra: list[Path] = field(default_factory=list)  # gif, frames folder
    zoom: float = 1.0  # the framing (render/framing.py)
    amplitude: float = 1.0
    filled_max: float | None = None  # the largest fraction of a frame's pixels in filled content at its edge
    filled_any_max: float | None = None  # the same with the filled content enclosed by the photo's


@dataclass
class RenderSummary:
    results: list[PathResult]
    n_gaussians: int
    loop_frames: int
    size: tuple[int, int]
    path_scale: float
    bake_s: float
    ply_dir: Path | None
    total_s: float

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.results)

    @property
    def raster_s(self) -> float:
        return sum(r.raster_s for r in self.results)

    @property
    def render_fps(self) -> float:
        return self.frames / max(self.raster_s, 1e-12)

    def outputs(self) -> list[Path]:
        out = [p for r in self.results for p in (r.video, *r.extra)]
        return out + ([self.ply_dir] if self.ply_dir is not None else [])

    def info(self) -> dict[str, Any]:
        return {
            "n_gaussians": self.n_gaussians,
            "loop_frames": self.loop_frames,
            "size": list(self.size),
            "path_scale": self.path_scale,
            "frames_rendered": self.frames,
            "render_fps": round(self.render_fps, 2),
            "paths": {r.name: _path_info(r) for r in self.results},
        }


def _path_info(r: PathResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "frames": r.frames,
        "raster_s": round(r.raster_s, 4),
        "zoom": r.zoom,
        "amplitude": r.amplitude,
    }
    if r.filled_max is not None:
        out["filled_fraction_max"] = round(r.filled_max, 5)
    if r.filled_any_max is not None:
        out["filled_any_fraction_max"] = round(r.filled_any_max, 5)
    return out


# ----------------------------------------------------------------------------- inputs


def resize_camera(camera: Camera, width: int, height: int) -> Camera:
    """``camera`` at another image size, keeping its vertical field of view and square pixels.

    A different aspect ratio widens or narrows the horizontal view instead of stretching the image;
    the principal point goes to the new image centre (docs/conventions.md).
    """
    f = camera.K[1, 1] * height / camera.height
    K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return Camera(K, camera.w2c.copy(), int(width), int(height))


# ----------------------------------------------------------------------------- baking


def _share(params: GaussianParams, first: GaussianParams) -> GaussianParams:
    """Reuse ``first``'s tensors where ``params`` has identical values (opacities and SH rarely move)."""
    tensors = [a if a.shape == b.shape and torch.equal(a, b) else b for a, b in zip(first.tensors(), params.tensors())]
    return GaussianParams(*tensors)


@torch.no_grad()
def bake_loop(model: LoopModel, device: torch.device | str) -> list[GaussianParams]:
    """The Gaussians of loop frames ``i = 0 .. N - 1`` (``t = i / N``), evaluated once, on ``device``."""
    n = int(model.n_frames)
    if n < 1:
        raise ValueError(f"model.n_frames must be >= 1, got {n}")
    frames: list[GaussianParams] = []
    for i in range(n):
        params = model.at_time(i / n).detach().to(device)
        frames.append(_share(params, frames[0]) if frames else params)
    return frames


# ----------------------------------------------------------------------------- rasterization


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def render_frames(
    baked: list[GaussianParams],
    paths_cameras: list[list[Camera]],
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    backend: str = "auto",
    *,
    timed_frames: int = 0,
) -> Iterator[np.ndarray | float]:
    """Render video frame ``j`` of every path at once: the scene ``baked[j % N]`` seen from
    ``paths_cameras[p][j]`` for each path ``p`` (one rasterizer call with one camera per path).

    With ``timed_frames`` = k > 0, first yields the seconds the rasterizer takes for frames 0 .. k - 1 of
    every path (and their conversion to 8 bits), rendered back to back with nothing else running
    (synchronised on CUDA before and after): the speed of the rasterizer itself, where timing the frames
    one by one would count the host's other work (encoders, meters) too. Those frames are kept (on the
    device) and yielded first, so nothing is rendered twice. Then yields frames [P, H, W, 3] uint8 for
    j = 0, 1, ...
    """
    from gaussian_renderer import render

    n_video = len(paths_cameras[0])
    if any(len(c) != n_video for c in paths_cameras):
        raise ValueError("every path must have the same number of cameras")
    device = baked[0].means.device
    mats = [(b.viewmats, b.Ks) for b in (CameraBatch.of(cams, device) for cams in paths_cameras)]
    viewmats = torch.stack([m[0] for m in mats], dim=1)  # [F, P, 4, 4]
    Ks = torch.stack([m[1] for m in mats], dim=1)  # [F, P, 3, 3]
    bg = torch.tensor(background, dtype=torch.float32, device=device)
    width, height = paths_cameras[0][0].width, paths_cameras[0][0].height

    def rasterize(j: int, validate: bool = False):
        g = baked[j % len(baked)]
        return render(
            g.means, g.quats, g.scales, g.opacities, g.sh, viewmats[j], Ks[j], width, height,
            sh_degree=g.sh_degree, background=bg, backend=backend, validate=validate,
        )  # fmt: skip

    # Value checks once, here; the other calls skip them (no device synchronisation per frame).
    if not all(bool(torch.isfinite(t).all()) for g in baked for t in g.tensors()):
        raise UserError("the trained scene gives non-finite Gaussians at some loop time", "re-run train_4DGS.py")
    if device.type == "cuda":
        rasterize(0, validate=True)  # warm-up, untimed: CUDA context, kernel loading (gsplat may JIT-build)

    def frame(j: int) -> torch.Tensor:
        return (rasterize(j).rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)

    kept = []
    if timed_frames > 0:
        _sync(device)
        start = time.perf_counter()
        kept = [frame(j) for j in range(min(timed_frames, n_video))]
        _sync(device)
        yield time.perf_counter() - start
    for j in range(n_video):
        yield (kept[j] if j < len(kept) else frame(j)).cpu().numpy()
        if j < len(kept):
            kept[j] = None  # the device memory goes back as the frames are used


# ----------------------------------------------------------------------------- framing


def _coverage(model: LoopModel, baked: list[GaussianParams]) -> Coverage | None:
    """The baked loop with its photo-coverage colours (render/framing.py), or None when the model has no such flag."""
    rows = getattr(model, "photo_rows", None)
    return Coverage.of(baked, rows()) if rows is not None else None


def _small(base: Camera, width: int = 160) -> Camera:
    """``base`` at most ``width`` wide, for the coverage renders (smaller, a frame's one-pixel edge weighs more)."""
    w = min(width, base.width)
    return resize_camera(base, w, max(8, round(base.height * w / base.width)))


def _framed_paths(options: RenderOptions, coverage, base: Camera, scale: float) -> list[Framing]:
    """Every path framed so that its filled content at the frame's edge stays under ``options.fill_limit``
    (render/framing.py), measured at :func:`_small`'s size."""
    n_video = options.loops * len(coverage.baked)
    small = _small(base)
    framings = []
    every = paths_maps(list(options.paths), coverage, small, scale, n_video, options.backend)
    for path, maps in zip(options.paths, every):
        framing = frame_path(
            path, coverage, small, scale, n_video, options.fill_limit, options.max_zoom, options.backend, maps
        )
        framed = framing.path
        if framed.zoom != 1.0 or framed.amplitude != 1.0:
            info(
                f"{path.name}: zoom {framed.zoom:.3g}, motion x{framed.amplitude:.3g} (keeps filled content off the frame)"
            )
        framings.append(framing)
    return framings


# ----------------------------------------------------------------------------- writing


class _Abort(Exception):
    """Ends a writer's frame stream without finishing its files (the atomic writers then keep old outputs)."""


_DONE, _ABORT = object(), object()


class PathWriter:
    """Encodes one path's frames in a background thread: mp4, optionally PNG frames and a GIF.

    Every output appears atomically when :meth:`close` succeeds; :meth:`abort` leaves previous outputs as
    they were.
    """

    def __init__(self, video: Path, fps: float, frames_dir: Path | None = None, gif: Path | None = None):
        self.video, self.fps, self.frames_dir, self.gif = video, fps, frames_dir, gif
        self._queue: queue.Queue = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self.count = 0
        self._thread = threading.Thread(target=self._run, name=f"encode-{video.stem}", daemon=True)
        self._thread.start()

    def _frames(self, frames_dir: Path | None, gif_frames: list[np.ndarray] | None) -> Iterator[np.ndarray]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if item is _ABORT:
                raise _Abort
            if frames_dir is not None:
                write_png(frames_dir / f"{self.count:04d}.png", item)
            if gif_frames is not None:
                gif_frames.append(_gif_frame(item))
            if self.count == 1:  # the encoder holds the first frame: the video is half-written
                hold("render:video")
            self.count += 1
            yield item

    def _run(self) -> None:
        gif_frames: list[np.ndarray] | None = [] if self.gif is not None else None
        try:
            if self.frames_dir is not None:
                with staged_dir(self.frames_dir) as tmp:
                    write_mp4(self.video, self._frames(tmp, gif_frames), fps=self.fps)
            else:
                write_mp4(self.video, self._frames(None, gif_frames), fps=self.fps)
            if self.gif is not None and gif_frames:
                write_gif(self.gif, gif_frames, fps=self.fps)
        except BaseException as exc:  # handed to the producer thread by put()/close()
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _check(self) -> None:
        if self._error is not None and not isinstance(self._error, _Abort):
            raise self._error

    def put(self, frame: np.ndarray) -> None:
        while True:
            self._check()
            try:
                self._queue.put(frame, timeout=0.5)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._check()
                    raise RuntimeError(f"the encoder of {self.video} stopped") from None

    def close(self) -> None:
        """Finish the files and wait for the encoder; re-raises its error."""
        self._send(_DONE)
        self._thread.join()
        self._check()

    def abort(self) -> None:
        self._send(_ABORT)
        self._thread.join()

    def _send(self, item: object) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


def _gif_frame(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if w <= GIF_MAX_WIDTH:
        return frame
    size = (GIF_MAX_WIDTH, max(1, round(h * GIF_MAX_WIDTH / w)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def export_loop_ply(baked: list[GaussianParams], folder: Path) -> Path:
    """One standard 3DGS PLY per loop frame (``frame_0000.ply`` at t = 0, ...) plus ``index.json``."""
    with staged_dir(folder) as tmp:
        for i, params in enumerate(baked):
            save_ply(tmp / f"frame_{i:04d}.ply", params)
        n = len(baked)
        write_json(
            tmp / "index.json",
            {"n_frames": n, "files": [f"frame_{i:04d}.ply" for i in range(n)], "times": [i / n for i in range(n)]},
        )
    return folder


# ----------------------------------------------------------------------------- the whole run


def _writers(paths: tuple[CameraPath, ...], options: RenderOptions, out: Path) -> list[PathWriter]:
    writers = []
    for path in paths:
        frames_dir = out / "frames" / path.name if options.save_frames else None
        gif = out / f"{path.name}.gif" if options.gif else None
        writers.append(PathWriter(out / f"{path.name}.mp4", options.fps, frames_dir, gif))
    return writers


def render_paths(
    baked: list[GaussianParams], base: Camera, scale: float, options: RenderOptions, out: Path, meters=None
) -> list[PathResult]:
    """Render and encode every path of ``options`` (all paths advance together, so their encoders run in
    parallel while the rasterizer works). ``meters`` ({path name: scene.quality.LoopMeter}) measure the
    first loop of those paths."""
    meters = meters or {}
    n_video = options.loops * len(baked)
    paths_cameras = [path_cameras(path, base, n_video, scale) for path in options.paths]
    width, height = base.width, base.height
    # The timed frames are kept on the device until they are written: at most TIMED_BYTES of them.
    timed = max(1, min(TIMED_FRAMES, n_video, TIMED_BYTES // (len(options.paths) * width * height * 3)))
    stream = render_frames(baked, paths_cameras, options.background, options.backend, timed_frames=timed)
    per_frame = next(stream) / (timed * len(options.paths))  # before the encoders and meters start
    writers = _writers(options.paths, options, out)
    measure = ThreadPoolExecutor(max_workers=1)  # the meters, in frame order, beside the rasterizer
    measured = []
    try:
        for j, frames in enumerate(track(stream, f"rendering {len(writers)} path(s)", total=n_video)):
            for path, writer, frame in zip(options.paths, writers, frames):
                writer.put(frame)
                if path.name in meters and j < len(baked):
                    measured.append(measure.submit(meters[path.name].add, frame))
        for job in measured:
            job.result()
    except BaseException:
        measure.shutdown(cancel_futures=True)
        for writer in writers:
            writer.abort()
        raise
    measure.shutdown()
    for writer in writers:
        writer.close()
    return [
        PathResult(p.name, n_video, per_frame * n_video, w.video, [x for x in (w.gif, w.frames_dir) if x is not None])
        for p, w in zip(options.paths, writers)
    ]


def render_videos(
    model: LoopModel, out: Path, options: RenderOptions, device: torch.device | str, meters=None
) -> RenderSummary:
    """Bake the loop, render every path of ``options`` into ``out`` (videos, frames, GIFs, PLYs) and time it;
    ``meters`` as :func:`render_paths`."""
    start = time.perf_counter()
    device = torch.device(device)
    photo = model.cameras[0]
    size = options.size or (photo.width, photo.height)
    base = resize_camera(photo, *size)
    baked = bake_loop(model, device)
    _sync(device)
    bake_s = time.perf_counter() - start
    scale = options.path_scale
    if scale is None:
        scale = reference_depth(baked[0].means.detach().cpu().numpy(), photo)
    info(
        f"{len(baked[0])} Gaussians, {len(baked)} frames per loop baked in {bake_s:.2f} s; "
        f"{size[0]}x{size[1]}, {options.loops} loop(s) at {options.fps:g} fps, path scale {scale:.3g}"
    )
    coverage = _coverage(model, baked)
    framings = _framed_paths(options, coverage, base, scale) if coverage is not None else []
    framed = tuple(f.path for f in framings) or options.paths
    results = render_paths(baked, base, scale, replace(options, paths=framed), out, meters)
    for result, f in zip(results, framings):
        result.zoom, result.amplitude = f.path.zoom, f.path.amplitude
        result.filled_max, result.filled_any_max = f.edge_max, f.any_max
    ply_dir = export_loop_ply(baked, out / "ply") if options.export_ply else None
    return RenderSummary(results, len(baked[0]), len(baked), size, scale, bake_s, ply_dir, time.perf_counter() - start)
