"""gaussians4d/model.py: the looping construction (two copies on the loop schedule, static rows, flow_scale)."""

from __future__ import annotations

import pytest
import torch

from gaussians4d.model import FourDGaussians, deform, loop_frames
from scene.gaussians import GaussianParams
from scene.loop import LoopSchedule
from tests.gaussians4d.helpers import random_gaussians, tiny_field

N, C = 8, 4  # video frames of the loop, frames of the layers' cycle


def _moving_setup(mode: str = "layers"):
    params = random_gaussians()
    moving = torch.arange(0, 40, 3)
    motion = torch.randn(len(moving), 3, generator=torch.Generator().manual_seed(3)) * 0.06
    schedule = LoopSchedule(N, mode, cycle=C, transition=0.25, photo_size=(64, 48))
    threshold = schedule.threshold(torch.rand(len(moving), 2, generator=torch.Generator().manual_seed(4)) * 64)
    depth = params.means[moving].norm(dim=1)
    return params, moving, motion, threshold, depth, schedule


@pytest.mark.parametrize("mode", ["layers", "crossfade"])
def test_deform_loops_exactly_and_static_rows_never_move(mode):
    params, moving, motion, threshold, depth, schedule = _moving_setup(mode)
    field = tiny_field()
    static = torch.ones(len(params), dtype=torch.bool)
    static[moving] = False

    def at(t):
        return deform(params, moving, motion, threshold, depth, field, schedule, t)

    with torch.no_grad():
        for a, b in zip(at(0.0).tensors(), at(1.0).tensors()):
            assert torch.equal(a, b)
        for t in (0.0, 0.13, 0.5, 0.77, 0.999):
            out = at(t)
            assert len(out) == len(params) + len(moving)  # the count never depends on t
            for a, b in zip(out.tensors(), params.tensors()):
                assert torch.equal(a[: len(params)][static], b[static])


def test_layers_follow_the_schedule_and_hide_every_jump():
    params, moving, motion, threshold, depth, schedule = _moving_setup("layers")
    n, x, a = len(params), params.means[moving], params.opacities[moving]
    for t in torch.linspace(0, 1, 33)[:-1].tolist():
        out = deform(params, moving, motion, threshold, depth, None, schedule, t)
        d0, d1 = schedule.displacements(t)
        assert torch.allclose(out.means[moving], x + d0 * motion, atol=1e-6)
        assert torch.allclose(out.means[n:], x + d1 * motion, atol=1e-6)
        a0, a1 = out.opacities[moving], out.opacities[n:]
        assert torch.allclose((1 - a0) * (1 - a1), 1 - a, atol=1e-6)  # the transmittance split
        for d, opacity in ((d0, a0), (d1, a1)):
            if abs(abs(d) - C / 2) < 1e-6:  # the copy jumps back now: it must be invisible
                assert float(opacity.max()) < 1e-6
    start = deform(params, moving, motion, threshold, depth, None, schedule, 0.0)
    assert torch.allclose(start.means[moving], x) and torch.allclose(start.opacities[moving], a, atol=1e-6)
    assert float(start.opacities[n:].max()) < 1e-6  # t = 0: copy 0 at x, whole opacity


def test_crossfade_is_the_symmetric_blend_of_the_prior():
    params, moving, motion, threshold, depth, schedule = _moving_setup("crossfade")
    n, t, x = len(params), 0.3, params.means[moving]
    out = deform(params, moving, motion, threshold, depth, None, schedule, t)
    assert torch.allclose(out.means[moving], x + t * N * motion, atol=1e-6)  # forward copy
    assert torch.allclose(out.means[n:], x - (1 - t) * N * motion, atol=1e-6)  # backward copy
    a = params.opacities[moving]
    assert torch.allclose(out.opacities[moving], 1 - (1 - a) ** (1 - t), atol=1e-6)


@pytest.mark.parametrize("with_field", [True, False])
def test_deform_at_several_times_stacks_the_single_times(with_field):
    params, moving, motion, threshold, depth, schedule = _moving_setup()
    field = tiny_field() if with_field else None
    times = [0.0, 0.3, 0.3, 0.81]
    with torch.no_grad():
        batch = deform(params, moving, motion, threshold, depth, field, schedule, times)
        assert batch.means.shape == (4, len(params) + len(moving), 3) and len(batch) == len(params) + len(moving)
        for b, t in enumerate(times):
            single = deform(params, moving, motion, threshold, depth, field, schedule, t)
            for x, y in zip(batch.tensors(), single.tensors()):
                torch.testing.assert_close(x[b], y, rtol=1e-6, atol=1e-7)
        empty = torch.zeros(0, dtype=torch.long)
        assert deform(params, empty, motion[:0], threshold[:0], depth[:0], field, schedule, times).means.shape == (
            4,
            len(params),
            3,
        )


def test_deform_gradients_flow_to_canonical_and_field():
    params, moving, motion, threshold, depth, schedule = _moving_setup()
    means = params.means.clone().requires_grad_(True)
    field = tiny_field()
    out = deform(GaussianParams(means, *params.tensors()[1:]), moving, motion, threshold, depth, field, schedule, 0.6)
    out.means.sum().backward()
    assert means.grad is not None and torch.isfinite(means.grad).all()
    assert field.head_x.weight.grad is not None


def _model(flow_scale: float) -> FourDGaussians:
    params, moving, motion, threshold, depth, schedule = _moving_setup()
    from_photo = torch.ones(len(params), dtype=torch.bool)
    return FourDGaussians(params, moving, from_photo, motion, threshold, depth, tiny_field(), schedule, flow_scale, [])


def test_fourd_at_time_loops_and_has_no_grad():
    model = _model(2.0)
    assert model.n_frames == 4 and model.sh_degree == 1
    a, b = model.at_time(0.0), model.at_time(1.0)
    assert all(torch.equal(u, v) for u, v in zip(a.tensors(), b.tensors()))
    assert not model.at_time(0.5).means.requires_grad
    with pytest.raises(ValueError, match="finite"):
        model.at_time(float("nan"))


def test_flow_scale_zero_freezes_the_scene():
    model = _model(0.0)
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
