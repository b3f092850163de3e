"""Reading a cohort patient chunk by patient chunk, so memory stays flat as the cohort grows.

``CohortChunks(source, options, chunk_size)`` reads the patients table whole (one row per
patient), then yields one normalised :class:`~crs_ml.cohort.Cohort` per chunk of at most
``chunk_size`` patients, in the order of the patients table. Each chunk is loaded by the
same code and rules as :func:`crs_ml.ingest.load.load_cohort`, so the rows of a chunk's cohort are
exactly the rows the whole load would give for those patients; after the iteration,
``report`` and ``rejected`` cover the whole cohort (row numbers are the input file's).

How the long tables (observations, events, ...) are split, by format:

- **Parquet** is streamed in record batches. A first pass reads only the ``patient_id``
  column. When the file is grouped by patient in the patients table's order (as extracts
  and the simulator write it), the first pass notes the row where each chunk starts and
  the second cuts the batches there, without reading the ids again. Otherwise the second
  pass appends each chunk's rows to its own temporary Arrow file (LZ4) and the chunks are
  read back one by one. Either way, memory holds one batch and one
  chunk, whatever the cohort's size.
- **CSV** (and Parquet with numeric-float ids) is read whole, then split: bounded memory
  needs Parquet input.

Rows naming a patient absent from the patients table travel with the chunk of the row
before them and are rejected there, as in a whole load.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.cohort import Cohort
from crs_ml.config import DataConfig
from crs_ml.errors import InputError
from crs_ml.ingest.load import check_patients, empty_table_checks, normalise
from crs_ml.ingest.problems import MAX_EXAMPLES, CheckReport, Collector, TableSummary
from crs_ml.ingest.secondary_tables import coded_text_of, text_of
from crs_ml.ingest.tables import (
    RawTable,
    check_mapping,
    from_arrow,
    locate_tables,
    map_columns,
    mapped_names,
    pandas_index_columns,
    read_table,
    typed_polars,
)
from crs_ml.ingest.values import factorize

#: problems about a file's columns, which every chunk reports: counted once
WHOLE_FILE = ("unused_columns", "unmapped_column")
#: rows per Parquet record batch read at a time
BATCH_ROWS = 262_144

__all__ = ["CohortChunks"]


@dataclass
class _Piece:
    """Rows of one table for one chunk: contract columns and 1-based source rows."""

    frame: pl.DataFrame
    source_row: np.ndarray


class CohortChunks:
    """The cohort at ``source`` as a sequence of cohorts of at most ``chunk_size`` patients.

    ``len()`` is the number of chunks and ``n_patients`` the number of patient rows, known
    before the iteration. ``report`` (a :class:`~crs_ml.ingest.problems.CheckReport` for the
    whole cohort) and ``rejected`` are filled in by a complete iteration. Structural
    problems (missing files or columns, duplicated patient ids) raise
    :class:`~crs_ml.errors.InputError` on construction, before any chunk is read.
    """

    def __init__(
        self,
        source,
        options: DataConfig | None = None,
        chunk_size: int = 5000,
        workdir: str | Path | None = None,
    ) -> None:
        if chunk_size < 1:
            raise InputError(f"chunk_size must be at least 1 (got {chunk_size})")
        self.options = options or DataConfig()
        check_mapping(self.options.column_mapping)
        self.source = source
        self.chunk_size = int(chunk_size)
        self.workdir = workdir
        self.paths = locate_tables(source)
        mapping = self.options.column_mapping
        self._patients = read_table(self.paths["patients"], "patients", mapping.get("patients"))
        check_patients(self._patients)
        ids = text_of(self._patients.frame, "patient_id")
        unique = pd.unique(ids[ids != ""])
        self._index = pd.Index(unique, dtype=object)
        self._lookup: pl.DataFrame | None = None  #: patient_id -> position, for spilling
        code = self._index.get_indexer(ids)
        # rows without an id are rejected with the first chunk
        self._patient_chunk = np.where(code >= 0, code // self.chunk_size, 0)
        self.n_chunks = max(-(-len(unique) // self.chunk_size), 1)
        self.n_patients = len(ids)
        self._plans = {t: _plan(t, p, mapping.get(t)) for t, p in self.paths.items()
                       if t != "patients"}  # fmt: skip
        self.report: CheckReport | None = None
        self.rejected: pd.DataFrame | None = None
        self.spilled: list[str] = []  #: tables that had to be spilled (not grouped by patient)

    def __len__(self) -> int:
        return self.n_chunks

    def _chunks(self, codes: np.ndarray, uniques, before: int = 0) -> np.ndarray:
        """Chunk of each id, given as codes into its distinct texts (each distinct id is
        looked up once: ~10x faster than a lookup per row). Unknown ids take the chunk of the
        row before them (``before`` for the first rows: the previous batch's last chunk)."""
        where = self._index.get_indexer(pd.Index(np.asarray(uniques, dtype=object), dtype=object))
        return self._code_chunks(np.where(codes >= 0, where[np.maximum(codes, 0)], -1), before)

    def _code_chunks(self, code: np.ndarray, before: int) -> np.ndarray:
        """Chunk of each row from its patient's position in the patients table (-1: unknown,
        which takes the chunk of the row before it, ``before`` for the first rows)."""
        chunk = np.where(code >= 0, code // self.chunk_size, -1)
        if (chunk < 0).any():
            last = np.maximum.accumulate(np.where(chunk >= 0, np.arange(chunk.size), -1))
            chunk = np.where(last >= 0, chunk[np.maximum(last, 0)], before)
        return chunk

    def _frame_chunks(self, frame: pl.DataFrame, before: int) -> np.ndarray:
        ids = coded_text_of(frame, "patient_id")
        return self._chunks(ids.codes, ids.uniques, before)

    def _batch_chunks(self, ids: pl.Series, before: int) -> np.ndarray:
        """:meth:`_chunks` of a record batch's typed ids in no order: one join against the
        patients (a batch of 262,144 shuffled rows holds ~150,000 distinct ids, and hashing
        them as Python objects took 3x as long)."""
        if self._lookup is None:
            self._lookup = pl.DataFrame({
                "patient_id": pl.Series(self._index.to_numpy(dtype=object), dtype=pl.String),
                "code": np.arange(len(self._index), dtype=np.int64),
            })  # fmt: skip
        code = (pl.DataFrame([ids.alias("patient_id")])
                .join(self._lookup, on="patient_id", how="left", maintain_order="left")
                .get_column("code").fill_null(-1).to_numpy())  # fmt: skip
        return self._code_chunks(code, before)

    def __iter__(self) -> Iterator[Cohort]:
        source = str(self.source) if isinstance(self.source, str | Path) else None
        merged = _MergedReport()
        with tempfile.TemporaryDirectory(prefix="crs_ml_chunks_", dir=self.workdir) as tmp:
            streams = {t: self._pieces(plan, Path(tmp)) for t, plan in self._plans.items()}
            rows = _positions(self._patient_chunk, self.n_chunks)
            for k in range(self.n_chunks):
                raws = {"patients": _subset(self._patients, rows[k], keep_malformed=k == 0)}
                for t, stream in streams.items():
                    piece, meta = next(stream)
                    first = k == 0  # whole-file extras (malformed CSV lines) go with chunk 0
                    raws[t] = RawTable(t, meta.file, meta.path, piece.frame, piece.source_row,
                                       len(piece.frame) + (meta.rows_read if first else 0),
                                       meta.unused_columns, meta.malformed if first else [],
                                       meta.encoding)  # fmt: skip
                cohort = normalise(raws, self.options, source, one_chunk=True)
                merged.add(cohort)
                yield cohort
                cohort = raws = None  # not held while the next chunk is read (peak memory)
        self.report = merged.report(source, self.options)
        self.rejected = merged.collector.rejected()

    def _pieces(self, plan: _Plan, tmp: Path):
        """Yield (piece, table meta) for chunk 0, 1, ... of one table. ``meta.rows_read``
        counts rows read but in no piece (malformed CSV lines)."""
        if plan.parquet is None:  # read whole, then split
            raw = read_table(plan.path, plan.table, plan.mapping)
            chunk = self._frame_chunks(raw.frame, before=0)
            extra = raw.rows_read - len(raw.frame)
            meta = RawTable(plan.table, raw.file, raw.path, raw.frame.head(0), raw.source_row[:0],
                            extra, raw.unused_columns, raw.malformed, raw.encoding)  # fmt: skip
            for pos in _positions(chunk, self.n_chunks):
                yield _Piece(_rows(raw.frame, pos), raw.source_row[pos]), meta
            return
        meta = RawTable(plan.table, plan.path.name, plan.path, plan.template,
                        np.empty(0, "int64"), 0, plan.unused, [], "parquet")  # fmt: skip
        starts = self._chunk_starts(plan)
        if starts is not None:
            yield from ((p, meta) for p in self._cut(_batches(plan), plan.template, starts))
        else:
            self.spilled.append(plan.table)
            yield from ((p, meta) for p in self._spill(plan, tmp / plan.table))

    def _chunk_starts(self, plan: _Plan) -> np.ndarray | None:
        """When the rows come grouped by chunk, in chunk order, the file row (0-based) where
        each chunk starts (``n_chunks + 1`` values, the last one the number of rows), found in
        a pass over the ids; None when they do not (the pass stops at the first row out of
        order). The second pass then cuts the batches at these rows, without the ids."""
        last, offset = 0, 0
        starts = np.zeros(self.n_chunks + 1, dtype=np.int64)
        for batch in plan.parquet.iter_batches(batch_size=BATCH_ROWS, columns=[plan.id_column]):
            raw = pl.from_arrow(batch.column(0))
            if len(raw) == 0:
                continue
            # a patient's rows come together: only the first row of each run of equal ids is
            # looked up (equal stored ids are equal ids), ~35x fewer than the rows
            first = raw.ne_missing(raw.shift(1)).to_numpy()
            first[0] = True
            head = np.flatnonzero(first)
            ids = pl.DataFrame([raw.gather(head).alias("patient_id")])
            codes, uniques = factorize(typed_polars(ids).get_column("patient_id"))
            chunk = self._chunks(codes, uniques.to_numpy().astype(object), before=last)
            if chunk[0] < last or np.any(np.diff(chunk) < 0):
                return None
            # chunks last + 1 .. chunk[-1] start in this batch, at the first row of a run
            ks = np.arange(last + 1, int(chunk[-1]) + 1)
            starts[ks] = offset + head[np.searchsorted(chunk, ks)]
            last = int(chunk[-1])
            offset += len(raw)
        starts[last + 1 :] = offset
        return starts

    def _cut(self, batches, template: pl.DataFrame, starts: np.ndarray) -> Iterator[_Piece]:
        """Pieces of a grouped table: batches cut at the file rows where a chunk starts."""
        k, held, offset = 0, [], 0
        for frame, src in batches:
            end = offset + len(frame)
            while k < self.n_chunks:
                a = max(int(starts[k]), offset) - offset
                b = min(int(starts[k + 1]), end) - offset
                if b > a:
                    held.append((frame.slice(a, b - a), src[a:b]))
                if starts[k + 1] <= end:  # chunk k is complete
                    yield _join(held, template)
                    held, k = [], k + 1
                else:
                    break
            offset = end
        for _ in range(k, self.n_chunks):
            yield _join(held, template)
            held = []

    def _spill(self, plan: _Plan, folder: Path) -> Iterator[_Piece]:
        """Pieces of an ungrouped table. Each record batch, as read, is put in chunk order
        and each chunk's rows appended to that chunk's temporary Arrow file (LZ4); then the
        chunks are read back one by one and typed like a batch (:func:`_typed`)."""
        import pyarrow as pa

        folder.mkdir(parents=True, exist_ok=True)
        index = pandas_index_columns(plan.parquet.schema_arrow)
        names = [c for c in plan.parquet.schema_arrow.names if c not in index]
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        writers: dict[int, object] = {}
        prev, offset = 0, 0
        try:
            for batch in plan.parquet.iter_batches(batch_size=BATCH_ROWS, columns=names):
                ids = pl.DataFrame(
                    [pl.from_arrow(batch.column(plan.id_column)).alias("patient_id")]
                )
                chunk = self._batch_chunks(_typed(ids, plan).get_column("patient_id"), prev)
                if chunk.size:
                    prev = int(chunk[-1])
                order = np.argsort(chunk, kind="stable")
                bounds = np.searchsorted(chunk[order], np.arange(self.n_chunks + 1))
                src = pa.array(np.arange(offset + 1, offset + len(batch) + 1, dtype="int64"))
                offset += len(batch)
                table = pa.Table.from_batches([batch]).append_column("_source_row", src)
                table = table.take(pa.array(order))
                for k in np.flatnonzero(np.diff(bounds)):
                    if k not in writers:
                        writers[k] = pa.ipc.new_file(folder / f"{k:06d}.arrow", table.schema,
                                                     options=options)  # fmt: skip
                    writers[k].write_table(table.slice(bounds[k], bounds[k + 1] - bounds[k]))
                batch = table = None
        finally:
            for writer in writers.values():
                writer.close()
        pa.default_memory_pool().release_unused()  # the batches' copies, before the chunks
        for k in range(self.n_chunks):
            if k not in writers:
                yield _join([], plan.template)
                continue
            f = folder / f"{k:06d}.arrow"
            part = pl.read_ipc(f)
            f.unlink()
            src = part.get_column("_source_row").to_numpy()
            part = part.drop("_source_row")  # (read_ipc keeps an empty column name)
            part, _ = map_columns(_typed(part, plan), plan.table, plan.mapping, plan.path.name)
            yield _Piece(part, src)
            part = None


@dataclass
class _Plan:
    """How one long table is read: streamed from Parquet (``parquet`` set) or whole."""

    table: str
    path: Path
    mapping: dict
    parquet: object = None  #: pyarrow ParquetFile when streamed
    id_column: str = ""  #: the file's column that becomes patient_id
    template: pl.DataFrame | None = None  #: the contract columns with their types, no rows
    unused: list | None = None


def _plan(table: str, path: Path, mapping) -> _Plan:
    """Open a Parquet table and check its columns (missing ones raise now); CSV, and ids
    stored as floats, are read whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    plan = _Plan(table, path, dict(mapping or {}))
    if not path.name.lower().endswith((".parquet", ".pq")):
        return plan
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        index = pandas_index_columns(schema)
        empty = typed_polars(from_arrow(schema.empty_table()).drop(index))
    except InputError:
        return plan
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(
            f"cannot read Parquet file ({type(exc).__name__}: {exc})", file=str(path)
        ) from None
    template, unused = map_columns(empty, table, plan.mapping, path.name)
    names = mapped_names(list(empty.columns), table, plan.mapping)
    site = list(empty.columns)[names.index("patient_id")]
    if pa.types.is_floating(pf.schema_arrow.field(site).type):
        return plan
    plan.parquet, plan.id_column, plan.template, plan.unused = pf, site, template, unused
    return plan


def _batches(plan: _Plan) -> Iterator[tuple[pl.DataFrame, np.ndarray]]:
    """(contract-column frame, 1-based source rows) per record batch of a Parquet file."""
    offset = 0
    path = plan.path
    index = pandas_index_columns(plan.parquet.schema_arrow)
    for batch in plan.parquet.iter_batches(batch_size=BATCH_ROWS):
        frame = _typed(from_arrow(batch).drop(index), plan)
        frame, _ = map_columns(frame, plan.table, plan.mapping, path.name)
        src = np.arange(offset + 1, offset + len(frame) + 1, dtype="int64")
        offset += len(frame)
        yield frame, src


def _typed(frame: pl.DataFrame, plan: _Plan) -> pl.DataFrame:
    """:func:`typed_polars` of rows of the plan's file, errors naming the file."""
    try:
        return typed_polars(frame)
    except InputError as exc:
        raise InputError(exc.reason, file=str(plan.path), row=exc.row, column=exc.column) from None
    except (UnicodeDecodeError, TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise InputError(
            f"a column cannot be read as text ({type(exc).__name__}: {exc})", file=str(plan.path)
        ) from None


def _rows(frame: pl.DataFrame, pos: np.ndarray) -> pl.DataFrame:
    return frame.select(pl.all().gather(pos))


def _join(held: list, template: pl.DataFrame) -> _Piece:
    if not held:
        return _Piece(template, np.empty(0, dtype="int64"))
    if len(held) == 1:
        frame, src = held[0]
        return _Piece(frame, np.asarray(src, dtype="int64"))
    # batches may type a column differently (integers with and without gaps): as pandas
    frame = pl.concat([f for f, _ in held], how="vertical_relaxed")
    return _Piece(frame, np.concatenate([s for _, s in held]).astype("int64"))


def _positions(chunk: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    order = np.argsort(chunk, kind="stable")
    bounds = np.searchsorted(chunk[order], np.arange(n_chunks + 1))
    return [order[bounds[k] : bounds[k + 1]] for k in range(n_chunks)]


def _subset(raw: RawTable, pos: np.ndarray, keep_malformed: bool) -> RawTable:
    return RawTable(raw.name, raw.file, raw.path, _rows(raw.frame, pos),
                    raw.source_row[pos], len(pos), raw.unused_columns,
                    raw.malformed if keep_malformed else [], raw.encoding)  # fmt: skip


class _MergedReport:
    """The whole cohort's check report and rejected rows, from its chunks' cohorts."""

    def __init__(self) -> None:
        self.collector = Collector()
        self.examples: dict[tuple[str, str], list] = {}
        self.totals: dict[str, list] = {}

    def add(self, cohort: Cohort) -> None:
        for name, t in cohort.report.tables.items():
            acc = self.totals.setdefault(name, [t.file, 0, 0, 0])
            acc[1] += t.rows_read
            acc[2] += t.rows_used
            acc[3] += t.rows_rejected
        for p in cohort.report.problems:
            key = (p.table, p.code)
            if key in self.examples and p.code in WHOLE_FILE:  # said by every chunk
                continue
            self.collector.add(p.table, p.code, p.severity, p.message, p.count, [], p.details)
            self.examples.setdefault(key, []).extend(p.examples)
        self.collector.add_rejected("all", cohort.rejected)

    def report(self, source, options: DataConfig) -> CheckReport:
        report = CheckReport(source=source, options=options.model_dump(mode="json"))
        for name, (file, read, used, rejected) in self.totals.items():
            report.tables[name] = TableSummary(name, file, read, used, rejected)
        empty_table_checks(self.collector, {name: t[2] for name, t in self.totals.items()})
        for key, p in self.collector.problems.items():  # the file's first rows, as a whole load
            rows = sorted(self.examples.get(key, []), key=lambda e: e.get("row") or 0)
            p.examples = rows[:MAX_EXAMPLES]
        report.problems = list(self.collector.problems.values())
        report.sort()
        return report
