"""The shared CLI wrapper: one line, exit 2, traceback only with --debug."""

from __future__ import annotations

from utils.cli import make_parser, run_main
from utils.errors import UserError


def _main(argv):
    args = make_parser("test").parse_args(argv)
    raise UserError("the thing is broken", "mend the thing" if not args.debug else None)


def test_user_error_is_one_line_exit_2(capsys):
    assert run_main(_main, []) == 2
    err = capsys.readouterr().err
    assert err == "error: the thing is broken. Fix: mend the thing.\n"


def test_debug_shows_traceback(capsys):
    assert run_main(_main, ["--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_bad_option_is_one_line_exit_2(capsys):
    def main(argv):
        make_parser("test", prog="tool").parse_args(argv)

    try:
        run_main(main, ["--nope"])
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--nope" in err[0]


def test_oom_is_one_line(capsys):
    def main(argv):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    assert run_main(main, []) == 2
    assert "out of GPU memory" in capsys.readouterr().err
