"""One console and one progress factory for the whole project (rich, to stderr)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True, highlight=False, soft_wrap=True)


def info(message: str) -> None:
    console.print(message)


_shown: list[str] = []


def warn(message: str) -> None:
    """A visible one-line warning (also kept for the manifest of the stage that shows it)."""
    _shown.append(message)
    console.print(f"[bold yellow]warning:[/] {message}")


def collect_warnings() -> list[str]:
    """A list that the warnings shown from now on are appended to (it starts empty)."""
    _shown.clear()
    return _shown


class _RateColumn(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):
        speed = task.finished_speed or task.speed
        return f"{speed:6.1f} it/s" if speed else "   -- it/s"


def progress() -> Progress:
    """A progress bar with count, iterations/s, elapsed time and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (falls back to plain periodic lines when not a terminal)."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    if console.is_terminal:
        with progress() as bar:
            task = bar.add_task(description, total=total, status="")
            for item in items:
                yield item
                bar.advance(task)
        return
    start = time.perf_counter()
    last, first = start, None  # the rate leaves out the first item: it carries the set-up (warm-up, caches)
    for i, item in enumerate(items, 1):
        yield item
        now = time.perf_counter()
        first = now if first is None else first
        if now - last > 5.0 or i == total:
            if i == 1:
                console.print(f"{description}: 1/{total} first in {now - start:.1f}s")
            else:
                rate = (i - 1) / max(now - first, 1e-9)
                console.print(f"{description}: {i}/{total} {rate:.1f} it/s ETA {(total - i) / rate:.0f}s")
            last = now
