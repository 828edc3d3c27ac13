"""scripts/benchmark_ssim.py and scripts/benchmark_compile.py: a table on good input, one line and exit 2 on bad."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import PYTHON, ROOT


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [PYTHON, str(ROOT / "scripts" / script), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("benchmark_ssim.py", ["--size", "12"]),
        ("benchmark_ssim.py", ["--batch", "0"]),
        ("benchmark_compile.py", ["--points", "0"]),
    ],
)
def test_bad_options_give_one_line_and_exit_2(script, args):
    done = _run(script, *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error:")


def test_ssim_benchmark_prints_its_rows_on_the_cpu():
    done = _run("benchmark_ssim.py", "--device", "cpu", "--size", "48x32", "--batch", "2", "--repeats", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    rows = table[2:]  # after the header and its rule
    assert [r.split("|")[1].strip() for r in rows] == ["autograd (before)", "PyTorch, gradient written out"]
    assert float(rows[1].split("|")[4]) < 1e-6  # the written-out gradient is autograd's
