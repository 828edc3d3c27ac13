"""One run per scene at a time: ``SCENE/.lock`` while a stage works on the folder.

A stage holds an exclusive ``flock`` on the file, which the kernel drops when the process ends in any
way (a SIGKILL too), and writes who it is (process id, command) into it for the others' messages. A
second stage started on the same folder meanwhile stops with one line naming the holder. The file is
removed when the stage ends; one left by a killed run names a dead process, and the next stage takes it
over with a one-line notice. POSIX only (the project's machines); elsewhere the lock is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from utils.console import info
from utils.errors import UserError

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _acquire(path: Path) -> int:
    """An fd holding the exclusive lock on ``path`` (the file as it is now in the folder), or UserError."""
    import fcntl

    for _ in range(10):  # the holder may remove the file between our open and our lock: then retry
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise UserError(
                f"cannot write to {path.parent}", "make the scene folder writable or copy it elsewhere"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(path)
            who = f"`{holder.get('command', 'another stage')}` (process {holder.get('pid', '?')})"
            raise UserError(f"{path.parent} is in use by {who}", "wait until it finishes, or stop it") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise UserError(f"could not lock {path}", "retry; another run keeps starting and stopping on this scene")


@contextlib.contextmanager
def scene_lock(root: str | os.PathLike, command: str | None = None) -> Iterator[None]:
    """Hold ``root``/.lock while the block runs (see the module docstring)."""
    if sys.platform == "win32":  # no flock: run unlocked
        yield
        return
    path = Path(root) / LOCK_NAME
    fd = _acquire(path)
    try:
        previous = _holder(path)
        if previous.get("pid") and previous["pid"] != os.getpid() and not _alive(int(previous["pid"])):
            info(f"taking over {path}, left by a run that was stopped (process {previous['pid']})")
        me = {
            "pid": os.getpid(),
            "command": command or " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # releases the lock
