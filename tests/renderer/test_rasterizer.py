"""CPU tests of the pure-PyTorch rasterizer (gaussian_renderer.render, backend="torch")."""

from __future__ import annotations

import math

import pytest
import torch

from gaussian_renderer import RenderOutput, render, screen_grad_norm
from gaussian_renderer import composite as composite_mod
from gaussian_renderer.projection import project_gaussians
from gaussian_renderer.sh import SH_C0, sh_basis, sh_to_rgb
from gaussian_renderer.testing import random_scene
from gaussian_renderer.torch_backend import camera_centres

W, H = 40, 24


def naive_render(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree=None, background=None):
    """Slow per-pixel reference: Gaussians one by one in depth order, gsplat's per-pixel rules, autograd."""
    n_cams, n = viewmats.shape[0], means.shape[0]
    p = project_gaussians(means, quats, scales, opacities, viewmats, Ks, width, height, 0.01, 1e10)
    if sh_degree is None:
        rgb = colors[None].expand(n_cams, n, 3)
    else:
        rgb = sh_to_rgb(sh_degree, colors, means, camera_centres(viewmats))
    jj, ii = torch.meshgrid(torch.arange(width), torch.arange(height), indexing="xy")
    px, py = jj.to(means.dtype) + 0.5, ii.to(means.dtype) + 0.5
    outs, depths, alphas = [], [], []
    for c in range(n_cams):
        trans = torch.ones(height, width, dtype=means.dtype)
        acc = torch.zeros(height, width, 4, dtype=means.dtype)
        done = torch.zeros(height, width, dtype=torch.bool)
        for g in torch.argsort(p.depths[c].detach()).tolist():
            r = p.radii_xy[c, g].to(means.dtype)
            if r[0] <= 0 or r[1] <= 0:
                continue
            m = p.means2d[c, g]
            md = m.detach()
            # gsplat's 16-pixel tile membership.
            x0, x1 = torch.floor(md[0] / 16 - r[0] / 16), torch.ceil(md[0] / 16 + r[0] / 16)
            y0, y1 = torch.floor(md[1] / 16 - r[1] / 16), torch.ceil(md[1] / 16 + r[1] / 16)
            in_tile = (jj // 16 >= x0) & (jj // 16 < x1) & (ii // 16 >= y0) & (ii // 16 < y1)
            ca, cb, cc = p.conics[c, g]
            dx, dy = m[0] - px, m[1] - py
            sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
            alpha = torch.clamp(opacities[g] * torch.exp(-sigma), max=0.999)
            ok = in_tile & (alpha >= 1 / 255) & ~done
            stop = ok & (trans * (1 - alpha) <= 1e-4)
            done, ok = done | stop, ok & ~stop
            w = torch.where(ok, alpha * trans, torch.zeros_like(alpha))
            acc = acc + w[..., None] * torch.cat([rgb[c, g], p.depths[c, g][None]])
            trans = torch.where(ok, trans * (1 - alpha), trans)
        bg = (
            torch.zeros(3, dtype=means.dtype)
            if background is None
            else background.reshape(-1, 3)[-1 if background.dim() == 1 else c]
        )
        outs.append(acc[..., :3] + trans[..., None] * bg)
        alphas.append(1 - trans)
        depths.append(acc[..., 3] / (1 - trans).clamp_min(1e-10))
    return torch.stack(outs), torch.stack(depths), torch.stack(alphas)


def one_camera(width=W, height=H, focal=30.0, dtype=torch.float64):
    viewmats = torch.eye(4, dtype=dtype)[None]
    ks = torch.tensor([[[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]]], dtype=dtype)
    return viewmats, ks


def gaussians(means, scales, opacities, colors, quats=None, dtype=torch.float64):
    means = torch.tensor(means, dtype=dtype)
    n = len(means)
    quats = torch.tensor([[1.0, 0, 0, 0]] * n, dtype=dtype) if quats is None else torch.tensor(quats, dtype=dtype)
    return dict(
        means=means,
        quats=quats,
        scales=torch.tensor(scales, dtype=dtype),
        opacities=torch.tensor(opacities, dtype=dtype),
        colors=torch.tensor(colors, dtype=dtype),
    )


@pytest.mark.parametrize("s", [0.3, 0.0])  # 0: a point, only the 0.3-pixel low-pass remains
def test_single_gaussian_matches_closed_form(s):
    z, op, f = 4.0, 0.8, 30.0
    g = gaussians([[0.0, 0.0, z]], [[s, s, s]], [op], [[0.2, 0.5, 0.9]])
    viewmats, ks = one_camera(focal=f)
    out = render(**g, viewmats=viewmats, Ks=ks, width=W, height=H)
    assert isinstance(out, RenderOutput)
    assert out.rgb.shape == (1, H, W, 3) and out.depth.shape == (1, H, W) and out.alpha.shape == (1, H, W)
    var = (f * s / z) ** 2 + 0.3  # EWA: J Sigma J^T plus the 0.3-pixel low-pass
    jj, ii = torch.meshgrid(torch.arange(W), torch.arange(H), indexing="xy")
    r2 = (jj + 0.5 - W / 2) ** 2 + (ii + 0.5 - H / 2) ** 2
    alpha = op * torch.exp(-0.5 * r2.double() / var)
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    torch.testing.assert_close(out.alpha[0], alpha, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.rgb[0], alpha[..., None] * torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64))
    torch.testing.assert_close(out.depth[0], torch.where(alpha > 0, z, 0.0).double())
    extent = min(3.33, math.sqrt(2 * math.log(255 * op)))
    assert out.radii.tolist() == [[math.ceil(extent * math.sqrt(var))]]
    torch.testing.assert_close(out.means2d[0, 0], torch.tensor([W / 2, H / 2], dtype=torch.float64))


