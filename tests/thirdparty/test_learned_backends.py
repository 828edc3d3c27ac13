"""Learned backends loaded like real checkpoints: tiny random models built from configs, saved to a temp folder.

No hub calls: every model here is local; hub ids are tried only with HF_HUB_OFFLINE=1 and an empty cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from motion.depth import NEAR_DEPTH, SKY_DEPTH, estimate_depth
from thirdparty.depth_transformers import (
    ModelUnavailable,
    TransformersDepth,
    depth_kind,
    hub_offline,
    load_pretrained,
    resolve_source,
)
from utils.errors import UserError

# ----------------------------------------------------------------------------- builders (reused by other tests)


def make_tiny_depth_model(folder: Path) -> Path:
    """A randomly initialised DPT depth model (a few thousand weights) + its image processor."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5],
    )
    DPTForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)
    return folder


def make_tiny_inpaint_pipeline(folder: Path) -> Path:
    """A randomly initialised Stable Diffusion inpainting pipeline (9-channel UNet, VAE, CLIP text model)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=9,  # latents + masked-image latents + mask
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tok_dir = folder.parent / f"{folder.name}-tokenizer-src"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_depth(tmp_path_factory) -> Path:
    return make_tiny_depth_model(tmp_path_factory.mktemp("models") / "tiny-dpt")


@pytest.fixture(scope="session")
def tiny_inpaint(tmp_path_factory) -> Path:
    return make_tiny_inpaint_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd-inpaint")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))


# ----------------------------------------------------------------------------- sources and offline rules


def test_resolve_source_rules(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    assert resolve_source(str(folder), "depth model") == (str(folder), True)
    assert resolve_source("depth-anything/Depth-Anything-V2-Small-hf", "depth model") == (
        "depth-anything/Depth-Anything-V2-Small-hf",
        False,
    )
    for bad in (str(tmp_path / "missing"), "./missing", "a/b/c", "missing-model", "~/nope/model"):
        with pytest.raises(UserError, match="does not exist"):
            resolve_source(bad, "depth model")
    monkeypatch.chdir(tmp_path)  # a relative path under an existing folder is a path, not a hub id
    with pytest.raises(UserError, match="model/missing does not exist"):
        resolve_source("model/missing", "depth model")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="is a file"):
        resolve_source(str(tmp_path / "file.bin"), "depth model")


def test_offline_flag(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub_offline()


def test_hub_id_offline_is_unavailable_not_a_hang(offline):
    from transformers import AutoModelForDepthEstimation

    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        load_pretrained(AutoModelForDepthEstimation, "nobody/no-such-model", False, "depth model")


def test_broken_local_folder_is_a_user_error(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot load the depth model from"):
        TransformersDepth(str(tmp_path / "broken"))


def test_depth_kind_from_configs():
    from transformers import DepthAnythingConfig, DPTConfig, ZoeDepthConfig

    assert depth_kind(DPTConfig()) == "disparity"
    assert depth_kind(DepthAnythingConfig()) == "disparity"
    assert depth_kind(DepthAnythingConfig(depth_estimation_type="metric")) == "metric"
    assert depth_kind(ZoeDepthConfig()) == "metric"


# ----------------------------------------------------------------------------- tiny models through the real code path


def test_tiny_depth_model_loads_and_predicts(tiny_depth, toy, offline):
    model = TransformersDepth(str(tiny_depth))
    assert model.kind == "disparity"
    pred = model.predict(toy.image.astype(np.float32) / 255)
    assert pred.shape == toy.image.shape[:2] and pred.dtype == np.float32 and np.isfinite(pred).all()
    result = estimate_depth(toy.image, toy.focal, "model", model=str(tiny_depth))
    assert result.method == f"model:{tiny_depth}" and result.info["kind"] == "disparity"
    depth = result.depth
    assert depth.shape == toy.image.shape[:2] and np.isfinite(depth).all()
    assert depth.min() >= NEAR_DEPTH / 4 and depth.max() <= SKY_DEPTH


def test_tiny_inpaint_pipeline_loads_and_inpaints(tiny_inpaint, offline):
    from thirdparty.inpaint_diffusers import DiffusersInpainter

    inpainter = DiffusersInpainter(str(tiny_inpaint), steps=2, size=32, seed=1)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)
    hole = np.zeros((24, 40), bool)
    hole[6:12, 10:25] = True
    out = inpainter(image, hole)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out[hole], image[hole])
    assert inpainter(image, np.zeros_like(hole)) is image  # nothing to do: no model call
    with pytest.raises(ValueError, match="uint8"):
        inpainter(image.astype(np.float32), hole)


def test_tiny_inpainter_in_build_views(tiny_inpaint, toy, offline):
    from motion.depth import prior_depth
    from motion.multiview import build_views
    from motion.views import view_cameras
    from scene.cameras import source_camera
    from thirdparty.inpaint_diffusers import DiffusersInpainter

    h, w = toy.image.shape[:2]
    cams = view_cameras(source_camera(w, h), n_views=3)
    depth = prior_depth(toy.image, cams[0].K[1, 1]).depth
    views, points = build_views(
        toy.image, depth, toy.regions, cams, DiffusersInpainter(str(tiny_inpaint), steps=1, size=32)
    )
    assert len(views) == 3 and len(points.xyz) == h * w + sum(v.info["holes"] for v in views)


# ----------------------------------------------------------------------------- the default depth model, fail-fast hub


def test_hub_probe_gives_up_on_a_hanging_network(monkeypatch):
    """A network that never answers (a hung DNS lookup, a black-holed route) counts as unreachable."""
    import threading
    import urllib.request

    from thirdparty.depth_transformers import hub_reachable

    never = threading.Event()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: never.wait())
    assert hub_reachable(timeout=0.2) is False
    never.set()


def test_hub_probe_answers(monkeypatch):
    import urllib.error
    import urllib.request

    from thirdparty.depth_transformers import hub_reachable

    class Answer:
        def close(self):
            pass

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Answer())
    assert hub_reachable() is True

    def forbidden(*a, **k):
        raise urllib.error.HTTPError("https://hub", 403, "forbidden", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    assert hub_reachable() is True  # an HTTP error status is still an answer

    def no_network(*a, **k):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert hub_reachable() is False


def test_unreachable_hub_fails_fast_without_a_download_attempt(monkeypatch, tmp_path):
    import thirdparty.depth_transformers as dt

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(dt, "hub_reachable", lambda timeout=dt.PROBE_S: False)
    calls = []

    class Loader:
        @staticmethod
        def from_pretrained(source, **kwargs):
            calls.append(kwargs.get("local_files_only", False))
            raise OSError("not cached")

    with pytest.raises(ModelUnavailable, match="did not answer within 3 s"):
        load_pretrained(Loader, "nobody/no-such-model", False, "depth model")
    assert calls == [True]  # the cache was looked at; no download was tried
    monkeypatch.setenv("MOM_CKPTS", str(tmp_path))
    assert dt.default_depth_model() == (None, f"{dt.DEFAULT_DEPTH_MODEL} is neither in "
                                        f"{tmp_path / dt.DEFAULT_DEPTH_FOLDER} nor in the hub cache, "
                                        "and the hub did not answer within 3 s")  # fmt: skip


def test_default_depth_model_order(monkeypatch, tmp_path):
    """ckpts/ first, then the hub cache, then (online) a download; offline and uncached: none."""
    import thirdparty.depth_transformers as dt

    monkeypatch.setenv("MOM_CKPTS", str(tmp_path))
    monkeypatch.setattr(dt, "hub_reachable", lambda timeout=dt.PROBE_S: True)
    assert dt.default_depth_model()[0] is None  # offline (the test session) and nothing cached
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert dt.default_depth_model() == (dt.DEFAULT_DEPTH_MODEL, "download")
    monkeypatch.setattr(dt, "in_hub_cache", lambda repo: repo == dt.DEFAULT_DEPTH_MODEL)
    assert dt.default_depth_model() == (dt.DEFAULT_DEPTH_MODEL, "hub cache")
    (tmp_path / dt.DEFAULT_DEPTH_FOLDER).mkdir()
    (tmp_path / dt.DEFAULT_DEPTH_FOLDER / "config.json").write_text("{}")
    assert dt.default_depth_model() == (str(tmp_path / dt.DEFAULT_DEPTH_FOLDER), "ckpts")


def test_an_early_hub_probe_is_waited_for_only_what_is_left_of_its_time(monkeypatch, tmp_path):
    import time
    import urllib.request

    import thirdparty.depth_transformers as dt

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MOM_CKPTS", str(tmp_path / "ckpts"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(dt, "_early", [])
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(1) or time.sleep(5))
    dt.start_hub_probe(timeout=0.3)
    time.sleep(0.4)  # the stage's imports
    start = time.monotonic()
    assert dt.hub_reachable(timeout=0.3) is False
    assert time.monotonic() - start < 0.2 and calls == [1] and dt._early == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dt.start_hub_probe(timeout=0.3)  # offline: nothing is started
    assert dt._early == [] and calls == [1]
