"""gaussians4d/adam.py against torch.optim.Adam: the same parameters and moments, to the bit."""

from __future__ import annotations

import pytest
import torch

from gaussians4d.adam import Adam


def _groups(seed: int):
    gen = torch.Generator().manual_seed(seed)
    shapes = {"means_n": [(50, 3)], "opacity_logits": [(50,)], "grid": [(2, 8, 4, 4), (2, 8, 4, 4)], "mlp": [(16, 8)]}
    return [
        {"name": name, "params": [torch.randn(s, generator=gen).requires_grad_() for s in group], "lr": 0.0}
        for name, group in shapes.items()
    ]


def _clone(groups):
    return [{**g, "params": [p.detach().clone().requires_grad_() for p in g["params"]]} for g in groups]


@pytest.mark.parametrize("fused", [False, True], ids=["single-tensor", "fused"])
def test_adam_matches_torch_optim_adam_to_the_bit(fused):
    ours_groups = _groups(0)
    ref_groups = _clone(ours_groups)
    betas = (0.9**4, 0.999**4)
    ours = Adam(ours_groups, betas=betas, eps=1e-15, fused=fused)
    ref = torch.optim.Adam(ref_groups, lr=0.0, betas=betas, eps=1e-15, fused=fused)
    gen = torch.Generator().manual_seed(1)
    for it in range(12):
        for k, (a, b) in enumerate(zip(ours.param_groups, ref.param_groups)):
            a["lr"] = b["lr"] = 0.0 if (k == 2 and it < 4) else 1e-2 / (1 + it)  # a frozen start, as the grid's
        for ga, gb in zip(ours.param_groups, ref.param_groups):
            for pa, pb in zip(ga["params"], gb["params"]):
                if ga["name"] == "mlp" and it % 3 == 1:  # a step without a gradient
                    continue
                grad = torch.randn(pa.shape, generator=gen) * 10 ** float(torch.randint(-3, 2, (), generator=gen))
                pa.grad, pb.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
        ours.zero_grad(set_to_none=True)
        ref.zero_grad(set_to_none=True)
    for ga, gb in zip(ours.param_groups, ref.param_groups):
        for pa, pb in zip(ga["params"], gb["params"]):
            assert torch.equal(pa, pb) and pa.grad is None
            sa, sb = ours.state[pa], ref.state[pb]
            assert float(sa["step"]) == float(sb["step"]) and sa["step"].device == sb["step"].device
            assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_adam_matches_torch_optim_adam_on_cuda():
    groups = [
        {**g, "params": [p.detach().cuda().requires_grad_() for p in g["params"]], "lr": 3e-3} for g in _groups(2)
    ]
    ref_groups = _clone(groups)
    ours = Adam(groups, betas=(0.9, 0.999), eps=1e-15, fused=True)
    ref = torch.optim.Adam(ref_groups, lr=3e-3, betas=(0.9, 0.999), eps=1e-15, fused=True)
    for _ in range(5):
        for ga, gb in zip(ours.param_groups, ref.param_groups):
            for pa, pb in zip(ga["params"], gb["params"]):
                grad = torch.randn_like(pa)
                pa.grad, pb.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
    for ga, gb in zip(ours.param_groups, ref.param_groups):
        for pa, pb in zip(ga["params"], gb["params"]):
            assert torch.equal(pa, pb)


def test_training_steps_import_no_torch_dynamo():
    """torch.optim would import torch._dynamo on its first use (1.5-1.7 s here, 5 s on the GPU machine)."""
    import subprocess

    from tests.conftest import PYTHON, ROOT

    code = (
        "import sys\n"
        "from tests.gaussians4d.helpers import optimizer_with_state, tiny_trainable\n"
        "optimizer_with_state(tiny_trainable())\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
    )
    done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
