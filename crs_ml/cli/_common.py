"""Small helpers shared by the command modules: the default model, the ``--landmarks`` parser,
progress bars, consoles and JSON output (``write_json``, from :mod:`crs_ml.files`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from crs_ml.errors import InputError
from crs_ml.files import write_json

__all__ = ["DEFAULT_MODEL", "console", "parse_landmarks", "progress_bar", "write_json"]

#: the model every command uses unless told otherwise: the registry's champion
DEFAULT_MODEL = "models:/crs-severity@champion"


def parse_landmarks(text: str) -> list[float]:
    """``"24,48"`` -> [24.0, 48.0]; every landmark must be a number of hours > 0."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise InputError(f"--landmarks: '{part}' is not a number of hours") from None
        if not value > 0 or value == float("inf"):
            raise InputError(f"--landmarks: {part} must be hours > 0 after infusion")
        out.append(value)
    if not out:
        raise InputError("--landmarks: give at least one landmark, e.g. 24,48")
    return sorted(set(out))


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


def console(min_width: int = 150, **kwargs):
    """A rich console; when output is not a terminal (logs, CI) tables get ``min_width``
    columns. ``kwargs`` go to :class:`rich.console.Console` (e.g. ``soft_wrap``)."""
    from rich.console import Console

    c = Console(**kwargs)
    return c if c.is_terminal else Console(width=min_width, **kwargs)