def test_rotated_anisotropic_gaussian_matches_naive_reference():
    half = math.sqrt(0.5)
    g = gaussians([[0.3, -0.2, 3.0]], [[0.6, 0.1, 0.2]], [0.7], [[1.0, 0.2, 0.4]], quats=[[half, 0.1, 0.3, half]])
    viewmats, ks = one_camera()
    out = render(**g, viewmats=viewmats, Ks=ks, width=W, height=H)
    rgb, depth, alpha = naive_render(**g, viewmats=viewmats, Ks=ks, width=W, height=H)
    torch.testing.assert_close(out.rgb, rgb)
    torch.testing.assert_close(out.alpha, alpha)
    torch.testing.assert_close(out.depth, depth)
    assert out.alpha.max() > 0.5


def test_near_opaque_gaussian_hides_far_one_in_any_input_order():
    near = ([0.0, 0.0, 2.0], [0.4, 0.4, 0.4], 0.99, [1.0, 0.0, 0.0])
    far = ([0.0, 0.0, 5.0], [1.0, 1.0, 1.0], 0.99, [0.0, 1.0, 0.0])
    viewmats, ks = one_camera()
    outs = []
    for order in ([near, far], [far, near]):
        g = gaussians(*[list(col) for col in zip(*order)])
        outs.append(render(**g, viewmats=viewmats, Ks=ks, width=W, height=H))
    centre = (0, H // 2, W // 2)
    rgb = outs[0].rgb[centre]
    assert rgb[0] > 0.97 and rgb[1] < 0.02  # red in front, green barely visible
    assert abs(float(outs[0].depth[centre]) - 2.0) < 0.1
    torch.testing.assert_close(outs[0].rgb, outs[1].rgb)
    torch.testing.assert_close(outs[0].depth, outs[1].depth)


def test_early_termination_drops_the_gaussian_that_would_saturate():
    # alpha = 0.999 each: after the first T = 1e-3, the second would bring it to 1e-6 <= 1e-4, so it is skipped.
    # Wide Gaussians (30 px sigma) so that opacity * exp(-sigma) > 0.999 at the pixel centres next to the middle.
    g = gaussians([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]], [[2.0] * 3, [3.0] * 3], [1.0, 1.0], [[1.0, 0, 0], [0, 1.0, 0]])
    viewmats, ks = one_camera()
    out = render(**g, viewmats=viewmats, Ks=ks, width=W, height=H)
    centre = (0, H // 2, W // 2)
    assert float(out.alpha[centre]) == pytest.approx(0.999, abs=1e-9)
    torch.testing.assert_close(out.rgb[centre], torch.tensor([0.999, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("sh_degree", [None, 3])
def test_matches_naive_reference_with_gradients(sh_degree):
    scene = random_scene(120, W, H, n_cams=2, sh_degree=sh_degree, seed=1, dtype=torch.float64, size_factor=2.0)
    scene.requires_grad_()
    weights = torch.rand(2, H, W, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.0]], dtype=torch.float64)

    def loss(rgb, depth, alpha):
        return (rgb * weights).sum() + 0.1 * depth.sum() + alpha.sum()

    out = render(**scene.inputs(), background=bg)
    grads = torch.autograd.grad(loss(out.rgb, out.depth, out.alpha), scene.params())
    ref = naive_render(**scene.inputs(), background=bg)
    ref_grads = torch.autograd.grad(loss(*ref), scene.params())
    torch.testing.assert_close(out.rgb, ref[0])
    torch.testing.assert_close(out.depth, ref[1])
    torch.testing.assert_close(out.alpha, ref[2])
    assert out.alpha.mean() > 0.5  # the scene really overlaps (compositing is exercised)
    for name, got, want in zip(["means", "quats", "scales", "opacities", "colors"], grads, ref_grads):
        torch.testing.assert_close(got, want, msg=f"gradient of {name}")


@pytest.mark.parametrize(("width", "height"), [(37, 23), (1, 1), (3, 40)])
def test_image_sizes_that_are_not_tile_multiples(width, height):
    scene = random_scene(80, width, height, n_cams=2, seed=3, dtype=torch.float64, size_factor=2.0).requires_grad_()
    out = render(**scene.inputs())
    ref = naive_render(**scene.inputs())
    assert out.rgb.shape == (2, height, width, 3)
    torch.testing.assert_close(out.rgb, ref[0])
    grads = torch.autograd.grad(out.rgb.sum() + out.alpha.sum(), scene.params())
    ref_grads = torch.autograd.grad(ref[0].sum() + ref[2].sum(), scene.params())
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("budget", "cache"), [(20_000, 1 << 30), (20_000, 0), (1 << 30, 0)])
def test_batching_and_caching_do_not_change_the_result(monkeypatch, budget, cache):
    scene = random_scene(200, 48, 32, n_cams=2, seed=2, dtype=torch.float64).requires_grad_()
    out = render(**scene.inputs())
    grads = torch.autograd.grad(out.rgb.sum() + out.depth.sum(), scene.params())
    monkeypatch.setitem(composite_mod.ELEMENT_BUDGET, "cpu", budget)  # 20k: many small batches
    monkeypatch.setitem(composite_mod.CACHE_ELEMENTS, "cpu", cache)  # 0: the backward pass recomputes
    out2 = render(**scene.inputs())
    grads2 = torch.autograd.grad(out2.rgb.sum() + out2.depth.sum(), scene.params())
    torch.testing.assert_close(out.rgb, out2.rgb)
    for a, b in zip(grads, grads2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("sh_degree", [None, 1, 3])
def test_gradients_match_finite_differences(sh_degree):
    """Central differences along random directions, per parameter, in float64."""
    scene = random_scene(8, 24, 16, n_cams=2, sh_degree=sh_degree, seed=3, dtype=torch.float64, size_factor=3.0)
    scene.opacities.clamp_(0.2, 0.8)  # away from the 0.999 clamp and early termination
    gen = torch.Generator().manual_seed(1)
    weights = torch.rand(2, 16, 24, 5, dtype=torch.float64, generator=gen)

    def loss(**changes):
        out = render(**(scene.inputs() | changes))
        return (torch.cat([out.rgb, out.depth[..., None], out.alpha[..., None]], dim=-1) * weights).sum()

    for name in ("means", "quats", "scales", "opacities", "colors"):
        x = getattr(scene, name).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(**{name: x}), x)
        for _ in range(2):
            v = torch.randn(x.shape, dtype=torch.float64, generator=gen) * 1e-6
            if name in ("scales", "opacities"):
                v = v * x.detach()  # keep them positive / inside [0, 1]
            with torch.no_grad():
                numeric = (loss(**{name: x + v}) - loss(**{name: x - v})) / 2
            analytic = (grad * v).sum()
            assert float(analytic) == pytest.approx(float(numeric), rel=1e-4, abs=1e-9), name


def test_background_and_alpha():
    scene = random_scene(200, W, H, n_cams=2, seed=4)
    black = render(**scene.inputs())
    bg = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]])
    coloured = render(**scene.inputs(), background=bg)
    expected = black.rgb + (1 - black.alpha)[..., None] * bg[:, None, None, :]
    torch.testing.assert_close(coloured.rgb, expected)
    torch.testing.assert_close(coloured.alpha, black.alpha)
    shared = render(**scene.inputs(), background=bg[0])
    torch.testing.assert_close(shared.rgb[0], coloured.rgb[0])
    assert float(black.alpha.max()) <= 1.0 and float(black.alpha.min()) >= 0.0
    assert bool((black.depth[black.alpha == 0] == 0).all())


