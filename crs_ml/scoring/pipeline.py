"""Read ahead: the next chunks of a batch run prepared in one worker thread, boundedly.

``read_ahead(items, prepare, depth=1)`` yields ``prepare(item)`` for each item of ``items``,
in order. The items are drawn from ``items`` and prepared in one worker thread, at most
``depth`` ahead of the one the caller holds: with the default depth 1, two chunks are in
memory at any time (the caller's and the one being prepared), whatever the cohort's size.
``depth=0`` prepares each item in the caller's thread when it is asked for (no thread).

Stages chain: ``read_ahead(read_ahead(items, f), g)`` runs ``f`` and ``g`` in two threads,
each stage at most its depth ahead of the next. Give ``where`` to the last stage only: an
error of an earlier stage passes through it unchanged and is named there once.
``draw_and_prepare(items, prepare, depth, where)`` is that chain for a source whose drawing is
work of its own (the batch run: drawing a chunk reads and checks it, preparing it gives it
statuses and features): items are drawn in one thread, one ahead of the preparing one, so at
depth 1 three are in memory (the caller's, the one being prepared and the one being drawn).

Failures: an exception raised while drawing or preparing item ``k`` is raised in the caller
when it asks for item ``k``, after every earlier item was yielded. A project error
(:class:`~crs_ml.errors.CrsMlError`) comes back as the same type with ``where(k)`` put in
front of its message (the CLI prints only the message); any other exception is re-raised
as it is, with ``where(k)`` added as a note to its traceback (e.g. "reading chunk 3 of
20 (...)").

Stopping: when the caller stops early (an exception such as Ctrl-C or SIGTERM, which the CLI
turns into ``SystemExit``, or closing the generator), items not yet started are cancelled,
the one being prepared is finished (a chunk takes well under a second), and then ``items`` is
closed in that order, so its own clean-up (temporary spill files) runs before this returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from crs_ml.errors import CrsMlError, InputError

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["draw_and_prepare", "read_ahead", "with_context"]


def with_context(exc: BaseException, where: str) -> BaseException:
    """``exc`` saying ``where`` it happened: a project error rebuilt with the place in front
    of its message (same type); any other exception with a note added to its traceback."""
    if isinstance(exc, InputError):
        return InputError(f"{where}: {exc.reason}", file=exc.file, row=exc.row,
                          column=exc.column)  # fmt: skip
    if isinstance(exc, CrsMlError):
        try:
            return type(exc)(f"{where}: {exc}")
        except TypeError:  # a subclass with another signature: the base type keeps the text
            return CrsMlError(f"{where}: {exc}")
    exc.add_note(where)
    return exc


class _End:
    """The marker of an exhausted source."""


_END = _End()


def read_ahead(
    items: Iterable[T],
    prepare: Callable[[T], R],
    depth: int = 1,
    where: Callable[[int], str] | None = None,
) -> Iterator[R]:
    """``prepare(item)`` for each item, in order, prepared up to ``depth`` items ahead in one
    worker thread; ``where(k)`` names item ``k`` (0-based) in errors. See the module doc."""
    depth = int(depth)
    if depth < 0:
        raise ValueError(f"depth must be 0 or more (got {depth})")
    source = iter(items)

    def step(k: int):
        try:
            try:
                item = next(source)
            except StopIteration:
                return _END
            return prepare(item)
        except Exception as exc:
            placed = with_context(exc, where(k)) if where else exc
            if placed is exc:
                raise
            raise placed from exc

    try:
        if depth == 0:
            k = 0
            while (held := [step(k)])[0] is not _END:
                yield held.pop()  # handed over: not held while the next one is prepared
                k += 1
            return
        with ThreadPoolExecutor(1, thread_name_prefix="crs_ml_read_ahead") as pool:
            pending: deque = deque()
            k = 0
            try:
                for _ in range(depth):
                    pending.append(pool.submit(step, k))
                    k += 1
                while True:
                    held = [pending.popleft().result()]
                    if held[0] is _END:
                        return
                    # the next item starts only when one is handed over: at most depth ahead
                    pending.append(pool.submit(step, k))
                    k += 1
                    # handed over without a reference left in this frame: a stage before
                    # the caller's (the drawing one) must not keep the item while the next
                    # stage works on it and then waits (peak memory)
                    yield held.pop()
            finally:
                for future in pending:
                    future.cancel()  # not started: never runs; the running one finishes
    finally:
        close = getattr(source, "close", None)
        if close is not None:  # the worker has stopped: the source's clean-up runs now
            close()


def _drawn(item):
    """An item as the drawing stage hands it on (the drawing is the work)."""
    return item


def draw_and_prepare(
    items: Iterable[T],
    prepare: Callable[[T], R],
    depth: int = 1,
    where: Callable[[int], str] | None = None,
) -> Iterator[R]:
    """:func:`read_ahead` of ``prepare`` with the items drawn in a thread of their own, one
    ahead of the preparing thread (see the module doc); ``depth=0``: no thread at all."""
    if int(depth) == 0:
        return read_ahead(items, prepare, depth=0, where=where)
    return read_ahead(read_ahead(items, _drawn, depth=1), prepare, depth=depth, where=where)
