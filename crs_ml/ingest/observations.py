"""The observations table: variables resolved, values parsed and converted, plausibility
flags, duplicates resolved, sorted (the rules are in :mod:`crs_ml.ingest.load`).

One pass of polars over the rows (native threads) gives each row its patient (a hash
lookup into the patients table), its (variable, unit) pair (the first row holding the same
two texts) and its value where the text is a plain number. Everything else is decided once
per distinct text or pair in Python, from small tables: the variable a name resolves to,
the unit conversion (factor and offset from :mod:`crs_ml.variables`), the text values
polars cannot read (``<0.5``, ``1,240``, ``Hemolyzed``). The row checks are numpy masks
(only built when a distinct text or pair has the problem), and sorting and duplicate
detection run in polars again; the result goes to pandas through Arrow.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.cohort import pandas_table, str_array
from crs_ml.config import DataConfig
from crs_ml.ingest.problems import Collector, RowChecks
from crs_ml.ingest.rows import Patients, row_hours
from crs_ml.ingest.secondary_tables import start_table
from crs_ml.ingest.tables import RawTable
from crs_ml.ingest.values import KIND_TEXTS, pandas_text, value_codes
from crs_ml.variables import (
    catalogue_arrays,
    catalogue_version,
    name_key,
    resolve_variable,
    suggest_variable,
)

#: polars engine of the queries here: the in-memory engine (the default streaming engine
#: sorts, filters and gathers these column-at-a-time queries up to ten times slower) ...
ENGINE = "in-memory"
#: ... except for the window that finds each row's (variable, unit) pair (streaming: 40%
#: less CPU time than in memory)
PAIR_ENGINE = "streaming"
#: a table of fewer rows is finished in numpy and eager polars (:func:`_finish_small`, the
#: same result), without the fixed cost of planning the lazy queries, which dominates for one
#: patient's rows (tests/data/test_small_paths.py checks both ways give the same tables)
SMALL_ROWS = 2_000


@functools.lru_cache(maxsize=4096)
def _variable_index(text: str, version: int) -> int:
    """Catalogue position of the variable a name, alias or LOINC code resolves to (-1)."""
    found = resolve_variable(text)
    return catalogue_arrays().index[found] if found else -1


@functools.lru_cache(maxsize=4096)
def _suggestion(text: str, version: int) -> str | None:
    return suggest_variable(text)


@functools.lru_cache(maxsize=4096)
def _conversion(vidx: int, spelling: str, version: int):
    return catalogue_arrays().variables[vidx].conversion(spelling)


def observations_table(
    raw: RawTable, pat: Patients, opts: DataConfig, col: Collector
) -> pd.DataFrame:
    """Validate and normalise the observations table (problems go to ``col``)."""
    t = start_table(raw, pat, col)
    hours = row_hours(t.raw.frame, t.rc, pat, t.pcode, "hours", "time", required=True)
    vidx, value, censored = _values(raw, t.rc, opts)
    return _finish(t.rc, pat, t.pcode, hours, vidx, value, censored, raw, opts, col)


class _Pairs:
    """The distinct (variable text, unit text) pairs of a table: ``code`` of each row (the
    pair's position here), the pairs' texts and first rows."""

    def __init__(self, frame: pl.DataFrame) -> None:
        n = frame.height
        variable = pandas_text(frame.get_column("variable"))
        unit = pandas_text(frame.get_column("unit")) if "unit" in frame.columns else None
        keys = [variable] if unit is None else [variable, unit]
        if n < SMALL_ROWS:  # a few rows: each row's first row of its texts, by a dict
            seen: dict[tuple, int] = {}
            texts = zip(*[k.to_list() for k in keys], strict=True)
            first = np.array([seen.setdefault(t, i) for i, t in enumerate(texts)], dtype=np.int64)
        else:
            first = (
                pl.DataFrame(keys)
                .lazy()
                .with_row_index("first")
                .select(pl.col("first").min().over(*[k.name for k in keys]))
                .collect(engine=PAIR_ENGINE)
                .to_series()
                .to_numpy()
            )
        self.first = np.flatnonzero(first == np.arange(n, dtype=first.dtype))
        lookup = np.zeros(n, dtype=np.int64)
        lookup[self.first] = np.arange(len(self.first))
        self.code = lookup[first]
        self.variable = np.asarray(variable.gather(self.first).to_list(), dtype=object)
        if unit is None:
            self.unit = np.full(len(self.first), "", dtype=object)
            self.unit_order = np.zeros(len(self.first), dtype=np.int64)
        else:
            self.unit = np.asarray(unit.gather(self.first).to_list(), dtype=object)
            # a unit's position among the file's distinct units (first appearance)
            seen: dict[str, int] = {}
            for u in self.unit[np.argsort(self.first, kind="stable")]:
                seen.setdefault(u, len(seen))
            self.unit_order = np.array([seen[u] for u in self.unit], dtype=np.int64)
        self.unit_text = unit
        self.variable_text = variable

    def rows(self, which: np.ndarray) -> np.ndarray:
        """Row mask of the pairs ``which`` (bool per pair)."""
        return which[self.code]


def _values(raw: RawTable, rc: RowChecks, opts: DataConfig):
    """Resolve variables, parse values and convert units; problems go to ``rc``.
    Returns (variable index, -1 unknown; value in the canonical unit; censored)."""
    frame = raw.frame
    pairs = _Pairs(frame)
    names = pairs.variable
    aliases = {name_key(k): t for k, t in opts.variable_aliases.items()}
    version = catalogue_version()
    pair_v = np.array(
        [_variable_index(aliases.get(name_key(u), u), version) for u in names], dtype=np.int64
    )
    vidx = pair_v[pairs.code]
    empty = np.array([not u.strip() for u in names], dtype=bool)
    if empty.any():
        rc.reject(
            pairs.rows(empty),
            "variable",
            "missing_variable",
            "rows without a variable name",
            "missing variable",
        )
    unknown_pair = pair_v < 0
    if unknown_pair.any():
        _unknown_variables(rc, pairs, unknown_pair)

    value, censored, kind = value_codes(frame.get_column("value"), opts.censored_below)
    non_numeric = kind != 0
    if non_numeric.any():
        live = non_numeric & rc.ok
        counts = np.bincount(kind[live], minlength=len(KIND_TEXTS))
        rc.reject(
            non_numeric,
            "value",
            "non_numeric_result",
            "non-numeric results (Hemolyzed, QNS, ---, empty, NaN ...): left out",
            "",
            frame.get_column("value"),
            severity="warning",
            details={str(KIND_TEXTS[k]): int(counts[k]) for k in np.flatnonzero(counts)},
            record=False,
        )

    factor, offset = _units(rc, pairs, pair_v, opts)
    value = value * factor[pairs.code] + offset[pairs.code]
    safe = np.maximum(vidx, 0)
    with np.errstate(invalid="ignore"):
        cat = catalogue_arrays()
        out_of_range = (value < cat.low[safe]) | (value > cat.high[safe])
    rc.note(
        out_of_range,
        "value",
        "out_of_range",
        "values outside the catalogue's plausible range: kept and flagged",
        frame.get_column("value"),
        details=_by_variable(safe, out_of_range & rc.ok),
    )
    flagged = censored != 0
    if flagged.any():
        rc.note(
            flagged,
            "value",
            "censored_value",
            "censored results (<x, >x): kept as numbers and flagged",
            frame.get_column("value"),
            severity="info",
            details={
                **_by_variable(safe, (censored < 0) & rc.ok, " <"),
                **_by_variable(safe, (censored > 0) & rc.ok, " >"),
            },
        )
    return vidx, value, censored


def _unknown_variables(rc: RowChecks, pairs: _Pairs, unknown_pair: np.ndarray) -> None:
    """Names not in the catalogue: those resembling a catalogue variable are rejected
    (listed, with the alias to add); the others are left out and counted by name."""
    names = pairs.variable
    distinct = sorted({u for u in names[unknown_pair]})
    like = {u: _suggestion(u, catalogue_version()) for u in distinct}
    looks_pair = unknown_pair & np.array([like.get(u) is not None for u in names], dtype=bool)
    text = pairs.variable_text
    if looks_pair.any():
        looks = pairs.rows(looks_pair)
        counts = _counts_by_name(pairs, looks & rc.ok)
        rc.reject(
            looks,
            "variable",
            "variable_like_catalogue",
            "variables not in the catalogue that look like one (name -> variable): rows left "
            "out; if they are that variable, set data.variable_aliases: {'<name>': <variable>}",
            "variable '{value}' is not in the catalogue (see data.variable_aliases)",
            text,
            severity="warning",
            details={f"{u} -> {like[u]}": c for u, c in counts.items()},
        )
    unknown = pairs.rows(unknown_pair)
    rc.reject(
        unknown,
        "variable",
        "unknown_variable",
        "variables not in the catalogue: left out (not errors)",
        "",
        text,
        severity="warning",
        record=False,
        details=_counts_by_name(pairs, unknown & rc.ok),
    )


def _counts_by_name(pairs: _Pairs, mask: np.ndarray) -> dict[str, int]:
    """{variable text: rows of ``mask``}."""
    per_pair = np.bincount(pairs.code[mask], minlength=len(pairs.first))
    out: dict[str, int] = {}
    for k in np.flatnonzero(per_pair):
        out[str(pairs.variable[k])] = out.get(str(pairs.variable[k]), 0) + int(per_pair[k])
    return out


def _units(rc: RowChecks, pairs: _Pairs, pair_v: np.ndarray, opts: DataConfig):
    """(factor, offset) of each pair into the canonical unit; rows with an unknown unit (or
    a missing one under ``strict_units``) are rejected, assumptions counted. Pairs are
    handled in the order (variable, unit's first appearance), as one group per (variable,
    unit) however the variable was written."""
    npairs = len(pairs.first)
    factor = np.ones(npairs)
    offset = np.zeros(npairs)
    live = np.bincount(pairs.code[rc.ok], minlength=npairs) > 0
    live &= pair_v >= 0
    groups: dict[tuple[int, int], list[int]] = {}
    for k in np.flatnonzero(live):
        groups.setdefault((int(pair_v[k]), int(pairs.unit_order[k])), []).append(int(k))
    unit_text = pairs.unit_text
    for v, _ in sorted(groups):
        members = groups[(v, _)]
        var = catalogue_arrays().variables[v]
        spelling = str(pairs.unit[members[0]])

        def rows(members=members) -> np.ndarray:
            which = np.zeros(npairs, dtype=bool)
            which[members] = True
            return pairs.rows(which)

        if not spelling.strip():
            if not var.unit_optional and opts.strict_units:
                rc.reject(
                    rows(),
                    "unit",
                    "missing_unit",
                    "rows without a unit (strict_units): rejected",
                    f"missing unit (strict_units) for {var.name}",
                    detail_key=var.name,
                )
            elif not var.unit_optional:
                rc.note(
                    rows(),
                    "unit",
                    "missing_unit",
                    "rows without a unit: the canonical unit is assumed",
                    detail_key=f"{var.name} ({var.unit})",
                )
            continue
        conv = _conversion(v, spelling, catalogue_version())
        if conv is None:
            rc.reject(
                rows(),
                "unit",
                "unknown_unit",
                "units not known for the variable",
                f"unknown unit '{spelling}' for {var.name}",
                unit_text,
                detail_key=f"{var.name}: {spelling}",
            )
            continue
        factor[members], offset[members] = conv.factor, conv.offset
        if conv.note:
            rc.note(
                rows(),
                "unit",
                "unit_assumption",
                "units read with an assumption",
                unit_text,
                detail_key=f"{var.name}: {spelling} ({conv.note})",
            )
    return factor, offset


def _by_variable(vidx: np.ndarray, mask: np.ndarray, suffix: str = "") -> dict[str, int]:
    if not mask.any():
        return {}
    names = catalogue_arrays().names
    counts = np.bincount(vidx[mask], minlength=len(names))
    return {f"{names[i]}{suffix}": int(counts[i]) for i in np.flatnonzero(counts)}


def significant(values: np.ndarray, digits: int = 12) -> np.ndarray:
    """Values rounded to ``digits`` significant digits, so that unit conversions that agree
    up to floating-point noise (1.2 mg/dL and 12 mg/L) count as the same value."""
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log10(np.abs(values)))
    scale = 10.0 ** np.where(np.isfinite(exponent), digits - 1 - exponent, 0)
    return np.round(values * scale) / scale


def _finish(
    rc: RowChecks,
    pat: Patients,
    pcode: np.ndarray,
    hours: np.ndarray,
    vidx: np.ndarray,
    value: np.ndarray,
    censored: np.ndarray,
    raw: RawTable,
    opts: DataConfig,
    col: Collector,
) -> pd.DataFrame:
    """Kept rows, sorted by (patient, hours, variable, source row), duplicates resolved, as
    the cohort's observations table."""
    if len(pcode) < SMALL_ROWS:
        small = _finish_small(rc, pat, pcode, hours, vidx, value, censored, raw)
        if small is not None:
            return small
    kept = (
        pl.DataFrame(
            {
                "p": pcode,
                "hours": hours,
                "v": vidx,
                "value": value,
                "censored": censored,
                "source_row": raw.source_row,
                "ok": rc.ok,
            }
        )
        .lazy()
        .with_row_index("pos")
        .filter(pl.col("ok"))
        .with_columns(
            rank=pl.lit(pat.rank_series).gather(pl.col("p")),
            vrank=pl.lit(catalogue_arrays().rank_series).gather(pl.col("v")),
        )
        .collect(engine=ENGINE)
    )
    keys = ["rank", "hours", "vrank", "source_row"]
    if kept.select(_out_of_order(keys)).item():  # input files are usually sorted already
        kept = kept.sort(keys)
    kept = (
        kept.lazy()
        .with_columns(
            same=(
                (pl.col("rank") == pl.col("rank").shift(1))
                & (pl.col("hours") == pl.col("hours").shift(1))
                & (pl.col("v") == pl.col("v").shift(1))
            ).fill_null(False)
        )
        .with_columns(multi=pl.col("same") | pl.col("same").shift(-1).fill_null(False))
        .select("pos", "p", "hours", "v", "value", "censored", "source_row", "same", "multi")
        .collect(engine=ENGINE)
    )
    multi = kept.get_column("multi")
    if multi.any():
        kept = _duplicates(kept, raw, opts, col)
    out = kept.lazy().select(
        patient_id=pl.lit(pat.id_series).gather(pl.col("p")),
        hours=pl.col("hours"),
        variable=pl.lit(catalogue_arrays().name_series).gather(pl.col("v")),
        value=pl.col("value"),
        censored=pl.col("censored").cast(pl.Int8),
        out_of_range=(pl.col("value") < pl.lit(catalogue_arrays().low_series).gather(pl.col("v")))
        | (pl.col("value") > pl.lit(catalogue_arrays().high_series).gather(pl.col("v"))),
        source_row=pl.col("source_row").cast(pl.Int64),
    )
    return pandas_table(out.collect(engine=ENGINE))


def _finish_small(
    rc: RowChecks,
    pat: Patients,
    pcode: np.ndarray,
    hours: np.ndarray,
    vidx: np.ndarray,
    value: np.ndarray,
    censored: np.ndarray,
    raw: RawTable,
) -> pd.DataFrame | None:
    """:func:`_finish` for a few rows (one patient): the kept rows sorted in numpy and the
    table built eagerly, without the lazy queries' fixed cost; ``None`` when some rows share
    patient, hours and variable (duplicates: :func:`_finish` resolves them). The sort keys end
    with the unique source row, so the order is the one polars gives."""
    pos = np.flatnonzero(rc.ok)
    p, h, v = pcode[pos], hours[pos], vidx[pos]
    source_row = np.asarray(raw.source_row)[pos]
    cat = catalogue_arrays()
    rank, vrank = pat.rank[p], cat.rank[v]
    order = np.lexsort((source_row, vrank, h, rank))
    if (order != np.arange(len(order))).any():
        pos, p, h, v, source_row = pos[order], p[order], h[order], v[order], source_row[order]
        rank = rank[order]
    if len(pos) > 1 and ((rank[1:] == rank[:-1]) & (h[1:] == h[:-1]) & (v[1:] == v[:-1])).any():
        return None
    val = np.asarray(value[pos], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        # as polars compares in _finish: NaN is above every number (so out of range)
        out_of_range = np.isnan(val) | (val < cat.low[v]) | (val > cat.high[v])
    # pandas built from numpy: to_pandas' fixed cost (about 0.3 ms) is most of a few rows'
    return pd.DataFrame(
        {
            "patient_id": str_array(pat.ids[p]),
            "hours": np.asarray(h, dtype=np.float64),
            "variable": str_array(cat.names[v]),
            "value": val,
            "censored": np.asarray(censored[pos]).astype(np.int8),
            "out_of_range": out_of_range,
            "source_row": source_row.astype(np.int64),
        },
        copy=False,
    )


def _out_of_order(keys: list[str]) -> pl.Expr:
    """True when some row comes before the previous one in the order of ``keys``."""
    before = pl.lit(False)
    for key in reversed(keys):
        now, prev = pl.col(key), pl.col(key).shift(1)
        before = (now < prev) | ((now == prev) & before)
    return before.fill_null(False).any()


def _duplicates(kept: pl.DataFrame, raw: RawTable, opts: DataConfig, col: Collector):
    """Rows of the same patient, hours and variable (``multi``; ``same`` marks all but the
    first of each run): identical values -> the last kept; different values -> the
    ``conflicting_duplicates`` rule. Returns ``kept`` without the rows dropped."""
    same = kept.get_column("same").to_numpy()
    multi = kept.get_column("multi").to_numpy()
    pos = kept.get_column("pos").to_numpy()
    value = kept.get_column("value").to_numpy().copy()
    censored = kept.get_column("censored").to_numpy().copy()
    m = len(pos)
    keep = np.ones(m, dtype=bool)
    group = np.cumsum(~same)
    idx = np.flatnonzero(multi)
    sub = pd.DataFrame(
        {"g": group[idx], "value": significant(value[idx]), "c": censored[idx], "i": idx}
    )
    exact = sub.duplicated(["g", "value", "c"], keep="last").to_numpy()
    _dup_problem(
        col,
        raw,
        "exact_duplicate",
        "identical rows (same patient, hours, variable, value): the last kept",
        pos[sub["i"].to_numpy()[exact]],
    )
    keep[sub["i"].to_numpy()[exact]] = False
    sub = sub[~exact]
    conflict = sub[sub["g"].duplicated(keep=False)]
    if len(conflict):
        last = conflict.groupby("g")["i"].transform("max").to_numpy()
        if opts.conflicting_duplicates == "max":
            best = conflict.sort_values(["g", "value", "i"]).groupby("g")["i"].transform("last")
            winner = conflict["i"].to_numpy() == best.reindex(conflict.index).to_numpy()
        else:
            winner = conflict["i"].to_numpy() == last
        if opts.conflicting_duplicates == "mean":
            agg = conflict.groupby("g").agg(
                mean=("value", "mean"), cmin=("c", "min"), cmax=("c", "max")
            )
            win = conflict[winner]
            value[win["i"].to_numpy()] = agg.loc[win["g"], "mean"].to_numpy()
            agree = (agg["cmin"] == agg["cmax"]).loc[win["g"]].to_numpy()
            censored[win["i"].to_numpy()] = np.where(agree, win["c"].to_numpy(), 0)
        losers = conflict["i"].to_numpy()[~winner]
        keep[losers] = False
        _dup_problem(
            col,
            raw,
            "conflicting_duplicate",
            "same patient, hours and variable with different values: rule "
            f"'{opts.conflicting_duplicates}' applied",
            pos[losers],
            {"groups": int(conflict["g"].nunique()), "rows_dropped": int(losers.size)},
        )
    return kept.with_columns(pl.Series("value", value), pl.Series("censored", censored)).filter(
        pl.Series(keep)
    )


def _dup_problem(col, raw: RawTable, code: str, message: str, positions, details=None) -> None:
    if len(positions) == 0:
        return
    first = np.sort(positions)[:5]
    values = raw.frame.get_column("value").gather(first).to_pandas()
    examples = [
        {"file": raw.file, "row": int(raw.source_row[i]), "column": "value", "value": str(v)}
        for i, v in zip(first, values, strict=True)
    ]
    col.add("observations", code, "warning", message, len(positions), examples, details)