def test_several_cameras_equal_separate_calls():
    scene = random_scene(300, W, H, n_cams=3, seed=5, sh_degree=2)
    joint = render(**scene.inputs())
    for c in range(3):
        inputs = scene.inputs() | {"viewmats": scene.viewmats[c : c + 1], "Ks": scene.Ks[c : c + 1]}
        single = render(**inputs)
        torch.testing.assert_close(joint.rgb[c], single.rgb[0])
        torch.testing.assert_close(joint.depth[c], single.depth[0])
        torch.testing.assert_close(joint.alpha[c], single.alpha[0])
        assert torch.equal(joint.radii[c], single.radii[0])
        torch.testing.assert_close(joint.means2d[c], single.means2d[0])


def _two_sets(sh_degree=2, n=300, n_cams=2):
    """Two Gaussian sets of one size and their cameras (set b seen by row b), as a batched render takes them."""
    scenes = [random_scene(n, W, H, n_cams=n_cams, seed=11 + b, sh_degree=sh_degree) for b in range(2)]
    stacked = {k: torch.stack([s.inputs()[k] for s in scenes]) for k in ("means", "quats", "scales", "opacities")}
    stacked["colors"] = torch.stack([s.colors for s in scenes])
    stacked |= {"viewmats": torch.stack([s.viewmats for s in scenes]), "Ks": torch.stack([s.Ks for s in scenes])}
    return scenes, stacked | {"width": W, "height": H, "sh_degree": sh_degree}


