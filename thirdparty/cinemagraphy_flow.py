"""3D-Cinemagraphy's pretrained scene-flow network ("Flow Estimation Model", ``sceneflow_model.pth``), re-implemented.

The network is the ``motion_predictor`` of 3D-Cinemagraphy's ``SPADEUnetMaskMotion``
(xingyi-li/3d-cinemagraphy, ``lib/model/motion/motion_model.py``), a ``SPADEUnet4MaskMotion``
(``lib/model/motion/architectures.py``) built with ``configs/config.yaml``: 6 input channels
(``use_mask_as_motion_input`` + ``use_hint_as_motion_input``), ``motion_norm_G: sync:spectral_instance``
(spectral-norm convolutions, parameter-free instance norm inside SPADE blocks), ``div_flow: 1.0`` and a
768 x 768 network input (``motionH = motionW = W = 768``). Layer names and tensor shapes equal the
released state dict (``{'netG': state_dict}``, 142 tensors), so it loads strictly. Only inference is
implemented: spectral norm uses the stored ``weight_u``/``weight_v`` without power iteration, which is
what ``torch.nn.utils.spectral_norm`` does in eval mode.

Network (``x`` [B, 6, H, W], H and W multiples of 256, 8 stride-2 convolutions):

- encoder ``conv1..conv8``: 4x4 stride 2 (32, 64, 128, 256, 256, 256, 256, 256 channels), LeakyReLU(0.2)
  before ``conv2..conv8``, a SPADE block after ``conv2..conv7`` (none after ``conv1``, ``conv8``);
- decoder ``dconv1..dconv7``: 3x3 on the upsampled features, a SPADE block after each, then the block's
  output and the matching encoder feature are each upsampled x2, concatenated, ReLU'd; ``dconv8`` gives
  the 2 output channels at full resolution. Every x2 upsampling is bilinear (align_corners=False) except
  feature channel 3, which is nearest (the original splits ``[:3] | [3:4] | [4:]`` as for its input);
- SPADE (``lib/model/motion/networks.py``): ``instance_norm(f) * (1 + gamma) + beta`` with gamma, beta
  from a 2-layer conv net (6 -> 128 -> C, 3x3) on the network input resized to the feature's size
  (channels 0-2 and 4-5 bilinear, the mask channel 3 nearest).

Input conventions matched (3D-Cinemagraphy ``demo.py``: ``get_input_data`` and
``generate_mask_hints_from_user``; 3D-MOM runs the same code per view in
``thirdparty/cinemagraphy/demo.py``: ``eulerian_estimation``):

- image: resized to ``motionH x motionW`` = 768 x 768 (a square, whatever the view's aspect ratio: the
  original stretches, it does not pad) with PIL bicubic (torchvision ``Resize(BICUBIC)`` on a PIL image),
  then ``ToTensor`` and ``Normalize(0.5, 0.5)``: ``(u8 / 255 - 0.5) / 0.5`` in [-1, 1];
- mask: the view-resolution 0/1 mask resized with ``area`` interpolation (so edge pixels are fractional);
- hints: a hint's position is its start pixel ``(int(x0), int(y0))``; its motion is
  ``(end - start) * speed`` view pixels per frame, ``speed = 1/50``. The dense hint field at view
  resolution is the normalised Gaussian average ``sum_j w_j m_j / sum_j w_j`` with
  ``w_j = exp(-(|p - s_j| / sigma)^2)`` (float32, so weights underflow to 0 beyond ~10 sigma; a pixel whose
  weights are all 0 gets 0), times the mask; its x, y components are then scaled by 768/W and 768/H and
  the field resized bilinearly (align_corners=False) to 768 x 768. The field is *not* local to a hint:
  with one hint it is that hint's vector over the whole mask. Hints whose start lies outside the view are
  dropped (3D-MOM's per-view rule).

Output conventions matched (3D-Cinemagraphy ``lib/renderer.py``: ``ImgRenderer.compute_flow_and_inpaint``):
output ``* div_flow`` (1.0), ``* mask`` (network resolution), one 15 x 15 box blur with zero padding
(kornia ``box_blur(border_type='constant')``; the original's loop of 7 recomputes the same single blur),
``* mask`` again, x and y scaled by W/768 and H/768, bilinear resize to the view's size. The result is in
view pixels per frame (the unit of the hints), as the original's Euler integration uses it.

Differences from the original (deliberate):

- the hint spreading width is fixed, ``sigma = HINT_SPREAD * H / n_hints`` view pixels with
  ``HINT_SPREAD = 1.0``; the original draws ``sigma = randint(H // (2 n), H // (n / 2))`` at every run
  (1.0 is the geometric middle of that range, [1/2, 2) x H / n), so its flows change from run to run;
- the flow is also set to 0 at view pixels outside the view's mask (the original's bilinear resize of the
  masked low-resolution flow leaks up to a few pixels outside it);
- no hint inside the view gives a zero hint field (3D-MOM inserts a hint at pixel (0, 0) instead, whose
  motion is then the first hint's: an indexing slip);
- the network side may be any multiple of 256 (``width``, ``height``), 768 x 768 by default.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.errors import UserError

NET_SIDE = 768  # the original's motionH = motionW = W
SIDE_MULTIPLE = 256  # eight stride-2 convolutions
IN_CHANNELS = 6  # image (3, in [-1, 1]), mask (1), dense hint flow (2: x, y)
NUM_FILTERS = 32
SPADE_HIDDEN = 128
HINT_SPEED = 1.0 / 50.0  # motion per frame = (end - start) * speed, the original's (end - start) / 50
HINT_SPREAD = 1.0  # sigma = HINT_SPREAD * view height / number of hints (view pixels); fixed (module docstring)
DIV_FLOW = 1.0  # configs/config.yaml generator.div_flow
FLOW_BLUR = 15  # box blur size applied to the network output (compute_flow_and_inpaint)
INSTANCE_NORM_EPS = 1e-5  # nn.InstanceNorm2d default
CHECKPOINT_FIX = "give the sceneflow_model.pth released with 3D-Cinemagraphy (see ckpts/README.md)"

# (in, out) channels of the encoder's 4x4 stride-2 convolutions conv1..8 and the decoder's 3x3 dconv1..8.
_F = NUM_FILTERS
_ENCODER = [(IN_CHANNELS, _F), (_F, 2 * _F), (2 * _F, 4 * _F), (4 * _F, 8 * _F)] + [(8 * _F, 8 * _F)] * 4
_DECODER = [(8 * _F, 8 * _F)] + [(16 * _F, 8 * _F)] * 3 + [(16 * _F, 4 * _F), (8 * _F, 2 * _F), (4 * _F, _F)]
_DECODER += [(2 * _F, 2)]
# SPADE blocks in registration (= checkpoint) order with their channel counts.
_SPADES = [("spade_layer", _F), ("spade_layer2_0", 2 * _F), ("spade_layer2_1", 2 * _F)]
_SPADES += [("spade_layer4_0", 4 * _F), ("spade_layer4_1", 4 * _F)]
_SPADES += [(f"spade_layer8_{i}", 8 * _F) for i in range(8)]
# Which SPADE follows conv2..conv7 and dconv1..dconv7.
_ENCODER_SPADES = ["spade_layer2_0", "spade_layer4_0", "spade_layer8_0", "spade_layer8_1", "spade_layer8_2"]
_ENCODER_SPADES += ["spade_layer8_3"]
_DECODER_SPADES = ["spade_layer8_4", "spade_layer8_5", "spade_layer8_6", "spade_layer8_7", "spade_layer4_1"]
_DECODER_SPADES += ["spade_layer2_1", "spade_layer"]


# ----------------------------------------------------------------------------- network


class SpectralConv2d(nn.Module):
    """A Conv2d whose weight is ``weight_orig / sigma``, ``sigma = u . (W v)`` from the stored vectors.

    State dict: ``bias``, ``weight_orig`` (parameters), ``weight_u`` [out], ``weight_v`` [in * k * k]
    (buffers), the layout ``torch.nn.utils.spectral_norm`` writes. Eval-only: no power iteration, so the
    output equals the torch layer's in eval mode.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.stride, self.padding = stride, padding
        # bias first: spectral_norm re-registers the weight as weight_orig after it, and keys keep that order
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.weight_orig = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel) * 0.02)
        self.register_buffer("weight_u", F.normalize(torch.randn(c_out), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(c_in * kernel * kernel), dim=0))

    def weight(self) -> Tensor:
        """[out, in, k, k] normalised weight."""
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, torch.mv(w.reshape(w.shape[0], -1), self.weight_v))
        return w / sigma

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight(), self.bias, stride=self.stride, padding=self.padding)


