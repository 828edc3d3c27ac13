"""Deformation field, looping construction, losses, config and densification (no rendering)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gaussians4d import densify
from gaussians4d.config import TrainConfig, load_config, preset
from gaussians4d.deformation import DeformationConfig, HexPlaneDeformation, plane_tv, projective_coords, time_smoothness
from gaussians4d.losses import l1_loss, photometric_loss, psnr, ssim
from gaussians4d.model import FourDGaussians, TrainableGaussians, deform, loop_frames
from scene.gaussians import GaussianParams
from utils.config import to_dict
from utils.errors import UserError

CFG = DeformationConfig(grid_resolution=6, grid_multires=(1, 2), time_resolution=5, grid_features=3, mlp_width=8)


def _field(seed: int = 0, randomize: bool = True) -> HexPlaneDeformation:
    torch.manual_seed(seed)
    field = HexPlaneDeformation(CFG, torch.tensor([-1.0, -1.0, 0.01]), torch.tensor([1.0, 1.0, 1.0]), torch.eye(4))
    if randomize:  # untrained heads are zero; give them (and the time planes) something to show
        with torch.no_grad():
            for p in field.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return field


def _points(n: int = 50, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = 2 + 20 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * z[:, None]
    return torch.cat([xy, z[:, None]], 1)


def _gaussians(n: int = 40, seed: int = 2) -> GaussianParams:
    g = torch.Generator().manual_seed(seed)
    return GaussianParams(
        _points(n, seed),
        torch.randn(n, 4, generator=g),
        torch.rand(n, 3, generator=g) * 0.1 + 0.01,
        torch.rand(n, generator=g) * 0.9 + 0.05,
        torch.randn(n, 4, 3, generator=g),
    )


# ----------------------------------------------------------------------------- HexPlane


def test_field_shapes_and_identity_at_init():
    field = _field(randomize=False)
    dx, dq, ds = field(_points(), 0.3)
    assert dx.shape == (50, 3) and dq.shape == (50, 4) and ds.shape == (50, 3)
    assert torch.count_nonzero(dx) == 0 and torch.count_nonzero(dq) == 0 and torch.count_nonzero(ds) == 0


def test_field_is_exactly_periodic_in_time():
    field, pts = _field(), _points()
    with torch.no_grad():
        a, b = field(pts, 0.0), field(pts, 1.0)
        c, d = field(pts, 0.25), field(pts, 1.25)
        near_end = field.features(pts, 1 - 1e-6)
    for u, v in zip(a + c, b + d):
        assert torch.equal(u, v)
    # Continuity across the seam: just before t = 1 the features approach those at t = 0.
    assert torch.allclose(near_end, field.features(pts, 0.0), atol=1e-4)
    assert not torch.allclose(field.features(pts, 0.5), field.features(pts, 0.0), atol=1e-3)


def test_plane_sampling_matches_naive_bilinear():
    field = _field()
    plane = field.spatial[0]  # xy plane of level 0: [1, F, R, R], u along W (x), v along H (y)
    pts = _points(7)
    p = field.normalized(pts)
    r = plane.shape[-1]
    with torch.no_grad():
        got = torch.nn.functional.grid_sample(
            plane, torch.stack([p[:, 0], p[:, 1]], -1).view(1, 1, -1, 2), align_corners=True, padding_mode="border"
        )[0, :, 0].T
    for k in range(len(pts)):
        x, y = (p[k, 0].item() + 1) / 2 * (r - 1), (p[k, 1].item() + 1) / 2 * (r - 1)
        x0, y0 = min(math.floor(x), r - 2), min(math.floor(y), r - 2)
        fx, fy = x - x0, y - y0
        pl = plane[0].detach()
        ref = (
            pl[:, y0, x0] * (1 - fx) * (1 - fy)
            + pl[:, y0, x0 + 1] * fx * (1 - fy)
            + pl[:, y0 + 1, x0] * (1 - fx) * fy
            + pl[:, y0 + 1, x0 + 1] * fx * fy
        )
        assert torch.allclose(got[k], ref, atol=1e-5)


def test_field_gradients_reach_planes_and_mlp():
    field = _field()
    dx, dq, ds = field(_points(), 0.4)
    (dx.square().sum() + dq.sum() + ds.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in field.mlp_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in field.grid_parameters())


def test_field_rejects_bad_points():
    with pytest.raises(ValueError, match="points must be"):
        _field()(torch.zeros(4, 2), 0.0)
    with pytest.raises(ValueError, match="lo and hi"):
        HexPlaneDeformation(CFG, torch.zeros(2), torch.ones(3), torch.eye(4))


def test_projective_coords_reference():
    w2c = torch.eye(4)
    w2c[:3, 3] = torch.tensor([0.5, -0.2, 1.0])
    pts = _points(5)
    cam = pts + w2c[:3, 3]
    ref = torch.stack([cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2], 1 / cam[:, 2]], 1)
    assert torch.allclose(projective_coords(pts, w2c), ref, atol=1e-6)


def test_regularizers_against_naive_reference():
    g = torch.Generator().manual_seed(3)
    plane = torch.rand(1, 2, 4, 5, generator=g)
    ref_tv = ((plane[..., 1:, :] - plane[..., :-1, :]) ** 2).mean() + ((plane[..., 1:] - plane[..., :-1]) ** 2).mean()
    assert torch.allclose(plane_tv(plane), ref_tv)
    # Periodic second difference: a plane constant in time costs 0, a ramp costs only at the wrap.
    assert time_smoothness(torch.ones(1, 2, 6, 3)) == 0
    ramp = torch.arange(6.0).view(1, 1, 6, 1).expand(1, 2, 6, 3)
    t = ramp[0, 0, :, 0].tolist()
    second = [(t[(i + 2) % 6] - 2 * t[(i + 1) % 6] + t[i]) ** 2 for i in range(6)]
    assert math.isclose(float(time_smoothness(ramp)), sum(second) / 6, rel_tol=1e-6)
    field = _field()
    assert float(field.regularization(1.0, 1.0).detach()) > 0


# ----------------------------------------------------------------------------- looping construction


def _moving_setup():
    params = _gaussians()
    moving = torch.arange(0, 40, 3)
    disp = torch.randn(len(moving), 3) * 0.5
    depth = params.means[moving].norm(dim=1)
    return params, moving, disp, depth


def test_deform_loops_exactly_and_static_rows_never_move():
    params, moving, disp, depth = _moving_setup()
    field = _field()
    static = torch.ones(len(params), dtype=torch.bool)
    static[moving] = False
    with torch.no_grad():
        at0, at1 = deform(params, moving, disp, depth, field, 0.0), deform(params, moving, disp, depth, field, 1.0)
        for a, b in zip(at0.tensors(), at1.tensors()):
            assert torch.equal(a, b)
        for t in (0.0, 0.13, 0.5, 0.77, 0.999):
            out = deform(params, moving, disp, depth, field, t)
            assert len(out) == len(params) + len(moving)  # the count never depends on t
            for a, b in zip(out.tensors(), params.tensors()):
                assert torch.equal(a[: len(params)][static], b[static])


def test_deform_is_the_symmetric_blend_of_the_prior():
    params, moving, disp, depth = _moving_setup()
    n, t = len(params), 0.3
    out = deform(params, moving, disp, depth, None, t)
    x = params.means[moving]
    assert torch.allclose(out.means[moving], x + t * disp, atol=1e-6)  # forward copy
    assert torch.allclose(out.means[n:], x - (1 - t) * disp, atol=1e-6)  # backward copy
    a = params.opacities[moving]
    a_f, a_b = out.opacities[moving], out.opacities[n:]
    assert torch.allclose((1 - a_f) * (1 - a_b), 1 - a, atol=1e-6)  # transmittance split
    start = deform(params, moving, disp, depth, None, 0.0)
    assert torch.allclose(start.opacities[moving], a, atol=1e-6) and torch.count_nonzero(start.opacities[n:]) == 0
    end = deform(params, moving, disp, depth, None, 1 - 1e-7)  # just before the seam: backward copy at x
    assert torch.allclose(end.means[n:], x, atol=1e-5) and float(end.opacities[moving].max()) < 1e-5


def test_deform_gradients_flow_to_canonical_and_field():
    params, moving, disp, depth = _moving_setup()
    means = params.means.clone().requires_grad_(True)
    field = _field()
    out = deform(GaussianParams(means, *params.tensors()[1:]), moving, disp, depth, field, 0.6)
    out.means.sum().backward()
    assert means.grad is not None and torch.isfinite(means.grad).all()
    assert field.head_x.weight.grad is not None


def test_fourd_at_time_loops_and_has_no_grad():
    params, moving, disp, depth = _moving_setup()
    model = FourDGaussians(params, moving, disp / 8, depth, _field(), 8, 2.0, [])
    assert model.n_frames == 4 and model.sh_degree == 1
    a, b = model.at_time(0.0), model.at_time(1.0)
    assert all(torch.equal(u, v) for u, v in zip(a.tensors(), b.tensors()))
    assert not model.at_time(0.5).means.requires_grad
    with pytest.raises(ValueError, match="finite"):
        model.at_time(float("nan"))


def test_flow_scale_zero_freezes_the_scene():
    params, moving, disp, depth = _moving_setup()
    model = FourDGaussians(params, moving, disp / 8, depth, _field(), 8, 0.0, [])
    assert model.n_frames == 8
    a = model.at_time(0.0)
    for t in (0.2, 0.5, 0.9):
        assert all(torch.equal(u, v) for u, v in zip(a.tensors(), model.at_time(t).tensors()))


def test_loop_frames():
    assert loop_frames(120, 1.0) == 120
    assert loop_frames(120, 2.0) == 60
    assert loop_frames(120, 0.0) == 120
    assert loop_frames(10, 100.0) == 1
    with pytest.raises(ValueError, match="n_video_frames"):
        loop_frames(0, 1.0)


# ----------------------------------------------------------------------------- losses


def test_losses():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 16, 20, 3, generator=g)
    y = torch.rand(2, 16, 20, 3, generator=g)
    assert math.isclose(float(ssim(x, x)), 1.0, abs_tol=1e-5)
    assert float(ssim(x, y)) < 0.5
    assert torch.allclose(l1_loss(x, y), (x - y).abs().mean())
    w = torch.zeros(2, 16, 20)
    w[:, :8] = 1
    assert torch.allclose(l1_loss(x, y, w), (x - y)[:, :8].abs().mean())
    assert math.isclose(psnr(torch.full((1, 4, 4, 3), 0.5), torch.full((1, 4, 4, 3), 0.6)), 20.0, rel_tol=1e-4)
    loss = photometric_loss(x.requires_grad_(True), y, 0.2)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="pred and target"):
        l1_loss(x[0], y)
    with pytest.raises(ValueError, match="weight"):
        l1_loss(x, y, w[0])


def _ssim_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """3DGS's SSIM with a full 11x11 Gaussian window (float64), the separable version's reference."""
    x, y = x.double().permute(0, 3, 1, 2), y.double().permute(0, 3, 1, 2)
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(r**2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)

    def blur(img):
        return torch.nn.functional.conv2d(img, w, padding=5, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()


def test_ssim_matches_full_window_reference():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(1, 19, 23, 3, generator=g)
    y = (x + 0.2 * torch.rand(1, 19, 23, 3, generator=g)).clamp(0, 1)
    assert math.isclose(float(ssim(x, y)), float(_ssim_reference(x, y)), abs_tol=1e-5)


# ----------------------------------------------------------------------------- config


def test_config_presets_validate_and_round_trip():
    cpu, gpu = preset("cpu"), preset("gpu")
    assert gpu.data.resolution is None and cpu.data.resolution == "256"
    assert load_config(to_dict(gpu)) == gpu
    with pytest.raises(UserError, match="flow_scale must be >= 0"):
        preset("cpu", flow_scale=-1.0)
    with pytest.raises(UserError, match="must be finite"):
        preset("cpu", flow_scale=float("inf"))
    with pytest.raises(UserError, match="sh_degree"):
        preset("cpu", sh_degree=4)
    with pytest.raises(UserError, match="unknown field"):
        load_config({"no_such_field": 1})
    with pytest.raises(UserError, match="must be an integer"):
        load_config({"data": {"max_points": "many"}})
    with pytest.raises(UserError, match="unknown preset"):
        preset("tpu")
    optim = TrainConfig().optim
    assert optim.total_iterations == optim.coarse_iterations + optim.fine_iterations


# ----------------------------------------------------------------------------- densification


def _trainable(n: int = 30) -> TrainableGaussians:
    g = torch.Generator().manual_seed(5)
    xyz = _points(n, 6)
    depth = xyz.norm(dim=1)
    moving = torch.arange(n) % 2 == 0
    tensors = {
        "means_n": xyz / depth[:, None],
        "quats": torch.tensor([1.0, 0, 0, 0]).repeat(n, 1),
        "log_scales": torch.log(depth * torch.where(torch.arange(n) < n // 2, 0.001, 0.004))[:, None].repeat(1, 3),
        "opacity_logits": torch.zeros(n),
        "sh_dc": torch.rand(n, 1, 3, generator=g),
        "sh_rest": torch.zeros(n, 0, 3),
        "depth_ref": depth,
        "moving": moving,
        "motion": torch.randn(n, 3, generator=g) * moving[:, None],
    }
    return TrainableGaussians(tensors, _field(randomize=False), 8, 1.0)


def _optimizer_with_state(model: TrainableGaussians) -> torch.optim.Adam:
    from gaussians4d.trainer import make_optimizer

    opt = make_optimizer(model, TrainConfig().optim)
    at = model.at(0.3)
    loss = at.means.square().sum() + at.opacities.sum() + at.scales.sum() + at.quats.sum() + model.sh_dc.sum()
    loss.backward()
    opt.step()
    opt.zero_grad()
    return opt


def test_densify_grows_prunes_and_keeps_optimizer_in_step():
    model = _trainable()
    opt = _optimizer_with_state(model)
    cfg = densify.DensifyConfig(
        densify_from=1, densify_until_fraction=1.0, densify_every=1, grow_grad2d=0.5, grow_scale=0.002,
        prune_opacity=0.3, max_gaussians=1000,
    )  # fmt: skip
    state = densify.initialize_state(len(model), "cpu")
    state["grad2d"][:6] = 10.0  # rows 0..5 grow: small ones (< n/2) are cloned
    state["grad2d"][20:24] = 10.0  # rows 20..23 are large: split
    state["count"][:] = 1
    with torch.no_grad():
        model.opacity_logits[10] = -5.0  # transparent: pruned
    moving_before = model.moving.clone()
    counts = densify.step(model, opt, state, cfg, iteration=1, total_iterations=100)
    assert counts == {"cloned": 6, "split": 4, "pruned": 1}
    assert len(model) == 30 + 6 + 4 - 1
    for group in opt.param_groups:
        if group["name"] in model.PARAMS:
            p = group["params"][0]
            assert p is getattr(model, group["name"]) and p.shape[0] == len(model)
            if p.numel():  # sh_rest is empty at SH degree 0 and never gets Adam state
                assert opt.state[p]["exp_avg"].shape == p.shape
    # Children inherit the parent's motion class: static stays static, moving keeps its motion.
    assert int(model.moving.sum()) == int(moving_before.sum()) + int(moving_before[:6].sum()) + int(
        moving_before[20:24].sum()
    ) - int(moving_before[10])
    assert torch.count_nonzero(model.motion[~model.moving]) == 0
    assert state["grad2d"].shape == (len(model),) and state["grad2d"].sum() == 0


def test_densify_respects_the_cap_and_resets_opacity():
    model = _trainable()
    opt = _optimizer_with_state(model)
    cfg = densify.DensifyConfig(
        densify_from=1, densify_until_fraction=1.0, densify_every=1, grow_grad2d=0.5, prune_opacity=0.0,
        max_gaussians=33, reset_opacity_every=1,
    )  # fmt: skip
    state = densify.initialize_state(len(model), "cpu")
    state["grad2d"][:] = 10.0
    state["count"][:] = 1
    densify.step(model, opt, state, cfg, iteration=1, total_iterations=100)
    assert len(model) <= 33 + 3  # at most 3 grew (a split adds 2 rows but removes its parent)
    assert float(torch.sigmoid(model.opacity_logits.detach()).max()) <= 0.5 + 1e-6


def test_update_state_maps_copies_to_canonical_rows():
    class Out:
        pass

    model = _trainable(6)
    rows = model.rendered_rows()
    assert rows.tolist() == [0, 1, 2, 3, 4, 5, 0, 2, 4]
    out = Out()
    out.means2d = torch.zeros(1, 9, 2, requires_grad=True)
    out.means2d.grad = torch.ones(1, 9, 2)
    out.radii = torch.tensor([[3, 0, 3, 3, 3, 3, 3, 3, 0]], dtype=torch.int32)
    state = densify.initialize_state(6, "cpu")
    densify.update_state(state, out, rows, 20, 10)
    assert state["count"].tolist() == [2, 0, 2, 1, 1, 1]
    assert state["grad2d"][1] == 0 and state["grad2d"][0] == pytest.approx(2 * np.hypot(10, 5))
