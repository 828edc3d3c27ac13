"""Named points where a test can stop a stage, to kill it exactly there.

With ``MOM_HOLD_AT=<point>`` in its environment, a process that reaches :func:`hold` ``(<point>)`` writes
its process id to the file named by ``MOM_HOLD_FILE`` and waits until it is killed. The interrupt
tests use it to kill a stage at a chosen point of its writing, whatever the speed or the load of the
machine (racing a running process to a point is a test whose verdict depends on the load). Outside
the tests the variable is unset and :func:`hold` returns at once.

Points: ``mask:write`` (generate_mask, between its output files), ``motion:views`` and
``motion:motion3d`` (train_motion, in its staging folder), ``gaussians:checkpoint`` (train_4DGS, after
a checkpoint), ``render:video`` (render_4DGS, mid-video).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def hold(point: str) -> None:
    """Wait here until killed if ``MOM_HOLD_AT`` names ``point`` (see the module docstring)."""
    if os.environ.get("MOM_HOLD_AT") != point:
        return
    Path(os.environ["MOM_HOLD_FILE"]).write_text(f"{os.getpid()}\n")
    while True:
        time.sleep(3600)
