"""Stage manifests: what a stage read, wrote, with which config and versions, and how long it took.

A stage's outputs count as complete only once its manifest exists: it is written last. A later stage
calls :func:`require_stage`, which refuses outputs that are missing, modified or half-written, and
outputs whose own inputs have changed since (stale).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scene.io import read_json, write_json
from scene.paths import GAUSSIANS_CMD, MASK_CMD, MOTION_CMD, RENDER_CMD, ScenePaths
from scene.report import write_report
from utils.errors import UserError

STAGE_COMMANDS = {"mask": MASK_CMD, "motion": MOTION_CMD, "gaussians": GAUSSIANS_CMD, "render": RENDER_CMD}
MANIFEST_VERSION = 1


# A file's digest is trusted without reading it again while its stat key (size, mtime, ctime, inode) is the
# one recorded with the digest, as git and DVC trust theirs. Only keys of files settled for RACY_S before they
# were stat'ed are kept: a later write then always gives a later mtime/ctime, whatever the file system's
# timestamp granularity. Stage 1's folder is about 500 MB at 1280x720; without this every later stage, and
# every report, read it all again.
RACY_S = 0.1
_DIGESTS: dict[str, tuple[tuple[int, int, int, int], str]] = {}  # absolute path -> (stat key, sha256), this process


def stat_key(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _settled(key: tuple[int, int, int, int]) -> bool:
    return time.time_ns() - max(key[1], key[2]) > RACY_S * 1e9


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_with_key(path: Path) -> tuple[str, tuple[int, int, int, int] | None]:
    """(sha256, the stat key it may be trusted under, or None while the file is too recent to trust one)."""
    name = os.path.abspath(path)
    key = stat_key(path)
    hit = _DIGESTS.get(name)
    if hit is not None and hit[0] == key:
        return hit[1], key
    digest = _sha256(path)
    if not (_settled(key) and stat_key(path) == key):  # written lately, or while it was read
        return digest, None
    _DIGESTS[name] = (key, digest)
    return digest, key


def file_hash(path: Path) -> str:
    return hash_with_key(path)[0]


def _trust(path: Path, digest: str, recorded: Any) -> bool:
    """Whether ``path`` still holds ``digest``: from the stat key recorded with it when that still matches,
    else by reading the file."""
    if isinstance(recorded, list) and len(recorded) == 4:
        key = stat_key(path)
        if list(key) == recorded:
            _DIGESTS[os.path.abspath(path)] = (key, digest)
            return True
    return file_hash(path) == digest


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        elif p.is_file():
            out.append(p)
    return out


def hash_files(root: Path, paths: Iterable[Path], keys: dict[str, list[int]] | None = None) -> dict[str, str]:
    """{path relative to ``root``: sha256} for the given files and every file under the given folders; the stat
    keys the digests may be trusted under go into ``keys`` (same paths; files too recent for one are left out).

    Hashed on a few threads (hashlib releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    files = list(_files(paths))
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        hashed = list(pool.map(hash_with_key, files))
    out = {}
    for p, (digest, key) in zip(files, hashed):
        rel = p.relative_to(root).as_posix()
        out[rel] = digest
        if keys is not None and key is not None:
            keys[rel] = list(key)
    return out


def resources() -> dict[str, float]:
    """Peak memory of this process: CPU resident set (GB) and, when CUDA was used, GPU allocations (GB)."""
    import resource

    out = {"peak_cpu_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("numpy", "torch", "gsplat", "transformers", "diffusers"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


class StageRun:
    """Collects timings while a stage runs, then writes its manifest.

    >>> run = StageRun(scene, "motion", config, inputs=[scene.mask, scene.hints])
    >>> with run.step("depth"): ...
    >>> run.finish(outputs=[scene.motion.dir])
    """

    def __init__(
        self,
        scene: ScenePaths,
        stage: str,
        config: Any,
        inputs: Iterable[Path],
        rerun: str | None = None,
        started: float | None = None,
    ):
        """``config``: the stage's config dataclass (recorded as a plain dict) or a dict. ``rerun``: the command
        that runs this stage again with the same options (named by later stages' messages). ``started``: the
        ``time.perf_counter()`` the stage began at, when it did work (reading its inputs) before this run."""
        from utils.config import to_dict
        from utils.console import collect_warnings

        self.scene = scene
        self.stage = stage
        self.config = config if isinstance(config, dict) else to_dict(config)
        self.rerun = rerun or _cmd(scene, stage)
        self.warnings = collect_warnings()  # every warning the stage shows, recorded in info.warnings
        self.keys: dict[str, list[int]] = {}  # stat keys of the hashed files (see RACY_S)
        self.inputs = hash_files(scene.root, inputs, self.keys)
        self.timings: dict[str, float] = {}
        self.info: dict[str, Any] = {}
        self._start = time.perf_counter() if started is None else started

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def invalidate(self) -> None:
        """Remove this stage's manifest: its outputs are about to change."""
        self.scene.manifest(self.stage).unlink(missing_ok=True)

    def finish(self, outputs: Iterable[Path]) -> dict[str, Any]:
        """Write the manifest (last, after every output) and refresh ``SCENE/report.html``."""
        self.timings["total"] = time.perf_counter() - self._start
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "stage": self.stage,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "rerun": self.rerun,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": self.config,
            "inputs": self.inputs,
            "outputs": hash_files(self.scene.root, outputs, self.keys),
            "stat_keys": self.keys,
            "versions": versions(),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "resources": resources(),
            "info": self.info,
        }
        shown = [w for w in self.warnings if w not in self.info.get("warnings", [])]
        if shown:
            self.info["warnings"] = [*self.info.get("warnings", []), *shown]
        write_json(self.scene.manifest(self.stage), manifest)
        write_report(self.scene)
        return manifest


def read_manifest(scene: ScenePaths, stage: str) -> dict[str, Any] | None:
    path = scene.manifest(stage)
    if not path.is_file():
        return None
    data = read_json(path, "manifest", STAGE_COMMANDS[stage])
    if not isinstance(data, dict) or data.get("stage") != stage or "outputs" not in data:
        raise UserError(f"{path} is not a valid manifest", f"re-run {_cmd(scene, stage)}")
    return data


def _cmd(scene: ScenePaths, stage: str) -> str:
    return STAGE_COMMANDS[stage].replace("SCENE", str(scene.root))


def rerun_command(scene: ScenePaths, stage: str) -> str:
    """The command that re-runs ``stage`` with the options it was last run with (its manifest's ``rerun``),
    else the stage's plain command."""
    try:
        manifest = read_manifest(scene, stage)
    except UserError:
        manifest = None
    rerun = (manifest or {}).get("rerun")
    return rerun if isinstance(rerun, str) and rerun else _cmd(scene, stage)


def check_stage(scene: ScenePaths, stage: str, check_outputs: bool = True) -> dict[str, Any]:
    """The manifest of ``stage`` if it is complete, its outputs intact and its inputs unchanged; else UserError
    naming the command to re-run (with the options it was run with)."""
    manifest = read_manifest(scene, stage)
    if manifest is None:
        raise UserError(f"{scene.root} has no complete '{stage}' outputs", f"run {_cmd(scene, stage)} first")
    rerun = rerun_command(scene, stage)
    keys = manifest.get("stat_keys") if isinstance(manifest.get("stat_keys"), dict) else {}
    for key in ("inputs", "outputs") if check_outputs else ("inputs",):
        for rel, digest in manifest[key].items():
            path = scene.root / rel
            if not path.is_file():
                raise UserError(f"{path} is missing ({stage} outputs incomplete)", f"re-run {rerun}")
            if not _trust(path, digest, keys.get(rel)):
                what = "changed since the stage ran (stale outputs)" if key == "inputs" else "was modified"
                raise UserError(f"{path} {what}", f"re-run {rerun}")
    return manifest


def require_stage(scene: ScenePaths, stage: str, check_outputs: bool = True) -> dict[str, Any]:
    """The manifest of a finished ``stage``, after checking the whole chain back to the user's files: every
    stage up to it complete, with intact outputs and unchanged inputs. The first stage found broken is
    named, with the command that re-runs it (the later ones must follow)."""
    order = list(STAGE_COMMANDS)
    for earlier in order[: order.index(stage)]:
        try:
            check_stage(scene, earlier)
        except UserError as exc:
            later = ", then the later stages" if earlier != stage else ""
            raise UserError(exc.problem, f"{exc.fix}{later}") from None
    return check_stage(scene, stage, check_outputs)


def stale_stages(scene: ScenePaths) -> dict[str, str]:
    """{stage: the problem} for every finished stage whose chain is broken (for the report)."""
    out = {}
    for stage in STAGE_COMMANDS:
        if scene.manifest(stage).is_file():
            try:
                require_stage(scene, stage)
            except UserError as exc:
                out[stage] = exc.line()
    return out


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Build a stage's output folder beside ``final``, then swap it in only when complete.

    Until the swap, the previous outputs stay untouched; an interrupted run leaves only a
    ``.NAME.partial`` folder, removed by the next run.
    """
    final = Path(final)
    partial = final.parent / f".{final.name}.partial"
    old = final.parent / f".{final.name}.old"
    for leftover in (partial, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


def check_writable(folder: Path) -> None:
    """Fail early, before any work, if ``folder`` cannot be written."""
    # Mode bits are checked too: root may write anywhere, but a folder the user made read-only stays so.
    if not os.access(folder, os.W_OK | os.X_OK) or not os.stat(folder).st_mode & 0o222:
        raise UserError(f"cannot write to {folder}", "make the scene folder writable or copy it elsewhere")
