"""Start a stage that dies with its worker: ``python -m batch.child PARENT_PID SCRIPT ARGS...``.

A Dask worker that is killed (its nanny restarted it, the cluster was shut down, Ctrl-C on a remote
client) cannot wait for its stage subprocess, which would run on, holding ``SCENE/.lock``, with nobody
to collect its result. This shim asks Linux to send it SIGTERM when its parent goes
(``PR_SET_PDEATHSIG``, kept across ``exec``), then becomes the stage itself: the stage's own process, exit
code and output are unchanged. The stages are safe to kill at any point (docs/robustness.md). Elsewhere
than Linux it only execs the stage.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent_pid: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent went before the request took effect
        sys.exit(143)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m batch.child PARENT_PID SCRIPT [ARGS...]")
    _die_with_parent(int(argv[0]))
    os.execv(sys.executable, [sys.executable, *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
