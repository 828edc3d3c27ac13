"""gaussians4d/densify.py: growing, pruning, the cap, opacity resets, statistics of the two copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaussians4d import densify
from tests.gaussians4d.helpers import optimizer_with_state, tiny_trainable


def test_densify_grows_prunes_and_keeps_optimizer_in_step():
    model = tiny_trainable()
    opt = optimizer_with_state(model)
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
    model = tiny_trainable()
    opt = optimizer_with_state(model)
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

    model = tiny_trainable(6)
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
