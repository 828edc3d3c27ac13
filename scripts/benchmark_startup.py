"""What a stage pays before its work: imports and first uses, each timed in a fresh Python process.

    python scripts/benchmark_startup.py              # 3 processes per row
    python scripts/benchmark_startup.py --repeats 5

Prints a table of seconds (min / median / max over the processes). Where Python keeps no bytecode
cache (``PYTHONDONTWRITEBYTECODE=1``), every process compiles what it imports again: run it both ways.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.cli import make_parser, run_main  # noqa: E402

_GRAD = "p = torch.zeros(3, requires_grad=True); p.grad = torch.ones(3)\n"
ROWS = {
    "import torch": ("", "import torch"),
    "import annotation.stage (generate_mask.py)": ("", "import annotation.stage"),
    "import motion.stage (train_motion.py)": ("", "import motion.stage"),
    "import gaussians4d.stage (train_4DGS.py)": ("", "import gaussians4d.stage"),
    "import render.stage (render_4DGS.py)": ("", "import render.stage"),
    "torch.optim.Adam: first step": (
        "import torch\n" + _GRAD,
        "torch.optim.Adam([{'params': [p], 'lr': 1e-3}], fused=False).step()",
    ),
    "gaussians4d.adam.Adam: first step": (
        "import torch\nfrom gaussians4d.adam import Adam\n" + _GRAD,
        "Adam([{'params': [p], 'lr': 1e-3}], (0.9, 0.999), 1e-15, False).step()",
    ),
}


def _time(setup: str, timed: str) -> float:
    code = f"{setup}import time\nt = time.perf_counter()\n{timed}\nprint(time.perf_counter() - t)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = make_parser("Time imports and first uses in fresh processes.")
    parser.add_argument("--repeats", type=int, default=3, help="processes per row (1..50)")
    args = parser.parse_args(argv)
    repeats = min(max(args.repeats, 1), 50)
    print(f"| {'what':<44} | {'min s':>7} | {'median s':>8} | {'max s':>7} |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 10}|{'-' * 9}|")
    for name, (setup, timed) in ROWS.items():
        times = [_time(setup, timed) for _ in range(repeats)]
        print(f"| {name:<44} | {min(times):7.3f} | {statistics.median(times):8.3f} | {max(times):7.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
