"""gaussians4d/model.py: the looping construction (forward/backward copies, static rows, flow_scale)."""

from __future__ import annotations

import pytest
import torch

from gaussians4d.model import FourDGaussians, deform, loop_frames
from scene.gaussians import GaussianParams
from tests.gaussians4d.helpers import random_gaussians, tiny_field


def _moving_setup():
    params = random_gaussians()
    moving = torch.arange(0, 40, 3)
    disp = torch.randn(len(moving), 3) * 0.5
    depth = params.means[moving].norm(dim=1)
    return params, moving, disp, depth


def test_deform_loops_exactly_and_static_rows_never_move():
    params, moving, disp, depth = _moving_setup()
    field = tiny_field()
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
    field = tiny_field()
    out = deform(GaussianParams(means, *params.tensors()[1:]), moving, disp, depth, field, 0.6)
    out.means.sum().backward()
    assert means.grad is not None and torch.isfinite(means.grad).all()
    assert field.head_x.weight.grad is not None


def test_fourd_at_time_loops_and_has_no_grad():
    params, moving, disp, depth = _moving_setup()
    model = FourDGaussians(params, moving, disp / 8, depth, tiny_field(), 8, 2.0, [])
    assert model.n_frames == 4 and model.sh_degree == 1
    a, b = model.at_time(0.0), model.at_time(1.0)
    assert all(torch.equal(u, v) for u, v in zip(a.tensors(), b.tensors()))
    assert not model.at_time(0.5).means.requires_grad
    with pytest.raises(ValueError, match="finite"):
        model.at_time(float("nan"))


def test_flow_scale_zero_freezes_the_scene():
    params, moving, disp, depth = _moving_setup()
    model = FourDGaussians(params, moving, disp / 8, depth, tiny_field(), 8, 0.0, [])
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
