"""Progress bars with an ETA on stderr for the long jobs (replay, run --replay, fetch, the model fit, monitor).

Shown only when stderr is a terminal: logs, pipes and tests get no bar. Rich draws them; nothing here changes
what a job computes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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

__all__ = ["progress_bar", "tracked"]

T = TypeVar("T")

_stderr = Console(stderr=True, highlight=False)


@contextmanager
def progress_bar(total: int | None, description: str) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, description=None)`` for a bar over ``total`` steps with elapsed time and ETA."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_stderr, transient=True, disable=not _stderr.is_terminal) as bar:
        task = bar.add_task(description, total=total)

        def advance(count: int = 1, description: str | None = None) -> None:
            if description is None:
                bar.update(task, advance=count)
            else:
                bar.update(task, advance=count, description=description)

        yield advance


def tracked(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Yield ``items`` while a bar over ``total`` of them shows how far along they are."""
    with progress_bar(total, description) as advance:
        for item in items:
            yield item
            advance()
