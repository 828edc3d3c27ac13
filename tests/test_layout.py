"""The layout docs/architecture.md promises: a package per stage with one config and one run(config), thin
root scripts, small folders and functions, option names with one meaning."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from tests.conftest import ROOT

STAGES = {  # root script -> (stage package, its config class)
    "scripts/generate_mask.py": ("annotation", "MaskConfig"),
    "train_motion.py": ("motion", "MotionConfig"),
    "train_4DGS.py": ("gaussians4d", "TrainConfig"),
    "render_4DGS.py": ("render", "RenderConfig"),
}
PACKAGES = (
    "annotation",
    "motion",
    "gaussians4d",
    "render",
    "batch",
    "scene",
    "gaussian_renderer",
    "thirdparty",
    "utils",
)


def _project_files() -> list[Path]:
    skip = {".venv", ".git", "ckpts", "demo"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


@pytest.mark.parametrize("script", sorted(STAGES))
def test_each_stage_has_one_config_and_one_run(script):
    package, config_name = STAGES[script]
    config = getattr(importlib.import_module(f"{package}.config"), config_name)
    run = importlib.import_module(f"{package}.stage").run
    assert list(inspect.signature(run).parameters) == ["config"]
    assert "input_dir" in config.__dataclass_fields__
    lines = (ROOT / script).read_text().count("\n")
    assert lines < 150, f"{script} has {lines} lines: it should only build the config and call run"


def test_no_folder_has_more_than_12_modules():
    for package in PACKAGES:
        modules = list((ROOT / package).glob("*.py"))
        assert len(modules) <= 12, f"{package}/ has {len(modules)} modules"


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in _project_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long


def test_option_names_are_unique_and_resolution_means_one_thing():
    from utils.config import leaves

    for package, config_name in STAGES.values():
        config = getattr(importlib.import_module(f"{package}.config"), config_name)
        names = [leaf.name for leaf in leaves(config)]
        assert len(names) == len(set(names)), f"{config_name} repeats an option name"
        docs = {leaf.name: leaf.doc for leaf in leaves(config)}
        if "resolution" in docs:
            assert "N = longest side N pixels" in docs["resolution"] and "WxH" in docs["resolution"], config_name
