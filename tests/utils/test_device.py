"""utils/device.py: the --device option and small host values moved to the device."""

from __future__ import annotations

import pytest
import torch

from utils.device import resolve_device, to_device
from utils.errors import UserError


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError):
        resolve_device("tpu")


def test_to_device_keeps_the_values():
    got = to_device([[1.5, -2.0], [0.25, 3.0]], "cpu")
    assert got.dtype == torch.float32 and got.tolist() == [[1.5, -2.0], [0.25, 3.0]]
    assert to_device([1, 2], "cpu", torch.int64).dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_device_on_cuda_does_not_synchronise():
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = to_device([0.5, 1.0, 2.0], "cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert got.is_cuda and got.cpu().tolist() == [0.5, 1.0, 2.0]
