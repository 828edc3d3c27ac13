"""Learned depth backend: any ``transformers`` depth-estimation model (Depth Anything V2, DPT, ZoeDepth).

Loaded from a local folder (what ``save_pretrained()`` writes, e.g. ``ckpts/depth-anything-v2-small``)
or a hub id (``depth-anything/Depth-Anything-V2-Small-hf``). Imports are lazy: nothing here touches
``transformers`` until a model is asked for. Offline mode (``HF_HUB_OFFLINE=1`` or
``TRANSFORMERS_OFFLINE=1``) is honoured: hub ids are then looked up in the local cache only, so the
stage never waits on the network.

Errors: a local path that does not exist, or a local folder that is not a loadable model, is the
user's to fix (:class:`utils.errors.UserError`, one line naming it); a hub id that cannot be had
(offline, not cached, no network) raises :class:`ModelUnavailable`, which callers may turn into a
warning and a fallback.

``--depth auto`` without a named model looks for the default, Depth Anything V2 Small
(:func:`default_depth_model`): ``ckpts/depth-anything-v2-small`` (or ``$MOM_CKPTS``), then the hub cache,
then, online and not in offline mode, the hub (downloaded once, with a progress bar). Before any
download the hub is probed with a :data:`PROBE_S`-second limit in a background thread, so a machine
without network falls back at once instead of waiting on retries; train_motion.py starts that probe
before its imports, so an offline machine spends those seconds importing torch, not waiting.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import UserError

_TRUE = ("1", "true", "yes", "on")
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"  # ~100 MB, Apache-2.0
DEFAULT_DEPTH_FOLDER = "depth-anything-v2-small"  # its local copy under ckpts/
PROBE_S = 3.0  # seconds the hub gets to answer before it counts as unreachable


class ModelUnavailable(Exception):
    """A hub model that cannot be loaded here (offline, not in the cache, unreachable)."""


def hub_offline() -> bool:
    """True when the user asked the Hugging Face libraries to stay offline."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def ckpts_dir() -> Path:
    """Where local model folders live: ``$MOM_CKPTS``, else the project's ``ckpts/``."""
    return Path(os.environ.get("MOM_CKPTS") or Path(__file__).resolve().parents[1] / "ckpts")


class _Probe:
    """One HEAD request to the hub (``$HF_ENDPOINT``) in a daemon thread, so a DNS lookup that hangs cannot
    hold the run up; proxies from the environment are honoured (urllib reads them)."""

    def __init__(self, timeout: float):
        import time
        import urllib.request

        self.timeout, self.started, self.answered = timeout, time.monotonic(), []
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")

        def probe() -> None:
            try:
                urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
                self.answered.append(True)
            except urllib.error.HTTPError:  # an HTTP answer, even an error status, means the hub is there
                self.answered.append(True)
            except Exception:
                self.answered.append(False)

        self.thread = threading.Thread(target=probe, daemon=True)
        self.thread.start()

    def result(self) -> bool:
        import time

        self.thread.join(max(0.0, self.started + self.timeout - time.monotonic()))
        return bool(self.answered and self.answered[0])


_early: list[_Probe] = []  # a probe started by start_hub_probe(), not yet asked


def start_hub_probe(timeout: float = PROBE_S) -> None:
    """Start the hub probe now, in the background (train_motion.py does, before torch is imported): the
    next :func:`hub_reachable` then waits only for what is left of ``timeout``. Nothing in offline mode, or
    when the default model is in ckpts/ or looks cached (the hub is then not needed)."""
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    cached = hub_cache.expanduser() / ("models--" + DEFAULT_DEPTH_MODEL.replace("/", "--"))
    local = ckpts_dir() / DEFAULT_DEPTH_FOLDER / "config.json"
    if not (hub_offline() or _early or local.is_file() or cached.is_dir()):
        _early.append(_Probe(timeout))


def hub_reachable(timeout: float = PROBE_S) -> bool:
    """Whether the Hugging Face hub answers an HTTP request within ``timeout`` seconds (counted from when
    :func:`start_hub_probe` started it, when it did)."""
    probe = _early.pop() if _early else _Probe(timeout)
    return probe.result()


