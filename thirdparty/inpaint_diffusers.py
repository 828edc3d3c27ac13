"""Learned inpainting backend: a ``diffusers`` Stable Diffusion inpainting pipeline.

Loaded from a local folder (``save_pretrained()`` output or a hub snapshot, e.g. ``ckpts/sd2-inpainting``)
or a hub id (``stabilityai/stable-diffusion-2-inpainting``), with the same local/offline rules as the
depth backend (:mod:`thirdparty.depth_transformers`). Lazy imports: ``diffusers`` is imported only here.
"""

from __future__ import annotations

import warnings

import numpy as np

from thirdparty.depth_transformers import load_pretrained, resolve_source

DEFAULT_PROMPT = "a landscape photo, natural scenery, high quality"
NEGATIVE_PROMPT = "text, watermark, frame, border, people, blurry"


class DiffusersInpainter:
    """``StableDiffusionInpaintPipeline`` as an :data:`motion.multiview.Inpainter`.

    The view is resized so that its longer side is ``size`` pixels (a multiple of 8), inpainted, and
    resized back; callers keep only the hole pixels of the result.
    """

    def __init__(
        self,
        name: str,
        device: str = "cpu",
        steps: int = 25,
        prompt: str = DEFAULT_PROMPT,
        seed: int = 0,
        size: int = 512,
    ):
        import torch
        from diffusers import StableDiffusionInpaintPipeline

        if steps < 1 or size < 8:
            raise ValueError(f"steps must be >= 1 and size >= 8, got {steps}, {size}")
        source, is_local = resolve_source(name, "inpainting model")
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype; older ones know only it
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            self.pipe = load_pretrained(
                StableDiffusionInpaintPipeline,
                source,
                is_local,
                "inpainting model",
                torch_dtype=dtype,
                safety_checker=None,
                requires_safety_checker=False,
            )
        self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.name, self.device, self.steps, self.prompt, self.seed, self.size = name, device, steps, prompt, seed, size
        self.calls = 0

    def _work_size(self, width: int, height: int) -> tuple[int, int]:
        scale = self.size / max(width, height)
        return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)

    def __call__(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 image, (H, W) bool hole -> (H, W, 3) uint8 inpainted image."""
        import cv2
        import torch
        from PIL import Image

        if image.dtype != np.uint8 or image.ndim != 3 or hole.shape != image.shape[:2]:
            raise ValueError(f"need a uint8 (H, W, 3) image and an (H, W) hole, got {image.shape}, {hole.shape}")
        if not hole.any():
            return image
        h, w = image.shape[:2]
        ww, wh = self._work_size(w, h)
        small = cv2.resize(image, (ww, wh), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(hole.astype(np.uint8) * 255, (ww, wh), interpolation=cv2.INTER_NEAREST)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))  # cover resampled hole borders
        generator = torch.Generator(device="cpu").manual_seed(self.seed + self.calls)
        self.calls += 1
        result = self.pipe(
            prompt=self.prompt,
            negative_prompt=NEGATIVE_PROMPT,
            image=Image.fromarray(small),
            mask_image=Image.fromarray(mask),
            height=wh,
            width=ww,
            num_inference_steps=self.steps,
            generator=generator,
            output_type="np",
        ).images[0]
        out = np.clip(np.rint(np.asarray(result, np.float32) * 255), 0, 255).astype(np.uint8)
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
