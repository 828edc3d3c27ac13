"""3D-Cinemagraphy's scene-flow network: checkpoint layout, exact output, strict loading, input and output conventions.

The fixture (../shared/fixtures/sceneflow, see its README) holds the released checkpoint's schema, random
weights in that layout and the original network's output on a fixed input; tests needing it skip without it.
CPU only, no download.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from thirdparty.cinemagraphy_flow import (
    HINT_SPEED,
    NET_SIDE,
    SceneFlowNet,
    build_flow_input,
    flow_from_output,
    load_sceneflow,
    predict_flow,
)
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "sceneflow"
WEIGHTS = FIXTURE / "random_netG_fp16.safetensors"
needs_fixture = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"scene-flow fixture not found at {FIXTURE}")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fixture_model() -> SceneFlowNet:
    if not WEIGHTS.is_file():
        pytest.skip(f"scene-flow fixture not found at {FIXTURE}")
    return load_sceneflow(WEIGHTS)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """A complete state dict in the checkpoint's layout (random weights, no fixture needed)."""
    torch.manual_seed(0)
    return SceneFlowNet().state_dict()


def _rel_error(out: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(out - expected).max() / np.abs(expected).max())


def _one_line_error(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    line = str(excinfo.value)
    assert "\n" not in line and "Fix:" in line, line
    for needle in needles:
        assert needle in line, line
    return line


# ----------------------------------------------------------------------------- network and checkpoint layout


@needs_fixture
def test_fixture_output_reproduced(fixture_model):
    x = torch.from_numpy(np.load(FIXTURE / "input.npy"))
    expected = np.load(FIXTURE / "expected_output.npy")
    with torch.no_grad():
        out = fixture_model(x).numpy()
    assert out.shape == expected.shape == (1, 2, 256, 256)
    assert _rel_error(out, expected) <= 1e-4


@needs_fixture
def test_state_dict_equals_schema():
    rows = [line.split("\t") for line in (FIXTURE / "schema.tsv").read_text().splitlines()[1:] if line.strip()]
    schema = {key: (shape, dtype) for key, shape, dtype in rows}
    state = SceneFlowNet().state_dict()
    assert list(state) == [key for key, _, _ in rows]  # same keys, same order (spectral-norm buffers included)
    assert len(state) == 142
    for key, tensor in state.items():
        assert str(list(tensor.shape)) == schema[key][0], key
        assert str(tensor.dtype).removeprefix("torch.") == schema[key][1], key


def test_forward_rejects_bad_input_shapes():
    model = SceneFlowNet().eval()
    with pytest.raises(ValueError, match="multiples of 256"):
        model(torch.zeros(1, 6, 256, 200))
    with pytest.raises(ValueError, match=r"\[B, 6, H, W\]"):
        model(torch.zeros(1, 5, 256, 256))


# ----------------------------------------------------------------------------- loading


def _save_pth(tmp_path: Path, netg: dict, name: str = "sceneflow_model.pth") -> Path:
    path = tmp_path / name
    torch.save({"netG": netg}, path)
    return path


def test_missing_key_refused(tmp_path, state):
    broken = {k: v for k, v in state.items() if k != "motion_predictor.conv3.bias"}
    with pytest.raises(UserError) as excinfo:
        load_sceneflow(_save_pth(tmp_path, broken))
    _one_line_error(excinfo, "key motion_predictor.conv3.bias missing", "sceneflow_model.pth")


def test_wrong_shape_refused(tmp_path, state):
    broken = dict(state)
    broken["motion_predictor.dconv8.bias"] = torch.zeros(3)
    with pytest.raises(UserError) as excinfo:
        load_sceneflow(_save_pth(tmp_path, broken))
    _one_line_error(excinfo, "motion_predictor.dconv8.bias", "[3]", "expected [2]")


def test_unexpected_key_refused(tmp_path, state):
    broken = dict(state)
    broken["motion_predictor.conv9.bias"] = torch.zeros(2)
    with pytest.raises(UserError) as excinfo:
        load_sceneflow(_save_pth(tmp_path, broken))
    _one_line_error(excinfo, "unexpected key motion_predictor.conv9.bias")


def test_safetensors_missing_key_refused(tmp_path, state):
    from safetensors.torch import save_file

    tensors = {f"netG.{k}": v.half() for k, v in state.items() if k != "motion_predictor.spade_layer8_7.mlp_beta.bias"}
    save_file(tensors, str(tmp_path / "flow.safetensors"))
    with pytest.raises(UserError) as excinfo:
        load_sceneflow(tmp_path / "flow.safetensors")
    _one_line_error(excinfo, "key motion_predictor.spade_layer8_7.mlp_beta.bias missing")


def test_missing_and_damaged_files_refused(tmp_path):
    with pytest.raises(UserError) as excinfo:
        load_sceneflow(tmp_path / "nowhere.pth")
    _one_line_error(excinfo, "does not exist")
    junk = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for name in ("junk.pth", "junk.safetensors"):
        (tmp_path / name).write_bytes(junk)
        with pytest.raises(UserError) as excinfo:
            load_sceneflow(tmp_path / name)
        _one_line_error(excinfo, "cannot be read")


def test_checkpoint_without_netg_refused(tmp_path, state):
    torch.save({"state_dict": state}, tmp_path / "other.pth")
    with pytest.raises(UserError) as excinfo:
        load_sceneflow(tmp_path / "other.pth")
    _one_line_error(excinfo, "no 'netG'")


def _spring(marker: str) -> None:
    Path(marker).write_text("executed")


class _Trap:
    """Unpickling this calls ``_spring`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_spring, (self.marker,))


class _Plain:
    """An ordinary class instance: its class would have to be imported to unpickle it."""

    def __init__(self):
        self.value = 1


def test_pickled_objects_refused_not_executed(tmp_path, state):
    marker = tmp_path / "marker"
    for i, obj in enumerate([_Trap(marker), _Plain()]):
        path = tmp_path / f"evil{i}.pth"
        torch.save({"netG": {**state, "motion_predictor.conv1.bias": obj}}, path)
        with pytest.raises(UserError) as excinfo:
            load_sceneflow(path)
        _one_line_error(excinfo, "refused")
    assert not marker.exists()


@needs_fixture
def test_pth_from_fixture_weights_matches_safetensors(tmp_path, fixture_model):
    from safetensors.torch import load_file

    netg = {k.removeprefix("netG."): v for k, v in load_file(str(WEIGHTS)).items()}
    torch.save({"netG": netg, "epoch": 3}, tmp_path / "sceneflow_model.pth")  # extra top-level entries are ignored
    model = load_sceneflow(tmp_path / "sceneflow_model.pth")
    assert not model.training
    x = torch.from_numpy(np.load(FIXTURE / "input.npy"))
    with torch.no_grad():
        torch.testing.assert_close(model(x), fixture_model(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------- input


def _view(h: int = 96, w: int = 144, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4 : 3 * h // 4, w // 6 : 5 * w // 6] = True
    return image, mask


def test_input_shapes_and_ranges():
    image, mask = _view()
    x, info = build_flow_input(image, mask, [((40, 40), (60, 45))])
    assert x.shape == (1, 6, NET_SIDE, NET_SIDE) and x.dtype == torch.float32
    assert info.net_size == (768, 768) and info.view_size == (96, 144)
    assert info.scale == (768 / 144, 768 / 96)
    assert x[:, :3].min() >= -1 and x[:, :3].max() <= 1
    assert x[:, 3].min() >= 0 and x[:, 3].max() <= 1
    x2, info2 = build_flow_input(image, mask, [], width=256, height=512)
    assert x2.shape == (1, 6, 512, 256) and info2.hints_used == 0 and info2.sigma == 0.0
    assert torch.count_nonzero(x2[:, 4:]) == 0
    for bad in ({"width": 300}, {"width": 256, "height": 100}, {"width": 0}):
        with pytest.raises(ValueError, match="multiple of 256"):
            build_flow_input(image, mask, [], **bad)
    with pytest.raises(ValueError, match="mask"):
        build_flow_input(image, mask[:-1], [])
    with pytest.raises(ValueError, match="hints"):
        build_flow_input(image, mask, [(1, 2, 3)])


def test_image_and_mask_channels():
    image = np.zeros((128, 256, 3), np.uint8)
    image[:, :128] = 255  # left half white, right half black
    mask = np.zeros((128, 256), bool)
    mask[:, :128] = True
    x, _ = build_flow_input(image, mask, [], width=256, height=256)
    assert torch.all(x[0, :3, :, :120] == 1.0) and torch.all(x[0, :3, :, 136:] == -1.0)
    # area interpolation: coverage of each network pixel, exactly 0/1 away from the edge, 1/2 on the edge column
    assert torch.all(x[0, 3, :, :128] == 1.0) and torch.all(x[0, 3, :, 128:] == 0.0)
    odd = np.zeros((128, 256), bool)
    odd[:, :129] = True
    x_odd, _ = build_flow_input(image, odd, [], width=512, height=256)  # 256 view columns -> 512: no fractions
    assert set(torch.unique(x_odd[0, 3]).tolist()) == {0.0, 1.0}
    wide = np.zeros((128, 512), bool)
    wide[:, :257] = True
    x_half, _ = build_flow_input(np.zeros((128, 512, 3), np.uint8), wide, [], width=256)  # 2 view columns -> 1
    assert torch.all(x_half[0, 3, :, :128] == 1.0) and torch.all(x_half[0, 3, :, 129:] == 0.0)
    assert torch.all(x_half[0, 3, :, 128] == 0.5)


def test_single_horizontal_hint_field():
    """One hint: the original's normalised average is that hint's vector over the whole mask, 0 outside."""
    image, mask = _view(h=128, w=192)
    x, info = build_flow_input(image, mask, [((96.4, 64.0), (146.4, 64.0))], width=256)
    expected_x = 50.0 * HINT_SPEED * 256 / 192  # view px per frame -> network px per frame
    # fully covered network pixels whose bilinear neighbours are covered too
    inner = torch.from_numpy(_erode(x[0, 3].numpy() == 1.0, 1))
    assert inner.sum() > 1000 and info.hints_used == 1 and info.sigma == 128.0
    torch.testing.assert_close(x[0, 4][inner], torch.full_like(x[0, 4][inner], expected_x), rtol=1e-6, atol=1e-6)
    assert torch.all(x[0, 5] == 0)
    far = torch.from_numpy(_dilate(x[0, 3].numpy() > 0, 2)) == 0
    assert torch.all(x[0, 4:][:, far] == 0)
    assert torch.all(x[0, 4] >= 0) and x[0, 4].max() <= expected_x + 1e-6


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=r)


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return binary_erosion(mask, iterations=r)


def test_two_hints_hand_computed():
    """At network resolution = view resolution, the field is the hand-computable Gaussian average."""
    image = np.zeros((256, 256, 3), np.uint8)
    mask = np.ones((256, 256), bool)
    a, b = ((20.0, 30.0), (70.0, 30.0)), ((200.9, 100.5), (200.9, 75.5))  # +50 px in x; -25 px in y
    x, info = build_flow_input(image, mask, [a, b], width=256, speed=0.02)
    sigma = 256 / 2
    assert info.sigma == sigma and info.scale == (1.0, 1.0)
    for px, py in [(20, 30), (200, 100), (110, 64), (5, 250)]:
        wa = math.exp(-((math.hypot(px - 20, py - 30) / sigma) ** 2))
        wb = math.exp(-((math.hypot(px - 200, py - 100) / sigma) ** 2))  # the start pixel is int(200.9), int(100.5)
        vx = (wa * 50 * 0.02 + wb * 0) / (wa + wb)
        vy = (wa * 0 + wb * -25 * 0.02) / (wa + wb)
        assert float(x[0, 4, py, px]) == pytest.approx(vx, abs=1e-6)
        assert float(x[0, 5, py, px]) == pytest.approx(vy, abs=1e-6)
    assert float(x[0, 4, 30, 20]) > 0.9 and float(x[0, 5, 100, 200]) < -0.4  # each hint dominates near itself


def test_hints_outside_the_view_dropped_and_input_deterministic():
    image, mask = _view()
    hints = [((40, 40), (60, 45)), ((-3, 10), (5, 10)), ((10, 96), (10, 80))]
    x1, info = build_flow_input(image, mask, hints, width=256)
    x2, _ = build_flow_input(image, mask, hints, width=256)
    assert info.hints_used == 1
    assert torch.equal(x1, x2)
    x3, _ = build_flow_input(image, mask, hints[:1], width=256)
    assert torch.equal(x1, x3)


# ----------------------------------------------------------------------------- output


def test_flow_from_constant_output():
    h, w = 128, 192
    mask = np.zeros((h, w), bool)
    mask[20:110, 30:170] = True
    a, b = 3.0, -2.0
    out = torch.tensor([a, b]).view(1, 2, 1, 1).expand(1, 2, 256, 256)
    sx, sy = w / 256, h / 256  # view pixels per network pixel
    inner = np.zeros_like(mask)
    inner[35:95, 45:155] = True  # more than the blur's reach (7 network px = 5.25 view px) inside the mask
    for blur in (0, 15):
        flow = flow_from_output(out, (h, w), mask, blur=blur)
        assert flow.shape == (h, w, 2) and flow.dtype == np.float32
        np.testing.assert_allclose(flow[inner], np.broadcast_to([a * sx, b * sy], flow[inner].shape), rtol=1e-5)
        assert np.all(flow[~mask] == 0)
        edge = mask & ~inner
        assert np.all(np.abs(flow[edge][:, 0]) <= a * sx + 1e-5)
    doubled = flow_from_output(out, (h, w), mask, div_flow=2.0)
    np.testing.assert_allclose(
        doubled[inner], np.broadcast_to([2 * a * sx, 2 * b * sy], doubled[inner].shape), rtol=1e-5
    )
    with pytest.raises(ValueError, match="blur"):
        flow_from_output(out, (h, w), mask, blur=4)


@needs_fixture
def test_predict_flow_on_a_small_view(fixture_model):
    image, mask = _view(h=80, w=120, seed=1)
    flow = predict_flow(fixture_model, image, mask, [((30, 40), (45, 42))], width=256)
    assert flow.shape == (80, 120, 2) and flow.dtype == np.float32
    assert np.isfinite(flow).all()
    assert np.all(flow[~mask] == 0) and np.abs(flow[mask]).max() > 0