def in_hub_cache(repo: str) -> bool:
    """Whether the hub cache holds a snapshot of ``repo`` (its config.json); no network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:
        return False


def default_depth_model() -> tuple[str | None, str]:
    """The default depth model where it can be had, and how: (source, "ckpts" | "hub cache" | "download"),
    or (None, why not) when it cannot (not here, and offline or the hub unreachable)."""
    local = ckpts_dir() / DEFAULT_DEPTH_FOLDER
    if (local / "config.json").is_file():
        return str(local), "ckpts"
    if in_hub_cache(DEFAULT_DEPTH_MODEL):
        return DEFAULT_DEPTH_MODEL, "hub cache"
    where = f"{DEFAULT_DEPTH_MODEL} is neither in {local} nor in the hub cache"
    if hub_offline():
        return None, f"{where}, and HF_HUB_OFFLINE is set"
    if not hub_reachable():
        return None, f"{where}, and the hub did not answer within {PROBE_S:.0f} s"
    return DEFAULT_DEPTH_MODEL, "download"


def resolve_source(name: str, what: str) -> tuple[str, bool]:
    """``name`` -> (local folder or hub id, is_local). A path-looking name that does not exist is a UserError.

    A name counts as a path when it exists, starts with ``.``, ``/`` or ``~``, has no or several
    ``/`` (hub ids are ``org/name``), or its first component is an existing folder (``ckpts/x``).
    """
    name = str(name).strip()
    if not name:
        raise UserError(f"empty {what} name", f"give a local folder or a hub id for the {what}")
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{what} {path} is a file, not a model folder", "give the folder save_pretrained() wrote")
        return str(path), True
    first = name.split("/")[0]
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") != 1 or Path(first).is_dir():
        raise UserError(f"{what} {name} does not exist", "give an existing local model folder or a hub id (org/name)")
    return name, False


def load_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "could not load this model" (files missing, bad config, no network)."""
    errors: list[type[BaseException]] = [OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError]
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def load_pretrained(loader: Any, source: str, is_local: bool, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(source)`` with the local/offline rules of this module."""
    errors = load_errors()
    if is_local:
        try:
            return loader.from_pretrained(source, local_files_only=True, **kwargs)
        except errors as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise UserError(
                f"cannot load the {what} from {source} ({reason})", "give a folder written by save_pretrained()"
            ) from None
    try:  # the cache first: no network call when the model is already here
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except errors as exc:
        if hub_offline():
            raise ModelUnavailable(f"{what} {source} is not in the local cache and HF_HUB_OFFLINE is set") from exc
    if not hub_reachable():  # fail fast: the libraries' own retries would take minutes without a network
        raise ModelUnavailable(f"{what} {source} is not cached and the hub did not answer within {PROBE_S:.0f} s")
    from utils.console import info

    info(f"downloading the {what} {source} from the hub into its cache (once)")
    try:
        return loader.from_pretrained(source, **kwargs)
    except errors as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelUnavailable(f"{what} {source} could not be downloaded ({reason})") from exc


def depth_kind(config: Any) -> str:
    """ "metric" for metric-depth models (ZoeDepth, metric Depth Anything, Depth Pro), else "disparity"."""
    if getattr(config, "model_type", "") in ("zoedepth", "depth_pro"):
        return "metric"
    if getattr(config, "depth_estimation_type", "relative") == "metric":
        return "metric"
    return "disparity"


class TransformersDepth:
    """A loaded ``AutoModelForDepthEstimation`` + ``AutoImageProcessor``."""

    def __init__(self, name: str, device: str = "cpu"):
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        source, is_local = resolve_source(name, "depth model")
        self.name = name
        self.processor = load_pretrained(AutoImageProcessor, source, is_local, "depth model")
        self.model = load_pretrained(AutoModelForDepthEstimation, source, is_local, "depth model")
        self.model.eval().to(device)
        self.device = device
        self.kind = depth_kind(self.model.config)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) float RGB in [0, 1] -> (H, W) float32 raw prediction (disparity or metric depth, per ``kind``)."""
        import torch
        import torch.nn.functional as F

        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3), got {image.shape}")
        h, w = image.shape[:2]
        pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        inputs = self.processor(images=pixels, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs).predicted_depth  # [1, h', w'] (or [1, 1, h', w'])
        out = out.reshape(1, 1, *out.shape[-2:]).float()
        out = F.interpolate(out, size=(h, w), mode="bicubic", align_corners=False)
        return out[0, 0].cpu().numpy().astype(np.float32)
