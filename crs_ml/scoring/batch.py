"""The batch job behind ``crs-ml score``: a cohort folder in, one scores file out.

``score_to_file(model, data, out, ...)`` reads the cohort chunk by chunk
(:class:`~crs_ml.ingest.stream.CohortChunks`), scores each chunk as :func:`crs_ml.scoring.score.score`
does and appends it to a temporary file beside ``out``, renamed onto ``out`` only when every
chunk is written (:class:`crs_ml.files.AtomicTable`): a killed run leaves the previous file or
none, never half of one. While one chunk gets its SHAP values, drivers and file write, the
next one gets its statuses and features in a worker thread, and the one after it is read
and checked in a second (:func:`crs_ml.scoring.pipeline.draw_and_prepare`: two read-ahead
stages, one chunk ahead each). TreeSHAP of shallow boosters is a table lookup in this thread
(:mod:`crs_ml.modeling.treeshap`); xgboost's own, for deeper trees, releases the GIL and runs
on all cores but one, leaving that one to the workers. At most three chunks are in memory
(the one being explained, the one being featurised and the one being read), not the cohort
(Parquet input; see :mod:`crs_ml.ingest.stream`). The output keeps the patients table's order; an error while
reading a chunk names the chunk, its patients and the data folder.

The scores are the same, row for row, as ``score(model, load_cohort(data))``; rows rejected
by the checks go to the errors file (file, row, column, reason), written the same way.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crs_ml.errors import InputError
from crs_ml.files import AtomicTable, atomic_write, columns_frame
from crs_ml.ingest.stream import CohortChunks
from crs_ml.modeling.completeness import BANDS
from crs_ml.scoring.pipeline import draw_and_prepare
from crs_ml.scoring.score import (
    STATUSES,
    Scoring,
    as_bundle,
    begin,
    chunk_features,
    explain_chunk,
    scores_columns,
)

OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv")
ERROR_COLUMNS = ["file", "row", "column", "reason"]

__all__ = [
    "BatchResult",
    "default_shap_threads",
    "output_kind",
    "score_to_file",
    "without_input_rows",
]


@dataclass
class BatchResult:
    """What a batch run wrote and counted."""

    out: Path
    errors: Path | None
    n_patients: int
    status: dict[str, int]
    rejected_rows: int
    #: the highest-risk scored patients (``top`` asked for), highest first
    top: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: rows of variables not in the catalogue (not errors, so not in ``errors``), by name
    unknown_variables: dict[str, int] = field(default_factory=dict)
    #: scored patients per completeness band (full / partial / sparse)
    completeness: dict[str, int] = field(default_factory=dict)

    @property
    def unscored_fraction(self) -> float:
        """Share of the patients that could not be scored (status ``error``)."""
        return self.status.get("error", 0) / self.n_patients if self.n_patients else 0.0

    def failure(self, max_unscored_fraction: float | None = None) -> str | None:
        """Why the run should fail (exit :data:`~crs_ml.errors.EXIT_UNSCORED`), or None: no
        patient scored, or more than ``max_unscored_fraction`` of them in status error."""
        if self.n_patients and self.status.get("scored", 0) == 0:
            why = ", ".join(f"{k} {v}" for k, v in self.status.items() if v)
            return f"no patient could be scored ({why})"
        if max_unscored_fraction is not None and self.unscored_fraction > max_unscored_fraction:
            return (
                f"{self.status.get('error', 0)} of {self.n_patients} patients could not be "
                f"scored ({self.unscored_fraction:.1%} > --max-unscored-fraction "
                f"{max_unscored_fraction:g})"
            )
        return None


def output_kind(path: Path) -> str:
    """'parquet' or 'csv', from the file name."""
    name = path.name.lower()
    if not name.endswith(OUTPUT_SUFFIXES):
        raise InputError(f"--out {path}: the file name must end in .parquet or .csv")
    return "csv" if name.endswith(".csv") else "parquet"


def default_shap_threads() -> int:
    """xgboost threads for TreeSHAP in a batch run (boosters too deep for the lookup tables
    of :mod:`crs_ml.modeling.treeshap`): all cores but one, which is left to the reader and
    worker threads reading and featurising the next chunks (all cores oversubscribe them:
    README, "Speed")."""
    return max(1, (os.cpu_count() or 2) - 1)


def _top(held: pd.DataFrame | None, scores: pd.DataFrame, n: int) -> pd.DataFrame | None:
    if n <= 0:
        return None
    scored = scores[scores["status"] == "scored"]
    both = scored if held is None else pd.concat([held, scored], ignore_index=True)
    return both.sort_values("risk", ascending=False, kind="stable").head(n)


def without_input_rows(s: Scoring) -> Scoring:
    """``s`` once its features are built: the chunk's observation and event rows dropped
    (explaining and the scores table need only the patients, statuses, features and the
    rejected rows), so the chunk being explained does not hold them while the next is read."""
    c = s.cohort
    s.cohort = dataclasses.replace(c, observations=c.observations.head(0).copy(),
                                   events=c.events.head(0).copy())  # fmt: skip
    s.obs_parts = s.ev_parts = None
    return s


def score_to_file(
    model,
    data,
    out: Path,
    options=None,
    as_of=None,
    as_of_hours: float | None = None,
    errors: Path | None = None,
    chunk_size: int = 5000,
    top: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    shap_threads: int | None = None,
    read_ahead_chunks: int = 1,
) -> BatchResult:
    """Score the cohort at ``data`` into ``out`` (.parquet or .csv); see the module doc.

    ``errors``: where rejected input rows go (default ``<out stem>.errors.csv``, written
    only when some row was rejected). ``progress(stage, done, total)`` counts patients.
    ``shap_threads``: xgboost threads for TreeSHAP (default :func:`default_shap_threads`).
    ``read_ahead_chunks``: chunks featurised ahead in the worker thread, each read one chunk
    ahead of that in a reader thread (default 1: three chunks in memory; 0: no threads, one
    stage after the other).
    """
    out = Path(out)
    kind = output_kind(out)
    bundle = as_bundle(model)
    chunks = CohortChunks(data, options, chunk_size=chunk_size)
    counts = dict.fromkeys(STATUSES, 0)
    bands = dict.fromkeys(BANDS, 0)
    done, held = 0, None
    if progress:
        progress("scoring", 0, chunks.n_patients)

    def prepared(cohort):  # in the worker thread: statuses and features
        s = begin(bundle, cohort, as_of, as_of_hours, chunk_size)
        features = [chunk_features(s, k) for k in range(len(s.chunks))]
        return without_input_rows(s), features

    def where(k: int) -> str:
        first, last = k * chunks.chunk_size + 1, min((k + 1) * chunks.chunk_size,
                                                     chunks.n_patients)  # fmt: skip
        return (f"reading chunk {k + 1} of {len(chunks)} (patients {first:,}-{last:,} of the "
                f"patients table) of {data}")  # fmt: skip

    threads = default_shap_threads() if shap_threads is None else max(1, int(shap_threads))
    # reading and normalising (drawing a chunk, the reader thread) run one chunk ahead of
    # statuses and features (the worker thread): each is serial work of its own, and apart
    # they overlap (README, "Speed")
    prepared_chunks = draw_and_prepare(chunks, prepared, depth=read_ahead_chunks, where=where)
    with AtomicTable(out, kind) as table:
        for s, features in prepared_chunks:
            for k, X in enumerate(features):  # SHAP and drivers
                explain_chunk(s, k, X, threads)
            # the columns go to the file without a pandas frame (README, "Speed"); a frame
            # of the same columns only for --top
            columns = scores_columns(s)
            table.write(columns)
            for status, n in Counter(columns["status"]).items():
                counts[status] += n
            for band, n in Counter(b for b in columns["completeness_band"] if b).items():
                bands[band] += n
            if top > 0:
                held = _top(held, columns_frame(columns), top)
            done += len(columns["patient_id"])
            if progress:
                progress("scoring", done, chunks.n_patients)
            # this chunk is not held while the next one is awaited (peak memory)
            s = features = columns = X = None
    rejected = chunks.rejected
    errors_path = Path(errors) if errors is not None else None
    if errors_path is None and len(rejected):
        errors_path = out.with_name(out.name.split(".")[0] + ".errors.csv")
    if errors_path is not None:
        atomic_write(rejected.reindex(columns=ERROR_COLUMNS), errors_path, "csv")
    unknown = chunks.report.problem("unknown_variable") if chunks.report else None
    return BatchResult(out, errors_path, done, counts, int(len(rejected)),
                       held if held is not None else pd.DataFrame(),
                       dict(unknown.details) if unknown else {}, bands)  # fmt: skip