def test_batched_render_equals_one_call_per_set():
    scenes, batch = _two_sets()
    means = batch["means"].clone().requires_grad_(True)
    joint = render(**(batch | {"means": means}))
    assert joint.rgb.shape == (2, 2, H, W, 3) and joint.radii.shape == (2, 2, 300)
    assert joint.means2d.shape == (2, 2, 300, 2)
    weights = torch.rand(2, 2, H, W, 3, generator=torch.Generator().manual_seed(0))
    (joint.rgb * weights).sum().backward()
    for b, scene in enumerate(scenes):
        m = scene.means.clone().requires_grad_(True)
        single = render(**(scene.inputs() | {"means": m}))
        (single.rgb * weights[b]).sum().backward()
        torch.testing.assert_close(joint.rgb[b], single.rgb)
        torch.testing.assert_close(joint.depth[b], single.depth)
        torch.testing.assert_close(joint.alpha[b], single.alpha)
        assert torch.equal(joint.radii[b], single.radii)
        torch.testing.assert_close(joint.means2d.grad[b], single.means2d.grad)
        torch.testing.assert_close(means.grad[b], m.grad)


def test_render_without_depth_gives_the_same_colours():
    scene = random_scene(300, W, H, n_cams=2, seed=12, sh_degree=1)
    full, colour_only = render(**scene.inputs()), render(**scene.inputs(), depth=False)
    assert colour_only.depth is None
    torch.testing.assert_close(colour_only.rgb, full.rgb)
    torch.testing.assert_close(colour_only.alpha, full.alpha)
    assert torch.equal(colour_only.radii, full.radii)


