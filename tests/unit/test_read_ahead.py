"""The batch run's read-ahead (crs_ml.scoring.pipeline.read_ahead and draw_and_prepare, its
two-stage chain): order, bounded memory, errors surfaced with their place, and a clean stop
when the caller stops early."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from crs_ml.errors import InputError, ModelError
from crs_ml.scoring.pipeline import draw_and_prepare, read_ahead


class Source:
    """A generator of 0..n-1 that records how many items were drawn, in which thread, and
    whether its clean-up ran."""

    def __init__(self, n: int, fail_at: int | None = None, exc: Exception | None = None):
        self.n, self.fail_at, self.exc = n, fail_at, exc
        self.drawn = 0
        self.threads: set[str] = set()
        self.closed = False

    def __iter__(self):
        try:
            for k in range(self.n):
                if k == self.fail_at:
                    raise self.exc
                self.threads.add(threading.current_thread().name)
                self.drawn += 1
                yield k
        finally:
            self.closed = True


def where(k: int) -> str:
    return f"reading chunk {k + 1} (patients {10 * k + 1}-{10 * k + 10})"


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_every_item_once_in_order(depth):
    src = Source(25)
    out = list(read_ahead(src, lambda k: (k, k * k), depth=depth, where=where))
    assert out == [(k, k * k) for k in range(25)]
    assert src.closed


def test_items_are_prepared_in_the_worker_thread():
    src = Source(5)
    seen = list(read_ahead(src, lambda k: threading.current_thread().name))
    main = threading.current_thread().name
    assert all(name != main for name in seen)
    assert main not in src.threads
    # depth 0: no worker
    src0 = Source(3)
    assert set(read_ahead(src0, lambda k: threading.current_thread().name, depth=0)) == {main}


@pytest.mark.parametrize("depth", [1, 2])
def test_never_more_than_depth_items_ahead_of_the_caller(depth):
    """Memory stays bounded: however slow the caller, the worker draws at most ``depth``
    items past the one the caller holds (an unbounded queue would draw all 12 here)."""
    src = Source(12)
    ahead = []
    for k, _ in enumerate(read_ahead(src, lambda k: k, depth=depth)):
        time.sleep(0.03)  # a slow caller: time for the worker to run ahead if it could
        ahead.append(src.drawn - (k + 1))
    assert max(ahead) == depth  # it does read ahead (overlap), ...
    assert all(a <= depth for a in ahead)  # ... but never further


def test_a_project_error_comes_back_with_its_chunk_after_the_earlier_items():
    exc = InputError("value 'abc' is not a number", file="observations.parquet", row=7,
                     column="value")  # fmt: skip
    src = Source(10, fail_at=3, exc=exc)
    got = []
    with pytest.raises(InputError) as info:
        for item in read_ahead(src, lambda k: k, where=where):
            got.append(item)
    assert got == [0, 1, 2]  # every item before the failing one was handed over
    err = info.value
    assert str(err) == ("file observations.parquet, row 7, column 'value': reading chunk 4 "
                        "(patients 31-40): value 'abc' is not a number")  # fmt: skip
    assert (err.file, err.row, err.column) == ("observations.parquet", 7, "value")
    assert err.__cause__ is exc


def test_an_error_while_preparing_keeps_its_type_and_names_the_chunk():
    def prepare(k):
        if k == 2:
            raise ModelError("feature matrix lacks 3 model features")
        return k

    with pytest.raises(ModelError, match=r"^reading chunk 3 \(patients 21-30\): feature matrix"):
        list(read_ahead(Source(5), prepare, where=where))


def test_any_other_error_is_reraised_as_is_with_a_note():
    def prepare(k):
        if k == 1:
            raise KeyError("boom")
        return k

    with pytest.raises(KeyError) as info:
        list(read_ahead(Source(5), prepare, where=where))
    assert info.value.__notes__ == ["reading chunk 2 (patients 11-20)"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_caller_that_stops_stops_the_worker_and_closes_the_source(stop):
    """Ctrl-C (KeyboardInterrupt) or SIGTERM (SystemExit in the CLI) in the caller: no item is
    started after it, the worker thread is gone and the source's clean-up has run."""
    src = Source(1000)
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(stop):
        for k in read_ahead(src, lambda k: time.sleep(0.05) or k, depth=3):
            if k == 3:
                raise stop()
    assert src.closed
    # items 4-6 were queued; item 4 (being prepared) is finished, 5 and 6 never start
    assert src.drawn <= 5
    after = {t.name for t in threading.enumerate()}
    assert not {n for n in after - before if n.startswith("crs_ml_read_ahead")}