def resize_condition(cond: Tensor, size: tuple[int, int]) -> Tensor:
    """[B, 6, H, W] network input -> [B, 6, h, w] as SPADE sees it: mask channel nearest, others bilinear."""
    out = F.interpolate(cond, size=size, mode="bilinear", align_corners=False)
    mask = F.interpolate(cond[:, 3:4], size=size, mode="nearest")
    return torch.cat([out[:, :3], mask, out[:, 4:]], 1)


def upsample2(x: Tensor) -> Tensor:
    """x2 upsampling of decoder features: bilinear (align_corners=False), channel 3 nearest (the original's split)."""
    out = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    if x.shape[1] > 3:
        near = F.interpolate(x[:, 3:4], scale_factor=2, mode="nearest")
        out = torch.cat([out[:, :3], near, out[:, 4:]], 1)
    return out


class Spade(nn.Module):
    """Spatially-adaptive normalisation: ``instance_norm(x) * (1 + gamma(c)) + beta(c)``, ``c`` the network input."""

    def __init__(self, channels: int, cond_channels: int = IN_CHANNELS, hidden: int = SPADE_HIDDEN):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x [B, C, h, w] features, cond [B, 6, h, w] (already resized) -> [B, C, h, w]."""
        # nn.InstanceNorm2d(C): affine=False, track_running_stats=False -> per-sample stats in eval too
        normalized = F.instance_norm(x, eps=INSTANCE_NORM_EPS)
        actv = self.mlp_shared(cond)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class MotionPredictor(nn.Module):
    """The original's ``SPADEUnet4MaskMotion(channels_in=6, channels_out=2)``: [B, 6, H, W] -> [B, 2, H, W]."""

    def __init__(self):
        super().__init__()
        # registration order = checkpoint key order: conv1..8, dconv1..8, then the SPADE blocks
        for i, (c_in, c_out) in enumerate(_ENCODER, 1):
            setattr(self, f"conv{i}", SpectralConv2d(c_in, c_out, 4, 2, 1))
        for i, (c_in, c_out) in enumerate(_DECODER, 1):
            setattr(self, f"dconv{i}", SpectralConv2d(c_in, c_out, 3, 1, 1))
        for name, channels in _SPADES:
            setattr(self, name, Spade(channels))

    def _spade(self, name: str, x: Tensor, x_in: Tensor, conds: dict[tuple[int, int], Tensor]) -> Tensor:
        size = (x.shape[2], x.shape[3])
        if size not in conds:  # same values for every block at this size: resize the input once
            conds[size] = resize_condition(x_in, size)
        return getattr(self, name)(x, conds[size])

    def forward(self, x: Tensor) -> Tensor:
        conds: dict[tuple[int, int], Tensor] = {}
        skips = [self.conv1(x)]
        for i, name in enumerate(_ENCODER_SPADES, 2):
            conv = getattr(self, f"conv{i}")
            skips.append(self._spade(name, conv(F.leaky_relu(skips[-1], 0.2)), x, conds))
        d = upsample2(F.relu(self.conv8(F.leaky_relu(skips[-1], 0.2))))
        for i, name in enumerate(_DECODER_SPADES, 1):
            d_ = self._spade(name, getattr(self, f"dconv{i}")(d), x, conds)
            # upsample first, ReLU after: the original's order (bilinear does not commute with ReLU)
            d = F.relu(torch.cat([upsample2(d_), upsample2(skips[-i])], 1))
        return self.dconv8(d)


