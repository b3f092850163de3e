"""Landmark features: one row per (patient, landmark L) point, from the data visible at L.

The leakage guard lives in ONE place, :func:`visible_rows`: it joins a table (observations or
events) to the points and keeps only rows with ``hours <= landmark_h`` (result time at or
before L); for events it also cuts ``end_hours`` to L, because at L a running support is only
known to be running up to now. Every feature below is computed from its output (plus the
points and the time-invariant patient attributes); nothing else reads the raw observations or
events, so data after L cannot reach a feature at L.

The features are those DECLARED in :mod:`crs_ml.features.catalogue` (``feature_declarations``),
in that order; each declaration names the kernel (``aggregation``) that computes it, and the
kernels are the table :data:`KERNELS` below. The engine is polars (native threads, no Python
loop over patients): the visible numeric observations are sorted by (variable, point, hours,
source_row), each (point, variable) group's rows are gathered as lists by a ``group_by`` on
the sorted key, and polars' list kernels summarise them (on groups of one or two rows they
cost a fraction of aggregations inside the ``group_by``); slopes come from sufficient
statistics (n, sum t, sum t^2, sum v, sum tv) of times and values taken relative to the
group's last row, which keeps the sums small and the subtraction exact to rounding. The
pandas :class:`~crs_ml.cohort.Cohort` is read through Arrow (numeric columns without copies)
and the result is a pandas frame. Outcomes are never read, so the same code runs at training
and at scoring time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from crs_ml.cohort import Cohort, implausible, pandas_table
from crs_ml.config import FeatureConfig, LabelConfig
from crs_ml.errors import InputError
from crs_ml.features.catalogue import (
    Feature,
    catalogue_key,
    feature_catalogue,  # noqa: F401 - re-exported: callers import it from here
    feature_declarations,
    static_features,
)
from crs_ml.features.grading import FEVER_C, HYPOTENSION_SBP_MMHG, grade_summary
from crs_ml.variables import VARIABLES as VARIABLE_CATALOGUE

#: polars engine of the builder's queries (the one polars' eager methods use)
ENGINE = "in-memory"
#: on a table of fewer rows a query runs without polars' plan optimisation, whose fixed cost
#: (about a third of a one-patient query) buys nothing on a few rows (nor does the shared
#: sorted rows' caching); the results are the same either way
#: (tests/data/test_feature_parity.py builds both ways)
SMALL_QUERY_ROWS = 10_000


def _optimisations(rows: int) -> pl.QueryOptFlags:
    """The polars optimisations of a query over ``rows`` rows (see SMALL_QUERY_ROWS)."""
    return pl.QueryOptFlags.none() if rows < SMALL_QUERY_ROWS else pl.QueryOptFlags()


OBSERVATION_INPUT = ["patient_id", "hours", "variable", "value", "source_row", "out_of_range"]
EVENT_INPUT = ["patient_id", "hours", "end_hours", "event", "detail"]


# --------------------------------------------------------------------------- the guard
def visible_rows(
    table: pd.DataFrame,
    points: pl.DataFrame,
    columns: list[str],
    codes: dict[str, tuple[str, ...]] | None = None,
) -> pl.DataFrame:
    """THE leakage guard: ``table`` rows joined to ``points``, keeping hours <= landmark_h.

    ``table`` is a Cohort table (pandas; read through Arrow); ``points`` has columns point
    (0-based position), patient_id and landmark_h. Returns ``columns`` of the table (not
    patient_id) plus ``point`` and ``landmark_h``; a patient with several points gets its
    rows once per point. ``end_hours`` (events) is cut to the landmark: at L a running support
    is only known to run up to L (a missing end stays missing). Rows come in table order
    (repeated per point). A text column named in ``codes`` comes as the position of its value
    in the given names (null when not among them).

    The patients are matched through runs of equal patient_id (one run per patient in a
    Cohort, whose tables are sorted by patient): only the first id of each run is hashed
    (:func:`_row_points`, numpy: no join query, whose fixed cost dominates for one patient).

    An empty table (a patient without events) gives the empty result this function gave the
    first time for the same columns and types (kept: the conversions' fixed cost is most of a
    one-patient call).
    """
    if len(table) == 0:
        key = (tuple(table.columns), tuple(map(str, table.dtypes)), tuple(columns),
               tuple((codes or {}).items()), tuple(points.columns),
               tuple(map(str, points.dtypes)))  # fmt: skip
        out = _EMPTY_VISIBLE.get(key)
        if out is None:
            out = _EMPTY_VISIBLE[key] = _visible_rows(table, points, columns, codes)
        return out
    return _visible_rows(table, points, columns, codes)


#: visible_rows' result for an empty table, by its columns and types (polars frames are
#: not changed in place, so one can be handed out again)
_EMPTY_VISIBLE: dict[tuple, pl.DataFrame] = {}


def _visible_rows(table: pd.DataFrame, points: pl.DataFrame, columns: list[str],
                  codes: dict[str, tuple[str, ...]] | None) -> pl.DataFrame:  # fmt: skip
    """The body of :func:`visible_rows` (its result as a polars DataFrame)."""
    hours = table["hours"].to_numpy(dtype="float64")
    latest = points["landmark_h"].max() if len(points) else -np.inf
    keep = np.flatnonzero(hours <= latest)  # cheap first cut; the exact one is below
    pid = _arrow_strings(table["patient_id"])
    if len(keep) < len(hours):  # (a batch chunk as of its landmarks keeps every row: no copy)
        pid = pid.take(pa.array(keep))
    start = run_starts(pid)
    row, point = _row_points(pid, start, points["patient_id"])
    landmark = points["landmark_h"].to_numpy()[point]
    point = points["point"].to_numpy()[point]
    source = keep[row]  # each (row, point) pair's row of the table
    ok = hours[source] <= landmark  # THE cut: result time at or before L
    source, point, landmark = source[ok], point[ok], landmark[ok]
    every_row = len(source) == len(hours) and np.array_equal(source, np.arange(len(hours)))
    at = pa.array(source)

    def texts(column: str) -> pa.Array:  # the column's texts at ``source``
        strings = _arrow_strings(table[column])
        return strings if every_row else strings.take(at)

    data = {"hours": hours[source]}
    for c in columns:
        if c in ("patient_id", "hours"):
            continue
        if c in (codes or {}):
            names = _name_set(codes[c])  # type: ignore[index]
            data[c] = pl.from_arrow(pc.index_in(texts(c), value_set=names))
        elif c in STRING_COLUMNS:
            data[c] = pl.from_arrow(texts(c)).cast(pl.String)
        else:
            data[c] = table[c].to_numpy()[source]
    data["point"] = point
    data["landmark_h"] = landmark
    if "end_hours" in data:
        end = data["end_hours"]
        with np.errstate(invalid="ignore"):
            data["end_hours"] = np.where(np.isnan(end), end, np.minimum(end, landmark))
    return pl.DataFrame(data)


def run_starts(ids: pa.Array) -> np.ndarray:
    """True where a run of equal values of ``ids`` begins (the first row, and each row whose
    value differs from the row before; a null equals nothing, so each null starts a run).
    A Cohort's tables come in runs of one patient."""
    start = np.ones(len(ids), dtype=bool)
    if len(ids) > 1:
        start[1:] = ~pc.equal(ids[1:], ids[:-1]).fill_null(False).to_numpy(zero_copy_only=False)
    return start


