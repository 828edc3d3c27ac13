"""The whole pipeline run once on a tiny procedural scene, for the bad-input, interrupt and determinism tests.

:func:`build_pipeline` runs generate_mask -> train_motion -> train_4DGS -> render_4DGS as subprocesses
(exactly what a user runs) with tiny options, and keeps a copy of the scene folder after each stage
("raw", "mask", "motion", "gaussians", "render"); tests copy the state they need instead of recomputing.
The ``pipeline`` fixture builds it once per test session.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "mask": "scripts/generate_mask.py",
    "motion": "train_motion.py",
    "gaussians": "train_4DGS.py",
    "render": "render_4DGS.py",
}
STAGES = tuple(SCRIPTS)  # in pipeline order
STATES = ("raw", *STAGES)  # a state = the scene folder after that stage ("raw" = the user's photo + labelme JSON)
SIZE = (96, 64)  # the photo (width, height)
# Tiny options: the whole pipeline takes about 15 s on a free 2-core CPU, mostly Python start-up.
TINY = {
    "mask": (),
    "motion": ("--n_views", "3", "--n_frames", "4", "--train_iteration", "10", "--threads", "1", "--seed", "0"),
    "gaussians": (
        "--preset", "cpu", "--flow_scale", "2", "--resolution", "0", "--max_points", "300",
        "--coarse_iterations", "6", "--fine_iterations", "6", "--checkpoint_every", "3", "--log_every", "3",
        "--grid_resolution", "4", "--time_resolution", "4", "--grid_features", "2", "--mlp_width", "4",
        "--preview_every", "0", "--eval_max_images", "1", "--densify_from", "100", "--device", "cpu",
    ),
    "render": ("--paths", "circle", "--fps", "10", "--device", "cpu"),
}  # fmt: skip
TIMEOUT_S = 600  # per subprocess; generous because the development machine is shared and often loaded


def isolate_models() -> None:
    """Keep the user's models and the network out of every test and every stage they start: offline mode,
    an empty hub cache and an empty ckpts folder, so ``--depth auto`` takes the prior everywhere."""
    import atexit

    base = Path(tempfile.mkdtemp(prefix="mom-tests-no-models-"))
    atexit.register(shutil.rmtree, base, True)
    os.environ.update(
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(base / "hf"), MOM_CKPTS=str(base / "ckpts")
    )


def stage_command(stage: str, scene: Path | str, *extra: str, tiny: bool = True) -> list[str]:
    """The command line of ``stage`` on ``scene``: the tiny options first, so that ``extra`` overrides them."""
    return [sys.executable, SCRIPTS[stage], "--input_dir", str(scene), *(TINY[stage] if tiny else ()), *extra]


def stage_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The subprocesses' environment: one OpenMP thread unless the caller chose (fast on a busy machine, and
    train_4DGS's MLP products are then the same whatever the user's OMP_NUM_THREADS says)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**env, **(extra or {})}


def run_stage(
    stage: str,
    scene: Path | str,
    *extra: str,
    tiny: bool = True,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``stage`` on ``scene`` as a subprocess from the repository root; ``check``: fail the test on error."""
    cmd = stage_command(stage, scene, *extra, tiny=tiny)
    proc = subprocess.run(cmd, cwd=ROOT, env=stage_env(env), capture_output=True, text=True, timeout=TIMEOUT_S)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd[1:])} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_stage(
    stage: str, scene: Path | str, *extra: str, tiny: bool = True, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``stage`` on ``scene`` without waiting (stdout discarded, stderr piped); ``env`` adds variables."""
    cmd = stage_command(stage, scene, *extra, tiny=tiny)
    return subprocess.Popen(cmd, cwd=ROOT, env=stage_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``, hidden ones included; folders map to "dir"."""
    folder = Path(folder)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        for name in dirnames:
            out[(base / name).relative_to(folder).as_posix() + "/"] = "dir"
        for name in filenames:
            out[(base / name).relative_to(folder).as_posix()] = sha256(base / name)
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Human-readable differences of two snapshots ([] when equal)."""
    lines = [f"removed {k}" for k in sorted(set(before) - set(after))]
    lines += [f"added {k}" for k in sorted(set(after) - set(before))]
    lines += [f"changed {k}" for k in sorted(set(before) & set(after)) if before[k] != after[k]]
    return lines


def rehash(scene: Path, rel: str, stages: tuple[str, ...] | None = None) -> None:
    """Make the manifests of ``stages`` (default: all) vouch for the current content of ``scene/rel``.

    Simulates an earlier stage that wrote a bad file *and* recorded it, so the test reaches the
    later stage's own validation of the file rather than the manifest's hash check.
    """
    digest = sha256(scene / rel)
    for path in sorted((scene / "manifests").glob("*.json")):
        if stages is not None and path.stem not in stages:
            continue
        manifest = json.loads(path.read_text())
        touched = False
        for key in ("inputs", "outputs"):
            if rel in manifest.get(key, {}):
                manifest[key][rel] = digest
                touched = True
        if touched:
            path.write_text(json.dumps(manifest, indent=1))


def manifest_outputs(scene: Path, stage: str) -> dict[str, str]:
    return json.loads((scene / "manifests" / f"{stage}.json").read_text())["outputs"]


@dataclass(frozen=True)
class Pipeline:
    """Copies of the tiny scene folder after each stage, under ``root/<state>``."""

    root: Path

    def state(self, name: str) -> Path:
        if name not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {name!r}")
        return self.root / name

    def copy(self, name: str, dest: Path) -> Path:
        """A private copy of state ``name`` at ``dest`` (which must not exist); returns ``dest``."""
        shutil.copytree(self.state(name), dest, symlinks=True)
        return Path(dest)


def build_pipeline(root: Path) -> Pipeline:
    """Run the four stages on a tiny procedural scene under ``root/work``; copy each state to ``root/<state>``."""
    from annotation.procedural import make_landscape, save_scene

    work = Path(root) / "work"
    save_scene(make_landscape(*SIZE, seed=0), work)
    shutil.copytree(work, Path(root) / "raw")
    for stage in STAGES:
        run_stage(stage, work)
        shutil.copytree(work, Path(root) / stage)
    shutil.rmtree(work)
    return Pipeline(Path(root))


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Pipeline:
    """The tiny pipeline, built once per session (the folder itself marks it built; tests only copy it)."""
    root = tmp_path_factory.getbasetemp() / "pipeline_states"
    done = root / "DONE"
    if not done.is_file():
        if root.exists():  # a half-built one from a failed attempt in this session
            shutil.rmtree(root)
        root.mkdir()
        build_pipeline(root)
        done.write_text("ok\n")
    return Pipeline(root)