class SceneFlowNet(nn.Module):
    """The released ``netG``: holds ``motion_predictor``; ``forward`` is ``motion_predictor(x)`` (no div_flow)."""

    def __init__(self):
        super().__init__()
        self.motion_predictor = MotionPredictor()

    def forward(self, x: Tensor) -> Tensor:
        """x [B, 6, H, W] float (H, W multiples of 256) -> [B, 2, H, W], network pixels per frame / div_flow."""
        if x.ndim != 4 or x.shape[1] != IN_CHANNELS:
            raise ValueError(f"flow network input must be [B, {IN_CHANNELS}, H, W], got {list(x.shape)}")
        if x.shape[2] % SIDE_MULTIPLE or x.shape[3] % SIDE_MULTIPLE or min(x.shape[2:]) == 0:
            raise ValueError(f"flow network input sides must be multiples of {SIDE_MULTIPLE}, got {list(x.shape[2:])}")
        return self.motion_predictor(x)


# ----------------------------------------------------------------------------- checkpoint


# What torch.load raises on a file that is not a readable checkpoint (bad zip, truncated, junk, refused pickle).
_TORCH_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    ImportError,
    UnicodeDecodeError,
    zipfile.BadZipFile,
)


def _load_problem(path: Path, exc: BaseException) -> str:
    """One line for a failed ``torch.load(weights_only=True)``: a refused object, or an unreadable file."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
    if found:  # the weights-only unpickler stopped at an object it would have had to import and call
        return f"flow model {path} holds objects other than tensors ({found.group(1)}; refused, not unpickled)"
    return f"flow model {path} cannot be read ({type(exc).__name__}: damaged, or not a torch checkpoint)"


def _read_pth(path: Path) -> Mapping[str, Any]:
    """The ``netG`` dict of a torch pickle, loaded with ``weights_only=True`` (nothing else is unpickled)."""
    try:
        with warnings.catch_warnings():  # old checkpoints trigger a harmless note about their pickle protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except _TORCH_LOAD_ERRORS as exc:
        raise UserError(_load_problem(path, exc), CHECKPOINT_FIX) from None
    if not isinstance(data, Mapping) or "netG" not in data:
        found = f"keys {sorted(map(str, data))[:5]}" if isinstance(data, Mapping) else f"a {type(data).__name__}"
        raise UserError(f"flow model {path} has no 'netG' entry (it holds {found})", CHECKPOINT_FIX)
    if not isinstance(data["netG"], Mapping):
        raise UserError(
            f"flow model {path}: 'netG' is a {type(data['netG']).__name__}, not a state dict", CHECKPOINT_FIX
        )
    return data["netG"]


def _read_safetensors(path: Path) -> Mapping[str, Any]:
    """The ``netG.``-prefixed tensors of a safetensors file, prefix removed (other prefixes are ignored)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"flow model {path} cannot be read ({reason})", CHECKPOINT_FIX) from None
    state = {k[len("netG.") :]: v for k, v in tensors.items() if k.startswith("netG.")}
    if not state:
        raise UserError(f"flow model {path} has no 'netG.' tensors", CHECKPOINT_FIX)
    return state


