"""Small helpers shared by the command modules: progress bars, consoles and JSON output
(``write_json``, from :mod:`crs_ml.files`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from crs_ml.files import write_json

__all__ = ["console", "progress_bar", "write_json"]


@contextmanager
def progress_bar():
    """A rich progress display; yields ``update(stage, done, total)`` for library code."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


def console(min_width: int = 150):
    """A rich console; when output is not a terminal (logs, CI) tables get ``min_width``."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=min_width)
