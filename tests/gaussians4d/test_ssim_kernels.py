"""gaussians4d/ssim_kernels.py (Triton) against gaussians4d.losses' PyTorch SSIM: value and gradient.

On the CPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, which must be set before Triton
is imported: hence a subprocess); on CUDA, compiled, as the trainer runs them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess

import pytest
import torch

from tests.conftest import PYTHON, ROOT

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")

# Sizes: odd, narrower and lower than the window (every tap masked somewhere), and one image.
_CHECK = """
import torch
from gaussians4d import losses, ssim_kernels

def check(shape, device, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    y = (x + 0.25 * torch.rand(shape, generator=g)).clamp(0, 1)
    x, y = x.to(device), y.to(device)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    window = losses._gauss_1d(torch.device(device), torch.float32)
    got = ssim_kernels.ssim(xa, y, window, losses._C1, losses._C2)
    got.backward()
    want = losses.ssim_pytorch(xb, y)
    want.backward()
    assert abs(float(got) - float(want)) < 1e-6, (shape, float(got), float(want))
    assert float(xb.grad.abs().max()) > 1e-5
    diff = float((xa.grad - xb.grad).abs().max())
    assert diff < 1e-5 * float(xb.grad.abs().max()), (shape, diff)
    with torch.no_grad():  # no derivative maps kept
        assert abs(float(ssim_kernels.ssim(x, y, window, losses._C1, losses._C2)) - float(want)) < 1e-6
    same = ssim_kernels.ssim(y, y, window, losses._C1, losses._C2)
    assert abs(float(same) - 1) < 1e-5

for i, shape in enumerate([(2, 13, 17, 3), (1, 4, 7, 3), (3, 21, 9, 3)]):
    check(shape, DEVICE, i)
print("ok")
"""


@needs_triton
def test_kernels_match_the_pytorch_ssim_in_tritons_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    code = _CHECK.replace("DEVICE", "'cpu'")
    done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@needs_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_kernels_match_the_pytorch_ssim_on_cuda():
    code = _CHECK.replace("DEVICE", "'cuda'") + (
        "x = torch.rand(4, 360, 640, 3, device='cuda')\n"
        "assert losses._kernels(x.device) is ssim_kernels\n"  # the training loss takes the kernels on CUDA
        "v = losses.ssim(x, x.flip(1))\n"
        "assert abs(float(v) - float(losses.ssim_pytorch(x, x.flip(1)))) < 1e-5\n"
    )
    done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
