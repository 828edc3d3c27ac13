"""Checkpoints of train_4DGS.py: every tensor of a run, so that a re-run resumes exactly where it stopped.

``gaussians/checkpoints/iter_NNNNNN.safetensors`` holds the parameters, the Adam moments, the
densification statistics and the random generator's state; ``iter_NNNNNN.json`` (written last, the
commit marker) the iteration, the loss curve, Adam's step counts and what the run was made with
(:meth:`gaussians4d.config.TrainConfig.resume_key`, the hash of stage 1's manifest).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from gaussians4d.adam import Adam
from gaussians4d.model import TrainableGaussians
from scene.io import atomic_path, read_json, write_json
from scene.paths import GAUSSIANS_CMD

CHECKPOINTS_KEPT = 2


def save_checkpoint(
    folder: Path, model: TrainableGaussians, optimizer, dstate: dict, gen: torch.Generator, meta: dict
) -> Path:
    """Write iter_NNNNNN.safetensors then its JSON (the commit marker); keep the last two; return the JSON path."""
    from safetensors.torch import save_file

    it = int(meta["iteration"])
    tensors = {f"model.{k}": v.detach() for k, v in model.per_gaussian().items()}
    tensors["model.moving"] = model.moving.to(torch.uint8)
    tensors.update({f"field.{k}": v.detach() for k, v in model.field.state_dict().items()})
    steps = {}
    for group in optimizer.param_groups:
        for j, p in enumerate(group["params"]):
            state = optimizer.state.get(p)
            if state:
                tensors[f"opt.{group['name']}.{j}.exp_avg"] = state["exp_avg"]
                tensors[f"opt.{group['name']}.{j}.exp_avg_sq"] = state["exp_avg_sq"]
                steps[f"{group['name']}.{j}"] = float(state["step"])
    tensors.update({f"densify.{k}": v for k, v in dstate.items()})
    tensors["rng"] = gen.get_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    stem = folder / f"iter_{it:06d}"
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp))
    write_json(stem.with_suffix(".json"), {**meta, "adam_steps": steps})
    for old in sorted(folder.glob("iter_*.json"))[:-CHECKPOINTS_KEPT]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return stem.with_suffix(".json")


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint whose JSON and tensors are both there (a killed write leaves no JSON)."""
    for path in sorted(folder.glob("iter_*.json"), reverse=True):
        if path.with_suffix(".safetensors").is_file():
            return path
    return None


def read_meta(path: Path) -> dict:
    return read_json(path, "checkpoint", GAUSSIANS_CMD)


def load_checkpoint(
    path: Path,
    model: TrainableGaussians,
    make_optimizer: Callable[[TrainableGaussians], Adam],
    gen: torch.Generator,
    device: torch.device,
) -> tuple[Adam, dict, dict]:
    """Restore ``model`` and ``gen``, and an optimizer made for the restored model; returns it, the densify
    state and the checkpoint's meta."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    tensors = load_file(str(path.with_suffix(".safetensors")), device=str(device))
    per = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    per["moving"] = per["moving"].bool()
    model.set_per_gaussian(per)
    model.field.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("field.")})
    optimizer = make_optimizer(model)
    for group in optimizer.param_groups:
        for j, p in enumerate(group["params"]):
            key = f"opt.{group['name']}.{j}"
            if f"{key}.exp_avg" in tensors:
                optimizer.state[p] = {
                    "step": torch.tensor(
                        float(meta["adam_steps"][f"{group['name']}.{j}"]),
                        device=p.device if group.get("fused") else "cpu",  # fused Adam keeps it on the device
                    ),
                    "exp_avg": tensors[f"{key}.exp_avg"],
                    "exp_avg_sq": tensors[f"{key}.exp_avg_sq"],
                }
    dstate = {k[8:]: v for k, v in tensors.items() if k.startswith("densify.")}
    gen.set_state(tensors["rng"].cpu())
    return optimizer, dstate, meta