@lru_cache(maxsize=64)
def _name_set(names: tuple[str, ...]) -> pa.Array:
    """``names`` as an Arrow array (built once per tuple of names)."""
    return pa.array(list(names), type=pa.large_string())


def _row_points(pid: pa.Array, start: np.ndarray, point_ids: pl.Series):
    """(row, point) pairs of equal patient_id: ``pid`` the rows' ids (runs of equal ids begin
    where ``start``), ``point_ids`` the points'. Rows in order, a row's points in point order;
    a null id matches nothing. Only the first id of each run and the points' ids are hashed."""
    first = np.flatnonzero(start)
    runs = pid.take(pa.array(first))
    if len(runs) == 1 and len(point_ids) == 1:  # one patient, one point: no Arrow calls
        matched = runs[0].as_py() == point_ids[0]  # a null id matches nothing
        rows = len(start) if matched else 0
        return np.arange(rows, dtype=np.int64), np.zeros(rows, dtype=np.int64)
    once = point_ids.n_unique() == len(point_ids)  # no patient has two points
    if once:
        wanted = point_ids.to_arrow().cast(runs.type)
    if once and len(runs) == len(point_ids) and len(runs) and runs.null_count == 0:
        if pc.all(pc.equal(runs, wanted)).as_py():
            # the k-th run is the k-th point's patient (a chunk scored at one landmark, in
            # the patients' order): no hashing
            return np.arange(len(start), dtype=np.int64), np.cumsum(start, dtype=np.int64) - 1
    if once:  # each run's point (if any) looked up in Arrow; a null id matches nothing
        found = pc.index_in(runs, value_set=wanted)
        run_point = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        per_row = run_point[np.cumsum(start, dtype=np.int64) - 1]
        row = np.flatnonzero(per_row >= 0)
        return row, per_row[row]
    run_ids = runs.to_numpy(zero_copy_only=False).astype(object)
    point_ids = point_ids.to_numpy()
    codes, uniques = pd.factorize(np.concatenate([run_ids, point_ids.astype(object)]))
    run_code, point_code = codes[: len(first)], codes[len(first) :]
    order = np.argsort(point_code, kind="stable")  # points grouped by id, in point order
    # points per id; the extra last entry (0 points) is that of code -1 (a null id)
    counts = np.append(np.bincount(point_code[point_code >= 0], minlength=len(uniques)), 0)
    begins = np.cumsum(counts) - counts
    code = run_code[np.cumsum(start, dtype=np.int64) - 1]  # each row's id
    matches = counts[code]
    row = np.repeat(np.arange(len(code), dtype=np.int64), matches)
    within = np.arange(len(row), dtype=np.int64) - np.repeat(np.cumsum(matches) - matches, matches)
    point = order[begins[code[row]] + within]
    return row, point