def test_batched_render_checks_its_shapes():
    _, batch = _two_sets(sh_degree=None)
    with pytest.raises(ValueError, match=r"viewmats must have shape \[2, \*, 4, 4\]"):
        render(**(batch | {"viewmats": batch["viewmats"][0]}))
    with pytest.raises(ValueError, match=r"quats must have shape \[2, 300, 4\]"):
        render(**(batch | {"quats": batch["quats"][0]}))
    with pytest.raises(ValueError, match="means must have shape"):
        render(**(batch | {"means": batch["means"][None]}))


def test_sh_degree_zero_equals_rgb_path():
    scene = random_scene(200, W, H, seed=6)
    sh = ((scene.colors - 0.5) / SH_C0)[:, None, :]
    rgb_out = render(**scene.inputs())
    sh_out = render(**(scene.inputs() | {"colors": torch.cat([sh, torch.randn(200, 3, 3)], 1), "sh_degree": 0}))
    torch.testing.assert_close(sh_out.rgb, rgb_out.rgb)


def test_sh_basis_is_orthonormal_on_the_sphere():
    dirs = torch.randn(400_000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    basis = sh_basis(3, dirs)
    gram = basis.T @ basis * (4 * math.pi / len(dirs))  # Monte Carlo integral over the sphere
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.02, rtol=0)


def test_culling_near_far_and_outside():
    g = gaussians(
        [[0.0, 0.0, -2.0], [0.0, 0.0, 0.005], [0.0, 0.0, 50.0], [100.0, 0.0, 3.0], [0.0, 0.0, 3.0]],
        [[0.3] * 3] * 5,
        [0.9] * 5,
        [[1.0, 1.0, 1.0]] * 5,
    )
    viewmats, ks = one_camera()
    out = render(**g, viewmats=viewmats, Ks=ks, width=W, height=H, far=20.0)
    assert out.radii.dtype == torch.int32 and out.radii.shape == (1, 5)
    assert out.radii[0, :4].tolist() == [0, 0, 0, 0] and out.radii[0, 4] > 0


def test_numpy_image_sizes_are_accepted():
    np = pytest.importorskip("numpy")
    scene = random_scene(50, W, H, seed=10)
    out = render(**(scene.inputs() | {"width": np.int64(W), "height": np.int32(H)}))
    torch.testing.assert_close(out.rgb, render(**scene.inputs()).rgb)


def test_empty_gaussian_set_renders_background():
    viewmats, ks = one_camera(dtype=torch.float32)
    empty = dict(
        means=torch.zeros(0, 3),
        quats=torch.zeros(0, 4),
        scales=torch.zeros(0, 3),
        opacities=torch.zeros(0),
        colors=torch.zeros(0, 3),
    )
    out = render(**empty, viewmats=viewmats, Ks=ks, width=W, height=H, background=torch.tensor([0.1, 0.2, 0.3]))
    assert out.rgb.shape == (1, H, W, 3)
    torch.testing.assert_close(out.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(1, H, W, 3))
    assert not out.alpha.any() and not out.depth.any()
    assert out.radii.shape == (1, 0) and out.means2d.shape == (1, 0, 2)


def test_screen_grad_norm():
    scene = random_scene(200, W, H, n_cams=2, seed=7).requires_grad_()
    out = render(**scene.inputs())
    with pytest.raises(ValueError, match="means2d"):
        screen_grad_norm(out, W, H)
    (out.rgb.mean()).backward()
    norm = screen_grad_norm(out, W, H)
    grad = out.means2d.grad
    assert grad is not None and norm.shape == (200,)
    per_cam = (grad * torch.tensor([W / 2 * 2, H / 2 * 2])).norm(dim=-1) * (out.radii > 0)
    expected = per_cam.sum(0) / (out.radii > 0).sum(0).clamp_min(1)
    torch.testing.assert_close(norm, expected)
    torch.testing.assert_close(screen_grad_norm(out, W, H, reduce="max"), per_cam.amax(0))
    assert bool((norm[(out.radii == 0).all(0)] == 0).all()) and norm.max() > 0


