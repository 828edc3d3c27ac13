"""gaussians4d/deformation.py: the HexPlane field (periodic time, sampling, gradients, regularisers)."""

from __future__ import annotations

import math

import pytest
import torch

from gaussians4d.deformation import HexPlaneDeformation, plane_tv, projective_coords, time_smoothness
from tests.gaussians4d.helpers import CFG, random_points, tiny_field


def test_field_shapes_and_identity_at_init():
    field = tiny_field(randomize=False)
    dx, dq, ds = field(random_points(), 0.3)
    assert dx.shape == (50, 3) and dq.shape == (50, 4) and ds.shape == (50, 3)
    assert torch.count_nonzero(dx) == 0 and torch.count_nonzero(dq) == 0 and torch.count_nonzero(ds) == 0


def test_field_is_exactly_periodic_in_time():
    field, pts = tiny_field(), random_points()
    with torch.no_grad():
        a, b = field(pts, 0.0), field(pts, 1.0)
        c, d = field(pts, 0.25), field(pts, 1.25)
        near_end = field.features(pts, 1 - 1e-6)
    for u, v in zip(a + c, b + d):
        assert torch.equal(u, v)
    # Continuity across the seam: just before t = 1 the features approach those at t = 0.
    assert torch.allclose(near_end, field.features(pts, 0.0), atol=1e-4)
    assert not torch.allclose(field.features(pts, 0.5), field.features(pts, 0.0), atol=1e-3)


def test_field_at_several_times_equals_each_time():
    field, pts = tiny_field(), random_points()
    times = [0.0, 0.2, 0.97]
    with torch.no_grad():
        batch = field(pts, times)
        assert [x.shape for x in batch] == [(3, 50, 3), (3, 50, 4), (3, 50, 3)]
        for b, t in enumerate(times):
            for x, y in zip(batch, field(pts, t)):
                torch.testing.assert_close(x[b], y, rtol=1e-6, atol=1e-7)


def test_plane_sampling_matches_naive_bilinear():
    field = tiny_field()
    plane = field.spatial[0]  # xy plane of level 0: [1, F, R, R], u along W (x), v along H (y)
    pts = random_points(7)
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
    field = tiny_field()
    dx, dq, ds = field(random_points(), 0.4)
    (dx.square().sum() + dq.sum() + ds.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in field.mlp_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in field.grid_parameters())


def test_field_rejects_bad_points():
    with pytest.raises(ValueError, match="points must be"):
        tiny_field()(torch.zeros(4, 2), 0.0)
    with pytest.raises(ValueError, match="lo and hi"):
        HexPlaneDeformation(CFG, torch.zeros(2), torch.ones(3), torch.eye(4))


def test_projective_coords_reference():
    w2c = torch.eye(4)
    w2c[:3, 3] = torch.tensor([0.5, -0.2, 1.0])
    pts = random_points(5)
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
    field = tiny_field()
    assert float(field.regularization(1.0, 1.0).detach()) > 0


def _naive_features(field: HexPlaneDeformation, pts: torch.Tensor, t: float) -> torch.Tensor:
    """The HexPlane features one plane at a time (torch.nn.functional.grid_sample per plane)."""
    import torch.nn.functional as F

    def sample(plane, u, v):
        grid = torch.stack([u, v], dim=-1).view(1, 1, -1, 2)
        return F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0].T

    p = field.normalized(pts)
    tt = torch.full((len(p),), t % 1.0 * 2 - 1)
    levels = []
    for level in range(len(field.config.grid_multires)):
        feat = torch.ones(len(p), field.config.grid_features)
        for k, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
            feat = feat * sample(field.spatial[3 * level + k], p[:, a], p[:, b])
        for axis in range(3):
            plane = field.temporal[3 * level + axis]
            feat = feat * sample(torch.cat([plane, plane[:, :, :1]], dim=2), p[:, axis], tt)
        levels.append(feat)
    return torch.cat(levels, dim=1)


def test_batched_planes_match_one_plane_at_a_time():
    """The level-batched sampling and regularisers equal the per-plane definitions."""
    field, pts = tiny_field(), random_points(200)
    with torch.no_grad():
        for t in (0.0, 0.3, 0.999):
            assert torch.allclose(field.features(pts, t), _naive_features(field, pts, t), rtol=1e-5, atol=1e-6)
        tv = sum(plane_tv(p) for p in field.spatial)
        smooth = sum(time_smoothness(p) for p in field.temporal)
        assert torch.allclose(field.regularization(1.0, 0.0), tv, rtol=1e-5)
        assert torch.allclose(field.regularization(0.0, 1.0), smooth, rtol=1e-5)


def test_feature_gradients_match_grid_sample_one_plane_at_a_time():
    """The time planes read as matrix products: the same gradients (planes and points) as grid_sample's."""
    field, pts = tiny_field(), random_points(150)
    with torch.no_grad():  # planes away from their initial constants, so every factor matters
        for plane in field.temporal:
            plane.add_(0.3 * torch.randn(plane.shape, generator=torch.Generator().manual_seed(4)))
    params = [*field.spatial, *field.temporal]
    for t in (0.0, 0.41, 0.97):
        x = pts.clone().requires_grad_(True)
        want = torch.autograd.grad(_naive_features(field, x, t).square().sum(), [x, *params])
        x = pts.clone().requires_grad_(True)
        got = torch.autograd.grad(field.features(x, t).square().sum(), [x, *params])
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-6)
    batch = field.features(pts, [0.2, 0.7])
    assert torch.allclose(batch[1], field.features(pts, 0.7), rtol=1e-6, atol=1e-7)


def test_chunked_product_equals_the_plain_one():
    from gaussians4d.deformation import _weights_times_rows

    g = torch.Generator().manual_seed(5)
    for n_points in (3, 1024, 1537):  # one chunk, whole chunks, a padded last chunk
        w = torch.rand(3, n_points, 16, generator=g, dtype=torch.float64, requires_grad=True)
        r = torch.rand(3, 16, 8, generator=g, dtype=torch.float64, requires_grad=True)
        got, want = _weights_times_rows(w, r), w @ r
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-12)
        ga = torch.autograd.grad(got.square().sum(), [w, r])
        gb = torch.autograd.grad(want.square().sum(), [w, r])
        assert all(torch.allclose(a, b, rtol=1e-10) for a, b in zip(ga, gb))
