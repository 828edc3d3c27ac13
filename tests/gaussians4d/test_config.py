"""gaussians4d/config.py: presets, validation, the strict loader of config.json."""

from __future__ import annotations

import pytest

from gaussians4d.config import TrainConfig, load_config, preset
from utils.config import to_dict
from utils.errors import UserError


def test_config_presets_validate_and_round_trip():
    cpu, gpu = preset("cpu"), preset("gpu")
    assert gpu.data.resolution is None and cpu.data.resolution == "256"
    assert load_config(to_dict(gpu)) == gpu
    with pytest.raises(UserError, match="flow_scale must be >= 0"):
        preset("cpu", flow_scale=-1.0)
    with pytest.raises(UserError, match="must be finite"):
        preset("cpu", flow_scale=float("inf"))
    with pytest.raises(UserError, match="sh_degree"):
        preset("cpu", sh_degree=4)
    with pytest.raises(UserError, match="unknown field"):
        load_config({"no_such_field": 1})
    with pytest.raises(UserError, match="must be an integer"):
        load_config({"data": {"max_points": "many"}})
    with pytest.raises(UserError, match="unknown preset"):
        preset("tpu")
    optim = TrainConfig().optim
    assert optim.total_iterations == optim.coarse_iterations + optim.fine_iterations