def checked_state_dict(state: Mapping[str, Any], expected: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    """``state`` as float32 tensors after checking its keys and shapes against ``expected`` (strict).

    Raises UserError naming the first missing key (in ``expected``'s order), else the first unexpected
    key, else the first non-tensor value or shape mismatch.
    """
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{what}: key {missing[0]} missing{more}", CHECKPOINT_FIX)
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise UserError(f"{what}: unexpected key {unexpected[0]}{more}", CHECKPOINT_FIX)
    out: dict[str, Tensor] = {}
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, Tensor) or not (value.is_floating_point() or value.numel() == 0):
            raise UserError(f"{what}: key {key} is a {type(value).__name__}, not a float tensor", CHECKPOINT_FIX)
        if tuple(value.shape) != tuple(ref.shape):
            raise UserError(
                f"{what}: key {key} has shape {list(value.shape)}, expected {list(ref.shape)}", CHECKPOINT_FIX
            )
        out[key] = value.to(torch.float32)
    return out


def load_sceneflow(path: str | Path, device: str | torch.device = "cpu") -> SceneFlowNet:
    """The scene-flow network with the weights of ``path``, in eval mode on ``device``.

    ``path``: the released ``sceneflow_model.pth`` (a torch pickle ``{'netG': state_dict, ...}``; other
    top-level entries are ignored, as the original does; loaded with ``weights_only=True``) or a
    ``.safetensors`` file whose keys are ``netG.``-prefixed (float16 or float32; cast to float32).
    The ``netG`` state dict must match the network exactly (142 keys, same shapes).
    Raises UserError for a missing or unreadable file, a refused pickle, no ``netG``, a missing or
    unexpected key, or a shape mismatch.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"flow model {path} does not exist", CHECKPOINT_FIX)
    if not path.is_file():
        raise UserError(f"flow model {path} is not a file", CHECKPOINT_FIX)
    raw = _read_safetensors(path) if path.suffix.lower() == ".safetensors" else _read_pth(path)
    model = SceneFlowNet()
    state = checked_state_dict(raw, model.state_dict(), f"flow model {path}")
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


# ----------------------------------------------------------------------------- input and output


@dataclass(frozen=True)
class FlowInputInfo:
    """How a view maps to the network input built by :func:`build_flow_input`."""

    view_size: tuple[int, int]  # (H, W) view pixels
    net_size: tuple[int, int]  # (H', W') network pixels
    scale: tuple[float, float]  # (W' / W, H' / H): network pixels per view pixel, x and y
    sigma: float  # hint spreading width used, view pixels (0.0 without hints)
    hints_used: int  # hints whose start lies inside the view


def _check_side(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0 or value % SIDE_MULTIPLE:
        raise ValueError(f"{name} must be a positive multiple of {SIDE_MULTIPLE}, got {value!r}")
    return int(value)


def _view_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W] bool (or 0/1) -> bool, checked against the view size."""
    mask = np.asarray(mask)
    if mask.shape != size:
        raise ValueError(f"mask must be (H, W) = {size}, got {mask.shape}")
    return mask.astype(bool)


