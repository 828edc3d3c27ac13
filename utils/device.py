"""The one place that turns a ``--device`` option into a torch device."""

from __future__ import annotations

from utils.errors import UserError


def resolve_device(name: str = "auto"):
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> a ``torch.device``."""
    import torch

    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r}", "use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unknown --device {name!r}", "use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} was asked but CUDA is not available", "use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: there are {torch.cuda.device_count()} GPU(s)", "use cuda:0 or auto")
    return device


def to_device(values, device, dtype=None):
    """A small tensor of host ``values`` (numbers, lists) on ``device`` without waiting for the GPU: on CUDA
    it is staged in pinned memory and copied asynchronously, where a copy from ordinary memory would wait
    for the work queued before it (a sync per call in a training loop)."""
    import torch

    host = torch.tensor(values, dtype=dtype or torch.float32)
    device = torch.device(device)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