def test_screen_grad_norm_of_a_batched_render_counts_every_image():
    _, batch = _two_sets()
    out = render(**(batch | {"means": batch["means"].requires_grad_(True)}))
    out.rgb.mean().backward()
    grad, visible = out.means2d.grad.reshape(4, 300, 2), out.radii.reshape(4, 300) > 0
    per_image = (grad * torch.tensor([W / 2 * 4, H / 2 * 4])).norm(dim=-1) * visible
    torch.testing.assert_close(screen_grad_norm(out, W, H), per_image.sum(0) / visible.sum(0).clamp_min(1))


def _bad(**changes):
    scene = random_scene(10, W, H, n_cams=2, seed=8)
    return scene.inputs() | changes


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"means": torch.zeros(10, 2)}, ValueError, "means"),
        ({"means": [[0.0, 0.0, 1.0]]}, TypeError, "means"),
        ({"means": torch.zeros(10, 3, dtype=torch.int64)}, TypeError, "means"),
        ({"quats": torch.ones(9, 4)}, ValueError, "quats"),
        ({"quats": torch.zeros(10, 4)}, ValueError, "quats"),
        ({"scales": torch.ones(10, 3, dtype=torch.float64)}, TypeError, "scales"),
        ({"scales": -torch.ones(10, 3)}, ValueError, "scales"),
        ({"opacities": torch.ones(10, 1)}, ValueError, "opacities"),
        ({"opacities": torch.full((10,), 1.5)}, ValueError, "opacities"),
        ({"colors": torch.full((10, 3), float("nan"))}, ValueError, "colors"),
        ({"colors": torch.ones(10, 4, 3), "sh_degree": 2}, ValueError, "colors"),
        ({"colors": torch.ones(10, 16, 3), "sh_degree": 4}, ValueError, "sh_degree"),
        ({"colors": torch.ones(10, 3, device="meta")}, ValueError, "colors"),  # another device
        ({"viewmats": torch.eye(4)}, ValueError, "viewmats"),
        ({"viewmats": torch.zeros(0, 4, 4)}, ValueError, "viewmats"),
        ({"Ks": torch.eye(3)[None]}, ValueError, "Ks"),
        ({"Ks": torch.full((2, 3, 3), float("inf"))}, ValueError, "Ks"),
        ({"width": 0}, ValueError, "width"),
        ({"height": 12.5}, TypeError, "height"),
        ({"background": torch.ones(4)}, ValueError, "background"),
        ({"backend": "cuda"}, ValueError, "backend"),
        ({"backend": "gsplat"}, ValueError, "gsplat"),
        ({"near": 0.0}, ValueError, "near"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(changes, error, match):
    with pytest.raises(error, match=match):
        render(**_bad(**changes))


def test_projection_and_sh_match_gsplat_torch_reference():
    """Conventions cross-check on the CPU against gsplat's own pure-PyTorch twins (private API)."""
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    scene = random_scene(3000, 96, 64, n_cams=3, sh_degree=3, seed=9, dtype=torch.float64)
    scene.means[:300, 0] *= 3  # far outside the view: exercises the clamped Jacobian
    p = project_gaussians(
        scene.means, scene.quats, scene.scales, scene.opacities, scene.viewmats, scene.Ks, 96, 64, 0.01, 1e10
    )
    covars, _ = impl._quat_scale_to_covar_preci(scene.quats, scene.scales, compute_preci=False, triu=False)
    _, means2d, depths, conics, _ = impl._fully_fused_projection(scene.means, covars, scene.viewmats, scene.Ks, 96, 64)
    v = p.visible
    assert v.float().mean() > 0.5
    torch.testing.assert_close(p.means2d[v], means2d[v])
    torch.testing.assert_close(p.conics[v], conics[v])
    torch.testing.assert_close(p.depths[v], depths[v])
    campos = torch.inverse(scene.viewmats)[:, :3, 3]
    coeffs = scene.colors[None].expand(3, -1, -1, -1)
    want = impl._spherical_harmonics(3, scene.means[None] - campos[:, None], coeffs).add(0.5).clamp_min(0.0)
    got = sh_to_rgb(3, scene.colors, scene.means, camera_centres(scene.viewmats))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-7)  # gsplat's constants carry fewer digits