def test_depth_must_not_be_negative():
    with pytest.raises(ValueError, match="depth"):
        list(read_ahead([1], lambda k: k, depth=-1))


@pytest.mark.parametrize("depth", [0, 1])
def test_an_item_handed_over_is_not_held_while_the_next_is_awaited(depth):
    """Peak memory: once the caller has dropped chunk k and asks for k + 1, read_ahead keeps
    no reference to chunk k while k + 1 is being prepared."""

    class Chunk:
        pass

    refs, seen = [], []
    gate = threading.Event()

    def prepare(i):
        if i == 1:  # the second item is slow: the caller is waiting for it meanwhile

            def look():
                gc.collect()
                seen.append(refs[0]() is not None)
                gate.set()

            threading.Timer(0.2, look).start()
            assert gate.wait(10)
        chunk = Chunk()
        refs.append(weakref.ref(chunk))
        return chunk

    items = read_ahead(range(2), prepare, depth=depth)
    first = next(items)
    del first
    assert next(items) is refs[1]()
    assert seen == [False]  # the first item was gone while the second was prepared


def test_a_drawn_item_is_not_held_once_it_is_prepared():
    """Peak memory of the chain: once the preparing stage has turned drawn item k into its
    result, nothing keeps item k while that result waits for the caller (the drawing stage
    handed it over without keeping a reference)."""

    class Raw:
        pass

    drawn, prepared = [], threading.Event()

    def source():
        for _ in range(4):
            raw = Raw()
            drawn.append(weakref.ref(raw))
            yield raw
            del raw

    def prepare(raw):
        if len(drawn) >= 2 and raw is drawn[1]():
            prepared.set()
        return object()

    items = draw_and_prepare(source(), prepare, depth=1)
    first = next(items)  # the caller holds result 0; result 1 is prepared meanwhile
    assert prepared.wait(10)
    deadline = time.monotonic() + 5
    while drawn[1]() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert drawn[1]() is None  # drawn item 1 is gone while its result waits
    assert first is not None and len(list(items)) == 3


def test_chained_stages_run_in_two_threads_and_name_a_reading_error_once():
    src = Source(10, fail_at=4, exc=InputError("bad row", file="observations.parquet", row=3))
    got, drawn_in, prepared_in = [], set(), set()

    def drawn():
        for k in src:
            drawn_in.add(threading.get_ident())
            yield k

    def prepare(k):
        prepared_in.add(threading.get_ident())
        return k

    with pytest.raises(InputError) as info:
        for item in draw_and_prepare(drawn(), prepare, where=where):
            got.append(item)
    assert got == [0, 1, 2, 3]
    assert str(info.value).count("reading chunk") == 1
    assert "reading chunk 5 (patients 41-50): bad row" in str(info.value)
    # drawn in one worker thread, prepared in another, neither the caller's
    main = threading.get_ident()
    assert len(drawn_in) == 1 and len(prepared_in) == 1
    assert not drawn_in & prepared_in and main not in drawn_in | prepared_in
    assert src.closed


def test_chained_stages_stop_and_close_the_source():
    src = Source(1000)
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(KeyboardInterrupt):
        for k in draw_and_prepare(src, lambda k: time.sleep(0.02) or k, where=where):
            if k == 3:
                raise KeyboardInterrupt
    assert src.closed
    assert src.drawn <= 7  # the caller's, the one being prepared and the one being read
    after = {t.name for t in threading.enumerate()}
    assert not {n for n in after - before if n.startswith("crs_ml_read_ahead")}


def test_draw_and_prepare_at_depth_0_starts_no_thread():
    src = Source(4)
    main = threading.current_thread().name
    seen = list(draw_and_prepare(src, lambda k: threading.current_thread().name, depth=0))
    assert seen == [main] * 4 and src.threads == {main} and src.closed
