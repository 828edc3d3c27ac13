"""The wrapper every command-line entry point runs under.

Known failures (``UserError``, out-of-memory, Ctrl-C) become one line on stderr and exit code 2
(130 for Ctrl-C); a traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from utils.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own code)
        sys.stderr.write(f"error: {message}. Fix: see `{self.prog} --help`.\n")
        raise SystemExit(2)


def make_parser(description: str, prog: str | None = None, epilog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser whose usage errors are one line, with the shared ``--debug`` flag."""
    parser = _Parser(
        description=description, prog=prog, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def config_parser(
    config_cls: type, prog: str, doc: str, defaults: dict[str, str] | None = None
) -> argparse.ArgumentParser:
    """The parser of a stage: one option per leaf of its config class (utils/config.py), ``--input_dir`` required.

    ``doc`` is the script's docstring: its first line is the description, the rest (usage examples) the epilog.
    """
    from utils.config import add_options

    first, _, rest = doc.strip().partition("\n")
    parser = make_parser(first, prog=prog, epilog=rest.strip("\n") or None)
    add_options(parser, config_cls, defaults, required=("input_dir",))
    return parser


def config_from_args(base: Any, args: argparse.Namespace) -> Any:
    """``base`` with every option the user typed applied, then validated (one line per bad value)."""
    from utils.config import given, validate, with_overrides

    config = with_overrides(base, given(args, type(base)))
    validate(config)
    return config


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


RESTARTS = "interrupted; the previous outputs are as they were (nothing half-written); re-run to start the stage again."


def run_main(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, interrupted: str = RESTARTS
) -> int:
    """Run ``main(argv)`` and turn known failures into one clear line and an exit code.

    ``interrupted``: the line shown on Ctrl-C (what a re-run does: restart, or resume).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return int(main(argv) or 0)
    except ModuleNotFoundError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(
            f"error: the Python package {exc.name!r} is missing. Fix: run `bash scripts/setup.sh` and use "
            ".venv/bin/python (or `source .venv/bin/activate`).\n"
        )
        return 2
    except UserError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {exc.line()}\n")
        return exc.exit_code
    except MemoryError:
        if debug:
            traceback.print_exc()
        sys.stderr.write("error: out of memory (CPU). Fix: lower --resolution or the point budget.\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(interrupted + "\n")
        return 130
    except OSError as exc:
        from utils.space import DISK_FULL, disk_full_line

        if exc.errno not in DISK_FULL:
            raise
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {disk_full_line(os.path.dirname(exc.filename or '') or '.')}\n")
        return 2
    except RuntimeError as exc:
        if not _is_oom(exc):
            raise
        if debug:
            traceback.print_exc()
        sys.stderr.write("error: out of GPU memory. Fix: lower --resolution or the Gaussian/point budget.\n")
        return 2
