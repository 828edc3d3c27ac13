"""Shared fixtures: procedural toy scenes, the real scenes in ../shared/scenes, GPU and real-scene skips."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from annotation.procedural import ProceduralScene, make_landscape, save_scene  # noqa: E402
from tests.pipeline_fixtures import isolate_models  # noqa: E402

isolate_models()  # no test sees the user's models or the network

SHARED_SCENES = Path(os.environ.get("MOM_SHARED_SCENES", ROOT.parent / "shared" / "scenes"))
PYTHON = sys.executable


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_real = pytest.mark.skip(reason=f"real scenes not found at {SHARED_SCENES}")
    has_cuda, has_real = _cuda(), SHARED_SCENES.is_dir()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "real" in item.keywords and not has_real:
            item.add_marker(skip_real)


@pytest.fixture(autouse=True)
def _seeded_rngs():
    """Every test starts from the same global RNG state, whatever ran before it (or in which order)."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def one_thread():
    """Run a test with one torch CPU thread: on a CPU busy with other jobs, OpenMP threads spin-wait and a
    small test slows 10x or more; results do not depend on it beyond rounding."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def toy() -> ProceduralScene:
    """A tiny procedural landscape (96x64) with its ground truth."""
    return make_landscape(96, 64, seed=0)


@pytest.fixture
def toy_scene(tmp_path, toy) -> Path:
    """A scene folder holding the toy scene's image.png and image.json."""
    return save_scene(toy, tmp_path / "scene")


def real_scene(name: str) -> Path:
    """Path of a real scene in ../shared/scenes (call from tests marked ``real``)."""
    path = SHARED_SCENES / name
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path