def _visible(table: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """:func:`visible_rows` for pandas frames (``point`` = position in ``points``)."""
    pts = _points_frame(points)
    return visible_rows(table, pts, list(table.columns)).to_pandas()


# --------------------------------------------------------------------------- conversion
STRING_COLUMNS = ("patient_id", "variable", "event", "detail")


def _arrow_strings(col: pd.Series) -> pa.Array:
    """A text column as an Arrow string array (no copy for Arrow-backed pandas strings);
    missing -> null, any other object as its text."""
    try:
        arr = pa.array(col, from_pandas=True)
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = arr.cast(pa.large_string())
    except (pa.ArrowException, TypeError):
        text = col.astype(object).where(col.isna(), col.astype(str))
        arr = pa.array(text.astype(object), from_pandas=True, type=pa.large_string())
    return arr


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Plan:
    """What a configuration needs, derived once from its declarations (cached)."""

    features: tuple[Feature, ...]
    names: tuple[str, ...]
    variables: tuple[str, ...]  #: variables summarised per (point, variable) group
    windows: tuple[float, ...]  #: slope windows
    pretoci: tuple[str, ...]  #: declared pre-tocilizumab statistics (max, min, last)
    pretoci_variables: tuple[int, ...]  #: their variables' codes
    fever: bool  #: the fever summaries of the temperature rows are needed
    #: the features by kernel: (aggregation, their column positions, the features), one block
    #: per aggregation and window
    blocks: tuple[tuple[str, np.ndarray, tuple[Feature, ...]], ...]
    #: the group summaries' queries (:func:`_summary_queries`) and the grading rows' (None when
    #: no feature needs the CRS state), as expressions built once
    summaries: tuple[_Query, ...] = ()
    grading: _Query | None = None


@dataclass(frozen=True)
class _Query:
    """One query of the sorted visible rows as polars expressions, built once per
    configuration (a one-patient call would spend more time building the expressions than
    polars spends running them): keep the rows ``keep`` (all when None), add the columns
    ``add``, then per gid (:func:`_group_stats`) either the statistics ``aggs`` of the
    columns ``lists`` gathered per gid as lists (``list.*`` expressions), or the columns
    ``last`` of each gid's last row; with none of these, the columns ``select`` of the rows.
    ``before_tocilizumab``: also keep only the rows before each point's first tocilizumab
    (data of the call, added then)."""

    keep: pl.Expr | None = None
    add: tuple[pl.Expr, ...] = ()
    lists: tuple[str, ...] = ()
    aggs: tuple[pl.Expr, ...] = ()
    last: tuple[pl.Expr, ...] = ()
    select: tuple[pl.Expr, ...] = ()
    before_tocilizumab: bool = False

    def rows(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """``frame``'s rows kept, with the columns added (or selected)."""
        frame = frame if self.keep is None else frame.filter(self.keep)
        frame = frame.with_columns(*self.add) if self.add else frame
        return frame.select(*self.select) if self.select else frame


_NEEDS_SCORES = ("measix", "easix")
_FEVER_KERNELS = {
    "fever_onset_h",
    "fever_onset_censored",
    "febrile_hours",
    "max_early",
    "high_fever_early",
}


@lru_cache(maxsize=64)
def _plan(config_json: str, catalogue: tuple) -> _Plan:
    config = FeatureConfig.model_validate_json(config_json)
    decl = feature_declarations(config)
    unknown = sorted({f.aggregation for f in decl} - set(KERNELS))
    if unknown:  # pragma: no cover - a declaration without code is a programming error
        raise AssertionError(f"features declared without a kernel: {unknown}")
    wanted = {f.variable for f in decl if f.variable in VARIABLE_CATALOGUE}
    if any(f.aggregation in _NEEDS_SCORES for f in decl):
        wanted |= {"ldh", "crp", "platelets", "creatinine"}
    if any(f.group == "crs_state" for f in decl):
        wanted |= {"temperature", "sbp"}
    variables = tuple(v for v in VARIABLE_CATALOGUE if v in wanted)
    pre = [f for f in decl if f.aggregation.startswith("pretoci_")]
    block: dict[tuple, list[int]] = {}
    for j, f in enumerate(decl):
        block.setdefault((f.aggregation, f.window_h), []).append(j)
    plan = _Plan(
        features=decl,
        names=tuple(f.name for f in decl),
        variables=variables,
        windows=tuple(sorted({f.window_h for f in decl if f.aggregation == "slope"})),  # type: ignore[type-var]
        pretoci=tuple(sorted({f.aggregation.removeprefix("pretoci_") for f in pre})),
        pretoci_variables=tuple(sorted({variables.index(f.variable) for f in pre})),
        fever=any(f.aggregation in _FEVER_KERNELS for f in decl),
        blocks=tuple(
            (agg, np.asarray(cols, dtype=np.intp), tuple(decl[j] for j in cols))
            for (agg, _), cols in block.items()
        ),
    )
    crs_state = any(f.group == "crs_state" for f in decl)
    return replace(plan, summaries=_summary_queries(plan, config),
                   grading=_grading_query(plan) if crs_state else None)  # fmt: skip


# --------------------------------------------------------------------------- per-group stats
class _Stats:
    """Per (point, variable) summaries as dense (variables x points) grids, built on demand
    from the group tables (each: gid + float64 statistic columns, NaN for null; gid =
    variable code x points + point is the cell's position in the flattened grid)."""

    def __init__(self, n: int, plan: _Plan):
        self.n, self.plan, self.nv = n, plan, len(plan.variables)
        self.code = {v: i for i, v in enumerate(plan.variables)}
        self._where: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._grids: dict[tuple[str, float], np.ndarray] = {}

    def add(self, table: pl.DataFrame) -> None:
        gid = table["gid"].to_numpy()
        for c in table.columns:  # float64 without nulls: each column's values as they are
            if c != "gid":
                self._where[c] = (gid, table.get_column(c).to_numpy())

    def grid(self, column: str, fill: float = np.nan) -> np.ndarray:
        if (column, fill) not in self._grids:
            grid = np.full(self.nv * self.n, fill, dtype="float64")
            if column in self._where:
                flat, values = self._where[column]
                grid[flat] = values
            self._grids[column, fill] = grid.reshape(self.nv, self.n)
        return self._grids[column, fill]

    def column(self, column: str, variable: str, fill: float = np.nan) -> np.ndarray:
        if variable not in self.code:
            return np.full(self.n, fill)
        return self.grid(column, fill)[self.code[variable]]

    def rows(self, column: str, variables: list[str], fill: float = np.nan) -> np.ndarray:
        """:meth:`column` of several variables: (variables x points)."""
        code = [self.code.get(v, -1) for v in variables]
        if min(code, default=0) < 0:
            return np.stack([self.column(column, v, fill) for v in variables])
        return self.grid(column, fill)[code]


#: each gid's last row (rows sorted by gid)
_IS_LAST = (pl.col("gid") != pl.col("gid").shift(-1)).fill_null(True)


def _relative_to_last() -> tuple[pl.Expr, pl.Expr]:
    """Hours and values relative to the last row of their group (dh, dv; expressions); rows
    sorted by gid. ``dh`` is 0 exactly when the hours equal the last row's."""
    h, v = pl.col("hours"), pl.col("value")
    return (
        h - pl.when(_IS_LAST).then(h).backward_fill(),
        v - pl.when(_IS_LAST).then(v).backward_fill(),
    )


def _summary_queries(plan: _Plan, config: FeatureConfig) -> tuple[_Query, ...]:
    """The queries of :func:`_group_stats`: what every group needs, then one per subset
    (rows before infusion, slope window, pre-tocilizumab rows, temperature rows) on that
    subset's rows only. A statistic is a ``list.*`` expression of the group's rows gathered
    as a list, not an aggregation inside the group_by: the groups hold one or two rows each
    (a point's variable), where each aggregation costs polars about 35 ms per 840,000 groups
    against a few for gathering and the list kernels (benchmarks/bench_features.py)."""
    v, h, lm = pl.col("value"), pl.col("hours"), pl.col("landmark_h")
    queries = [
        _Query(
            lists=("value", "hours"),
            aggs=(
                v.list.len().alias("n"),
                v.list.last().alias("last"),
                h.list.last().alias("hours_last"),
                v.list.max().alias("max"),
                v.list.min().alias("min"),
            ),
        ),
        _Query(keep=h < 0, last=(v.alias("baseline"),)),  # the last result before infusion
    ]
    rel_h, rel_v = _relative_to_last()
    dh, dv = pl.col("dh"), pl.col("dv")  # as lists
    for w in plan.windows:
        # a suffix of each group; sufficient statistics relative to the group's last row
        k = f"slope{w:g}"
        queries.append(
            _Query(
                keep=h > lm - w,
                add=(rel_h.alias("dh"), rel_v.alias("dv")),
                lists=("dh", "dv"),
                aggs=(  # products of the lists are element by element
                    dh.list.len().alias(f"{k}_n"),
                    dh.list.sum().alias(f"{k}_t"),
                    (dh * dh).list.sum().alias(f"{k}_tt"),
                    dv.list.sum().alias(f"{k}_v"),
                    (dh * dv).list.sum().alias(f"{k}_tv"),
                ),
            )
        )
    if plan.pretoci:
        stat = {"max": v.list.max(), "min": v.list.min(), "last": v.list.last()}
        queries.append(
            _Query(
                keep=pl.col("var").is_in(list(plan.pretoci_variables)),
                lists=("value",),
                aggs=tuple(stat[s].alias(f"pretoci_{s}") for s in plan.pretoci),
                before_tocilizumab=True,
            )
        )
    if plan.fever:
        post = h >= 0
        # each reading is carried forward to the next one (or to L); ties last 0 h
        nxt = pl.when(~_IS_LAST).then(pl.min_horizontal(h.shift(-1), lm)).otherwise(lm)
        febrile = post & (v >= FEVER_C)
        early = post & (h <= pl.min_horizontal(pl.lit(config.early_fever_window_h), lm))
        names = ("fever_onset", "febrile_hours", "temperature_max_early")
        queries.append(
            _Query(
                keep=pl.col("var") == plan.variables.index("temperature"),
                add=(
                    pl.when(febrile).then(h).alias("fever_onset"),
                    pl.when(febrile).then(nxt - h).alias("febrile_hours"),
                    pl.when(early).then(v).alias("temperature_max_early"),
                ),
                lists=names,
                aggs=(
                    pl.col("fever_onset").list.min(),
                    pl.col("febrile_hours").list.sum(),
                    pl.col("temperature_max_early").list.max(),
                ),
            )
        )
    return tuple(queries)


#: the sorted gid of a summary's rows, and its statistics as float64 with NaN for null
_SORTED_GID = pl.col("gid").set_sorted()
_AS_FLOAT = pl.exclude("gid").cast(pl.Float64).fill_null(np.nan)


def _group_stats(
    rows: pl.LazyFrame,
    plan: _Plan,
    n: int,
    toci_first: np.ndarray,
    size: int,
    also: tuple[pl.LazyFrame, ...] = (),
) -> tuple[_Stats, list[pl.DataFrame]]:
    """Summaries of the visible rows sorted by (gid, hours, source_row), gid = variable code
    x number of points + point: one ``group_by`` on the sorted gid for what every
    group needs, and one per subset (rows before infusion, slope window, pre-tocilizumab
    rows, temperature rows) on that subset's rows only (the plan's
    :func:`_summary_queries`: list statistics of the gathered rows, or the last row's
    columns, which needs no group_by); all of them, and the
    queries ``also``, one polars query (``collect_all``: the shared rows are computed once),
    optimised when ``size`` (rows before the cut) reaches SMALL_QUERY_ROWS. Returns the
    summaries and ``also``'s tables."""
    queries = []
    for q in plan.summaries:
        frame = q.rows(rows)
        if q.before_tocilizumab:
            tf = pl.Series(np.where(np.isnan(toci_first), np.inf, toci_first))
            frame = frame.filter(pl.col("hours") < pl.lit(tf).gather(pl.col("point")))
        if q.last:
            frame = frame.filter(_IS_LAST).select("gid", *q.last)
        else:
            frame = frame.with_columns(_SORTED_GID).group_by("gid", maintain_order=True)
            frame = frame.agg(*q.lists).select("gid", *q.aggs)
        queries.append(frame.with_columns(_AS_FLOAT))
    tables = pl.collect_all([*queries, *also], engine=ENGINE, optimizations=_optimisations(size))
    stats = _Stats(n, plan)
    for table in tables[: len(queries)]:
        stats.add(table)
    return stats, tables[len(queries) :]


def _sorted_observations(cohort: Cohort, plan: _Plan, points: pl.DataFrame) -> pl.DataFrame:
    """Visible numeric observations of the plan's variables with ``var`` (position in the
    plan) and ``gid``, sorted by (gid, hours, source_row).

    A Cohort's tables are sorted by patient, hours, variable and source_row, so the visible
    rows of each (point, variable) already come in time order: a stable sort by gid alone
    gives the (gid, hours, source_row) order, at about half a three-key sort's cost. Whether
    they did is checked on the result (each gid's rows in (hours, source_row) order), and
    a table out of that order (a Cohort built by hand) gets the three-key sort."""
    obs = cohort.observations
    flags = obs.get("out_of_range")
    if flags is None or flags.dtype != bool:  # a table built by hand: flags as loading gives
        obs = obs.assign(out_of_range=implausible(obs))
    vis = visible_rows(obs, points, OBSERVATION_INPUT, codes={"variable": plan.variables})
    query = (
        vis.lazy()
        .rename({"variable": "var"})
        # a value outside the catalogue's plausible range (a unit mix-up, a typing error) is
        # kept and flagged by loading but is no measurement: no feature reads it
        .filter(
            pl.col("var").is_not_null() & pl.col("value").is_not_nan() & ~pl.col("out_of_range")
        )  # fmt: skip
        .with_columns(gid=pl.col("var").cast(pl.Int64) * points.height + pl.col("point"))
        .sort("gid", maintain_order=True)
    )
    # one call: a call's fixed cost counts for one patient (whose few rows, unoptimised, are
    # then sorted twice, which costs less than a second call)
    rows, out_of_order = pl.collect_all(
        [query, query.select(_OUT_OF_TIME_ORDER)],
        engine=ENGINE,
        optimizations=_optimisations(len(cohort.observations)),  # as the summaries' queries
    )
    if out_of_order.item():
        rows = rows.sort(["gid", "hours", "source_row"], maintain_order=True)
    return rows


def _out_of_time_order() -> pl.Expr:
    """True when some row follows a row of its gid with later hours (or the same hours and
    a later source_row)."""
    gid, h, src = pl.col("gid"), pl.col("hours"), pl.col("source_row")
    back = (h < h.shift(1)) | ((h == h.shift(1)) & (src < src.shift(1)))
    return ((gid == gid.shift(1)) & back).any()


_OUT_OF_TIME_ORDER = _out_of_time_order()


# --------------------------------------------------------------------------- kernels
@dataclass
class _Context:
    """Everything a kernel may read: the visible data's summaries, never the raw tables."""

    n: int
    landmark: np.ndarray
    stats: _Stats
    first_event: dict[str, np.ndarray]
    crs: dict[str, np.ndarray]
    static: dict[str, np.ndarray]
    config: FeatureConfig

    def stat(self, column: str, features, fill: float = np.nan) -> np.ndarray:
        """The statistic ``column`` of each feature's variable: (features x points)."""
        return self.stats.rows(column, [f.variable for f in features], fill)

    def of(self, column: str, variable: str, fill: float = np.nan) -> np.ndarray:
        """The statistic ``column`` of one variable: one value per point."""
        return self.stats.column(column, variable, fill)

    def each(self, values: np.ndarray, features) -> np.ndarray:
        """One per-point column repeated for each feature: (features x points)."""
        return np.broadcast_to(values, (len(features), self.n))


def _slope(c: _Context, fs) -> np.ndarray:
    k = f"slope{fs[0].window_h:g}"  # a block holds features of one window
    n = c.stat(f"{k}_n", fs)
    st, stt = c.stat(f"{k}_t", fs), c.stat(f"{k}_tt", fs)
    sv, stv = c.stat(f"{k}_v", fs), c.stat(f"{k}_tv", fs)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (stv - st * sv / n) / (stt - st * st / n)
    # two distinct times in the window <=> some hours differ from the last row's (dh < 0)
    return np.where(st < 0, slope, np.nan)


def _change(c: _Context, fs) -> np.ndarray:
    last, base = c.stat("last", fs), c.stat("baseline", fs)
    if fs[0].aggregation == "difference":
        return last - base
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((last > 0) & (base > 0), np.log(last / base), np.nan)


def _fever_onset(c: _Context) -> np.ndarray:
    return c.of("fever_onset", "temperature")


def _high_fever_early(c: _Context, fs) -> np.ndarray:
    tmax = c.of("temperature_max_early", "temperature")
    with np.errstate(invalid="ignore"):
        return c.each(np.where(np.isnan(tmax), np.nan, tmax >= c.config.high_fever_c), fs)


def _febrile_now(c: _Context, fs) -> np.ndarray:
    tl = c.of("last", "temperature")
    with np.errstate(invalid="ignore"):
        return c.each(np.where(np.isnan(tl), np.nan, tl >= FEVER_C), fs)


def _score(c: _Context, fs) -> np.ndarray:
    out = np.empty((len(fs), c.n))
    for i, f in enumerate(fs):
        stat = f.variable  # "baseline" or "last"
        ldh, plt = c.of(stat, "ldh"), c.of(stat, "platelets")
        with np.errstate(invalid="ignore", divide="ignore"):
            if f.aggregation == "measix":
                v = ldh * (c.of(stat, "crp") / 10.0) / plt
            else:
                v = ldh * c.of(stat, "creatinine") / plt
        out[i] = np.where(np.isfinite(v), v, np.nan)
    return out


def _first_events(c: _Context, fs) -> np.ndarray:
    none = np.full(c.n, np.nan)
    return np.stack([c.first_event.get(f.variable, none) for f in fs])


_Kernel = Callable[[_Context, tuple[Feature, ...]], np.ndarray]
#: aggregation (as declared in the catalogue) -> the code that computes it, for a block of
#: features with that aggregation (and window): a (features x points) array
KERNELS: dict[str, _Kernel] = {
    "baseline": lambda c, fs: c.stat("baseline", fs),
    "last": lambda c, fs: c.stat("last", fs),
    "max": lambda c, fs: c.stat("max", fs),
    "min": lambda c, fs: c.stat("min", fs),
    "log_ratio": _change,
    "difference": _change,
    "slope": _slope,
    "count": lambda c, fs: c.stat("n", fs, 0.0),
    "hours_since_last": lambda c, fs: c.landmark - c.stat("hours_last", fs),
    "measured": lambda c, fs: (c.stat("n", fs, 0.0) > 0).astype("float64"),
    "pretoci_max": lambda c, fs: c.stat("pretoci_max", fs),
    "pretoci_min": lambda c, fs: c.stat("pretoci_min", fs),
    "pretoci_last": lambda c, fs: c.stat("pretoci_last", fs),
    "fever_onset_h": lambda c, fs: c.each(
        np.where(np.isnan(_fever_onset(c)), c.landmark, _fever_onset(c)), fs
    ),
    "fever_onset_censored": lambda c, fs: c.each(np.isnan(_fever_onset(c)).astype("float64"), fs),
    "febrile_hours": lambda c, fs: c.each(c.of("febrile_hours", "temperature", 0.0), fs),
    "max_early": lambda c, fs: c.each(c.of("temperature_max_early", "temperature"), fs),
    "high_fever_early": _high_fever_early,
    "febrile_now": _febrile_now,
    "oxygen_level": lambda c, fs: c.each(c.crs["oxygen_level"], fs),
    "vasopressor_level": lambda c, fs: c.each(c.crs["vasopressor_level"], fs),
    "astct_grade_so_far": lambda c, fs: c.each(c.crs["astct_grade_so_far"], fs),
    "hours_since_crs_onset": lambda c, fs: c.each(c.crs["hours_since_crs_onset"], fs),
    "given": lambda c, fs: (~np.isnan(_first_events(c, fs))).astype("float64"),
    "hours_since_first": lambda c, fs: c.landmark - _first_events(c, fs),
    "static": lambda c, fs: np.stack([c.static[f.name] for f in fs]),
    "landmark": lambda c, fs: c.each(c.landmark.astype("float64"), fs),
    "measix": _score,
    "easix": _score,
}


# --------------------------------------------------------------------------- other inputs
def _first_per_point(vis_ev: pl.DataFrame, n: int) -> dict[str, np.ndarray]:
    """Hours of the first visible event of each kind per point (NaN when none)."""
    if vis_ev.height == 0:
        return {}
    # numpy, not a polars group_by: a few rows per chunk, and one patient's call would pay
    # a query's fixed cost twice
    code, names = pd.factorize(vis_ev.get_column("event").to_numpy())
    ok = code >= 0
    first = np.full((len(names), n), np.inf)
    at = (code[ok], vis_ev.get_column("point").to_numpy()[ok])
    np.minimum.at(first, at, vis_ev.get_column("hours").to_numpy()[ok])
    first[np.isinf(first)] = np.nan
    return {str(name): first[k] for k, name in enumerate(names)}


def _grading_query(plan: _Plan) -> _Query:
    """The visible rows grading needs (fevers and low sbp after infusion) as point, hours,
    variable, value."""
    ti, si = plan.variables.index("temperature"), plan.variables.index("sbp")
    var = pl.col("var")
    v = pl.col("value")
    keep = (pl.col("hours") >= 0) & (
        ((var == ti) & (v >= FEVER_C)) | ((var == si) & (v < HYPOTENSION_SBP_MMHG))
    )
    return _Query(
        keep=keep,
        select=(
            pl.col("point"),
            pl.col("hours"),
            pl.when(var == ti)
            .then(pl.lit("temperature"))
            .otherwise(pl.lit("sbp"))
            .alias("variable"),
            pl.col("value"),
        ),
    )


def _crs_state(rows: pl.DataFrame, vis_ev: pl.DataFrame, lm: np.ndarray,
               settings: LabelConfig) -> dict:  # fmt: skip
    """CRS state at L: the ASTCT grading (:mod:`crs_ml.features.grading`, with the model's
    ``settings``, those of its labels) run on the visible rows only (``rows``, of
    :func:`_grading_query`, and the visible events with end_hours cut to L)."""
    n = len(lm)
    if not (rows.height or vis_ev.height):  # nothing to grade: no point in the summary
        none = np.full(n, np.nan)
        zero = np.zeros(n)
        return {"oxygen_level": zero, "vasopressor_level": zero.copy(),
                "astct_grade_so_far": zero.copy(), "hours_since_crs_onset": lm - none}  # fmt: skip
    st = grade_summary(
        pandas_table(rows),
        pandas_table(vis_ev),
        key="point",
        until=pd.Series(lm),
        settings=settings,
    )
    st = st.reindex(np.arange(n))
    return {
        "oxygen_level": st["oxygen_level"].fillna(0).to_numpy("float64"),
        "vasopressor_level": np.minimum(st["vasopressors"].fillna(0).to_numpy("float64"), 2),
        "astct_grade_so_far": st["max_grade"].fillna(0).to_numpy("float64"),
        "hours_since_crs_onset": lm - st["crs_onset_hours"].to_numpy("float64"),
    }


def _static(cohort: Cohort, points: pl.DataFrame) -> dict:
    """Time-invariant patient attributes of each point (see static_features); a patient_id
    listed twice in the patients table takes its last row."""
    pts = cohort.patients
    text = _arrow_strings(pts["patient_id"]).to_numpy(zero_copy_only=False).astype(object)
    wanted = points["patient_id"].to_numpy()
    if len(text) == len(wanted) and (text == wanted).all() and len(set(text)) == len(text):
        # the points are the patients, once each and in order (a chunk scored at its
        # landmarks, one patient): no lookup
        return static_features(pts, np.arange(len(text), dtype=np.int64))
    ids = pd.Index(text, dtype=object)
    keep = np.flatnonzero(~ids.duplicated(keep="last"))  # a repeated id: its last row
    found = ids[keep].get_indexer(pd.Index(wanted, dtype=object))
    row = np.where(found >= 0, keep[np.maximum(found, 0)], -1)
    if (row < 0).any():
        bad = wanted[int(np.flatnonzero(row < 0)[0])]
        raise InputError(
            f"patient '{bad}' of the landmark points is not in the patients table",
            file="patients",
            column="patient_id",
        )
    return static_features(pts, row.astype(np.int64))


def _points_frame(points: pd.DataFrame) -> pl.DataFrame:
    """The landmark points, checked, as polars: point (0-based position), patient_id (text)
    and landmark_h (float64)."""
    missing = {"patient_id", "landmark_h"} - set(points.columns)
    if missing:
        raise InputError(
            f"landmark points need columns patient_id and landmark_h; missing {sorted(missing)}"
        )
    lm = points["landmark_h"]
    lm = (lm.to_numpy(dtype="float64") if lm.dtype == np.float64
          else pd.to_numeric(lm, errors="coerce").to_numpy(dtype="float64"))  # fmt: skip
    if not np.isfinite(lm).all():
        raise InputError("landmark points: landmark_h must be finite numbers", column="landmark_h")
    ids = points["patient_id"].to_numpy(dtype=object)
    missing = pd.isna(ids)
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise InputError("landmark points: missing patient_id", row=row, column="patient_id")
    return pl.DataFrame(
        {
            "point": np.arange(len(lm), dtype=np.int64),
            "patient_id": pl.Series("patient_id", ids, pl.String),
            "landmark_h": lm,
        }
    )


def build_features(
    cohort: Cohort, points: pd.DataFrame, config: FeatureConfig | None = None
) -> pd.DataFrame:
    """Features at each point (patient_id, landmark_h), one row per point in the given order.

    Returns a float64 DataFrame whose columns are ``feature_catalogue(config).name`` in order.
    Reads only ``cohort.patients`` and, through the leakage guard, the observations and events
    with hours <= landmark_h; never the outcomes (works for new admissions).
    """
    config = config or FeatureConfig()
    plan = _plan(config.model_dump_json(), catalogue_key())
    pts = _points_frame(points)
    n = len(pts)
    lm = pts["landmark_h"].to_numpy()

    vis_ev = visible_rows(cohort.events, pts, EVENT_INPUT)
    first = _first_per_point(vis_ev, n)
    obs = _sorted_observations(cohort, plan, pts).lazy()
    size = len(cohort.observations)
    toci = first.get("tocilizumab", np.full(n, np.nan))
    groups = {f.group for f in plan.features}
    grading = (plan.grading.rows(obs),) if plan.grading else ()
    stats, grading = _group_stats(obs, plan, n, toci, size, grading)
    crs = _crs_state(grading[0], vis_ev, lm, config.grading) if grading else {}
    static = _static(cohort, pts) if "static" in groups else {}
    ctx = _Context(n, lm, stats, first, crs, static, config)

    matrix = np.empty((n, len(plan.names)), dtype="float64", order="F")
    for aggregation, cols, features in plan.blocks:
        matrix[:, cols] = KERNELS[aggregation](ctx, features).T
    return pd.DataFrame(matrix, columns=pd.Index(plan.names, dtype=object), copy=False)