def _area_resize(mask: np.ndarray, size: tuple[int, int]) -> Tensor:
    """[H, W] bool -> [1, 1, H', W'] float32 coverage in [0, 1] (``area`` interpolation, as the original)."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="area")


def _parse_hints(hints: Iterable[Any], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """((x0, y0), (x1, y1)) view pixels -> start pixels [K, 2] int64 (x, y) and vectors [K, 2] float64 (end - start).

    A start outside the view drops the hint (3D-MOM's per-view rule). Start pixels are ``int()``
    truncations, the vectors use the unrounded points, as the original.
    """
    h, w = size
    shape_error = "hints must be a list of ((x0, y0), (x1, y1)) pairs of numbers"
    try:
        arr = np.asarray(list(hints), dtype=np.float64)
    except (TypeError, ValueError):  # ragged or non-numeric
        raise ValueError(shape_error) from None
    if arr.shape == (0,):
        arr = arr.reshape(0, 2, 2)
    if arr.ndim != 3 or arr.shape[1:] != (2, 2):
        raise ValueError(shape_error)
    if not np.isfinite(arr).all():
        raise ValueError("hints must be finite ((x0, y0), (x1, y1)) pairs")
    inside = (arr[:, 0, 0] >= 0) & (arr[:, 0, 0] < w) & (arr[:, 0, 1] >= 0) & (arr[:, 0, 1] < h)
    arr = arr[inside]
    return np.trunc(arr[:, 0]).astype(np.int64), arr[:, 1] - arr[:, 0]


def dense_hint_field(starts: np.ndarray, vectors: np.ndarray, size: tuple[int, int], sigma: float) -> np.ndarray:
    """Hints -> [H, W, 2] float32: the normalised Gaussian average of ``vectors`` (any unit) at every pixel.

    ``w_j(p) = exp(-(|p - start_j| / sigma)^2)`` in float32 like the original (0 beyond ~10 sigma; pixels
    where every weight is 0 get 0). ``starts`` [K, 2] pixel (x, y), ``sigma`` in pixels.
    """
    h, w = size
    num = np.zeros((h, w, 2), np.float64)
    den = np.zeros((h, w), np.float64)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    for (x0, y0), vec in zip(starts, vectors):
        dist = np.sqrt((xs - np.float32(x0)) ** 2 + (ys - np.float32(y0)) ** 2)
        weight = np.exp(-((dist / np.float32(sigma)) ** 2)).astype(np.float64)
        num += weight[..., None] * vec
        den += weight
    den[den == 0.0] = 1.0
    return (num / den[..., None]).astype(np.float32)


def _image_input(image: np.ndarray, net_size: tuple[int, int]) -> Tensor:
    """[H, W, 3] uint8 -> [1, 3, H', W'] float32 in [-1, 1]: PIL bicubic, /255, Normalize(0.5, 0.5)."""
    from PIL import Image

    resized = Image.fromarray(image).resize((net_size[1], net_size[0]), Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy((pixels - np.float32(0.5)) / np.float32(0.5)).permute(2, 0, 1)[None].contiguous()


def build_flow_input(
    image: np.ndarray,
    mask: np.ndarray,
    hints: Sequence[Any],
    width: int = NET_SIDE,
    height: int | None = None,
    speed: float = HINT_SPEED,
    spread: float = HINT_SPREAD,
) -> tuple[Tensor, FlowInputInfo]:
    """One view -> the network input ``x`` [1, 6, H', W'] float32 and how it maps back (:class:`FlowInputInfo`).

    ``image`` [H, W, 3] uint8 RGB; ``mask`` [H, W] bool, the moving region; ``hints`` a list of
    ``((x0, y0), (x1, y1))`` in the view's pixels (x = column, y = row). ``width`` = W' and ``height`` = H'
    (default: = ``width``, the original's square 768 x 768; both multiples of 256) are the network's size.
    Channels of ``x``: 0-2 the image in [-1, 1], 3 the mask's coverage in [0, 1], 4-5 the dense hint flow
    (x, y) in network pixels per frame: ``(end - start) * speed`` spread with sigma = ``spread`` * H /
    number of hints (view pixels), masked, scaled by (W'/W, H'/H). Deterministic (see the module docstring).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) == 0:
        raise ValueError(f"image must be a non-empty (H, W, 3) uint8 array, got {image.shape} {image.dtype}")
    size = (int(image.shape[0]), int(image.shape[1]))
    net_size = (_check_side(width if height is None else height, "height"), _check_side(width, "width"))
    view_mask = _view_mask(mask, size)
    if not (math.isfinite(speed) and math.isfinite(spread) and spread > 0):
        raise ValueError(f"speed must be finite and spread > 0, got speed={speed!r}, spread={spread!r}")
    starts, vectors = _parse_hints(hints, size)
    sigma = spread * size[0] / len(starts) if len(starts) else 0.0
    field = np.zeros((*size, 2), np.float32)
    if len(starts):
        field = dense_hint_field(starts, vectors * speed, size, sigma) * view_mask[..., None]
    scale = (net_size[1] / size[1], net_size[0] / size[0])
    hint = torch.from_numpy(field).permute(2, 0, 1)[None] * torch.tensor(scale, dtype=torch.float32).view(1, 2, 1, 1)
    hint = F.interpolate(hint, size=net_size, mode="bilinear", align_corners=False)
    x = torch.cat([_image_input(image, net_size), _area_resize(view_mask, net_size), hint], 1)
    return x, FlowInputInfo(size, net_size, scale, float(sigma), len(starts))


def flow_from_output(
    out: Tensor | np.ndarray,
    view_size: tuple[int, int],
    mask: np.ndarray,
    div_flow: float = DIV_FLOW,
    blur: int = FLOW_BLUR,
) -> np.ndarray:
    """Network output [1, 2, H', W'] -> flow [H, W, 2] float32, view pixels per frame (x, y), 0 outside ``mask``.

    As the original: ``* div_flow``, ``* mask`` (area-resized), one ``blur`` x ``blur`` box blur with zero
    padding (0 = none; odd), ``* mask``, x scaled by W/W' and y by H/H', bilinear resize to (H, W). Then
    every view pixel outside ``mask`` [H, W] (bool) is set to 0.
    """
    out = torch.as_tensor(out, dtype=torch.float32).detach().cpu()
    if out.ndim != 4 or out.shape[:2] != (1, 2):
        raise ValueError(f"network output must be [1, 2, H', W'], got {list(out.shape)}")
    if blur < 0 or (blur and blur % 2 == 0):
        raise ValueError(f"blur must be 0 or an odd size, got {blur}")
    size = (int(view_size[0]), int(view_size[1]))
    view_mask = _view_mask(mask, size)
    net_size = (int(out.shape[2]), int(out.shape[3]))
    net_mask = _area_resize(view_mask, net_size)
    flow = out * div_flow * net_mask
    if blur:  # kornia box_blur(border_type="constant"): mean over the window, zeros outside the image
        flow = F.avg_pool2d(flow, blur, stride=1, padding=blur // 2, count_include_pad=True)
    flow = flow * net_mask
    scale = torch.tensor([size[1] / net_size[1], size[0] / net_size[0]], dtype=torch.float32).view(1, 2, 1, 1)
    flow = F.interpolate(flow * scale, size=size, mode="bilinear", align_corners=False)
    result = flow[0].permute(1, 2, 0).numpy().astype(np.float32)
    result[~view_mask] = 0.0
    return result


def predict_flow(
    model: nn.Module,
    image: np.ndarray,
    mask: np.ndarray,
    hints: Sequence[Any],
    device: str | torch.device | None = None,
    **input_options: Any,
) -> np.ndarray:
    """One view's flow [H, W, 2] float32 (view pixels per frame), 0 outside ``mask``.

    :func:`build_flow_input` (``input_options``: width, height, speed, spread) -> ``model`` under
    ``torch.no_grad`` on ``device`` (default: the model's) -> :func:`flow_from_output`.
    """
    if device is None:
        device = next(model.parameters()).device
    x, info = build_flow_input(image, mask, hints, **input_options)
    with torch.no_grad():
        out = model(x.to(device))
    return flow_from_output(out.cpu(), info.view_size, mask)
