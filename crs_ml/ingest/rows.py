"""Row-level normalisation shared by the loaders: patient ids, times, observation values,
duplicates and sorting. The columns are polars Series: distinct texts are found and mapped
back by polars (native threads), numbers and masks are numpy; per-row Python never runs,
per distinct text at most."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.config import DataConfig
from crs_ml.ingest.problems import CodedText, Collector, RowChecks, counts_by
from crs_ml.ingest.tables import RawTable
from crs_ml.ingest.values import (
    TIME_PROBLEMS,
    factorize,
    hour_problem_codes,
    hours_since,
    pandas_text,
    parse_times,
    parse_values,
    sort_order,
    time_problem_codes,
    unique_small,
)
from crs_ml.variables import (
    VARIABLES,
    catalogue_arrays,
    name_key,
    resolve_variable,
    suggest_variable,
)

NAT = np.iinfo("int64").min


@dataclass
class Patients:
    """The loaded patients as lookup arrays (file order)."""

    ids: np.ndarray  #: object array of ids
    index: pd.Index
    infusion_ns: np.ndarray  #: int64 ns since epoch, NAT when unknown
    rank: np.ndarray  #: position of each patient in sorted-id order

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, infusion_ns: np.ndarray) -> Patients:
        ids = frame["patient_id"].to_numpy(dtype=object)
        rank = np.empty(len(ids), dtype="int64")
        rank[np.argsort(ids.astype(str), kind="stable")] = np.arange(len(ids))
        return cls(ids, pd.Index(ids, dtype=object), np.asarray(infusion_ns, "int64"), rank)

    def id_column(self, codes: np.ndarray) -> pd.Series:
        return pd.Series(pd.array(self.ids, dtype="str").take(codes))


def patient_codes(ids, pat: Patients) -> np.ndarray:
    """Position of each row's patient in ``pat`` (-1 when unknown or empty)."""
    if isinstance(ids, CodedText):
        where = pat.index.get_indexer(pd.Index(ids.uniques, dtype=object))
        return where[ids.codes] if len(where) else np.full(len(ids), -1, dtype="int64")
    codes, uniques = pd.factorize(pd.Series(ids, dtype=object))
    where = pat.index.get_indexer(pd.Index(np.asarray(uniques, dtype=object), dtype=object))
    return where[codes] if len(where) else np.full(len(ids), -1, dtype="int64")


def row_hours(
    frame, rc: RowChecks, pat: Patients, pcode, hours_col: str, time_col: str, required: bool
) -> np.ndarray:
    """Hours since infusion from ``hours_col`` (preferred when given) or ``time_col``.
    Rows with a bad value in either column are rejected; empty -> NaN (or rejected when
    ``required``)."""
    n = len(frame)
    hours = np.full(n, np.nan)
    given = np.zeros(n, dtype=bool)
    bad_msg = "times or hours that do not parse"
    odd_msg = "times before 1900 or in the future, or hours beyond 100 years"
    if hours_col in frame:
        raw = frame[hours_col]
        h, problem = hour_problem_codes(raw)
        given = problem != 1
        rc.reject(
            problem == 2,
            hours_col,
            "bad_time",
            bad_msg,
            f"unparseable {hours_col} '{{value}}'",
            raw,
            detail_key=hours_col,
        )
        rc.reject(
            problem == 3,
            hours_col,
            "implausible_time",
            odd_msg,
            f"implausible {hours_col} '{{value}}'",
            raw,
            detail_key=hours_col,
        )
        hours = h  # NaN unless the hours parsed
    if time_col in frame:
        need = np.flatnonzero(~given & rc.ok)
        raw = frame[time_col]
        if need.size:
            if isinstance(raw, pl.Series):
                ns_part, code_part = time_problem_codes(raw.gather(need))
            else:
                ns_part, problem_part = parse_times(raw.iloc[need])
                position = {p: i for i, p in enumerate(TIME_PROBLEMS)}
                code_part = np.array([position[p] for p in problem_part], dtype="int8")
            problem = np.ones(n, dtype="int8")  # 'empty'
            problem[need] = code_part
            ns = np.full(n, NAT, dtype="int64")
            ns[need] = ns_part
            rc.reject(
                problem == 2,
                time_col,
                "bad_time",
                bad_msg,
                f"unparseable {time_col} '{{value}}'",
                raw,
                detail_key=time_col,
            )
            for what, code in (("before 1900", 3), ("in the future", 4)):
                rc.reject(
                    problem == code,
                    time_col,
                    "implausible_time",
                    odd_msg,
                    f"{time_col} {what}: '{{value}}'",
                    raw,
                    detail_key=time_col,
                )
            infusion = pat.infusion_ns[np.maximum(pcode, 0)]
            ok_time = (problem == 0) & rc.ok
            rc.reject(
                ok_time & (infusion == NAT),
                time_col,
                "no_infusion_time",
                "absolute times for patients without a usable infusion_time",
                f"{time_col} given but the patient has no usable infusion_time",
                raw,
            )
            ok_time &= rc.ok
            hours[ok_time] = hours_since(ns[ok_time], infusion[ok_time])
            given = given | ok_time
    if required:
        column = hours_col if hours_col in frame else time_col
        rc.reject(
            ~given,
            column,
            "missing_time",
            "rows without a time or hours",
            f"no {time_col} or {hours_col} given",
        )
    return hours


@dataclass
class ObservationValues:
    vidx: np.ndarray  #: index into catalogue_arrays().names (-1 unknown)
    value: np.ndarray  #: canonical unit
    censored: np.ndarray
    out_of_range: np.ndarray


def observation_values(frame, rc: RowChecks, opts: DataConfig) -> ObservationValues:
    """Resolve variables, parse values and convert units; problems go to ``rc``."""
    n = len(frame)
    vcodes, distinct = factorize(pandas_text(frame["variable"]))
    vuniq = np.asarray(distinct.to_list(), dtype=object)
    raw_var = CodedText(vcodes, vuniq)
    aliases = {name_key(k): t for k, t in opts.variable_aliases.items()}
    canon = [resolve_variable(aliases.get(name_key(u), u)) for u in vuniq]
    cat = catalogue_arrays()  # the catalogue with the config's site variables
    lookup = cat.index
    vidx = np.array([lookup[c] if c else -1 for c in canon] + [-1], dtype="int64")[vcodes]
    empty = np.array([not str(u).strip() for u in vuniq] + [True])[vcodes]
    rc.reject(
        empty, "variable", "missing_variable", "rows without a variable name", "missing variable"
    )
    unknown = vidx < 0
    # unknown names that look like a catalogue variable are data being lost, not an unused
    # lab: their rows are rejected (listed, and counted by crs-ml score) with the alias to add
    like = [suggest_variable(u) if c is None else None for u, c in zip(vuniq, canon, strict=True)]
    like = np.array([*like, None], dtype=object)
    looks = unknown & (like[vcodes] != None)  # noqa: E711 - elementwise
    counts = np.bincount(vcodes[looks & rc.ok], minlength=len(vuniq))
    rc.reject(
        looks,
        "variable",
        "variable_like_catalogue",
        "variables not in the catalogue that look like one (name -> variable): rows left "
        "out; if they are that variable, set data.variable_aliases: {'<name>': <variable>}",
        "variable '{value}' is not in the catalogue (see data.variable_aliases)",
        raw_var,
        severity="warning",
        details={f"{vuniq[i]} -> {like[i]}": int(counts[i]) for i in np.flatnonzero(counts)},
    )
    counts = np.bincount(vcodes[unknown & rc.ok], minlength=len(vuniq))
    rc.reject(
        unknown,
        "variable",
        "unknown_variable",
        "variables not in the catalogue: left out (not errors)",
        "",
        raw_var,
        severity="warning",
        record=False,
        details={str(vuniq[i]): int(counts[i]) for i in np.flatnonzero(counts)},
    )

    value, censored, kind = parse_values(frame["value"], opts.censored_below)
    non_numeric = ~np.isfinite(value)  # == (kind != ""), without comparing millions of texts
    rc.reject(
        non_numeric,
        "value",
        "non_numeric_result",
        "non-numeric results (Hemolyzed, QNS, ---, empty, NaN ...): left out",
        "",
        frame["value"],
        severity="warning",
        details=counts_by(kind, non_numeric & rc.ok),
        record=False,
    )

    if "unit" in frame:
        ucodes, distinct = factorize(pandas_text(frame["unit"]))
        uuniq = np.asarray(distinct.to_list(), dtype=object)
    else:
        ucodes, uuniq = np.zeros(n, dtype=np.int64), np.array([""], dtype=object)
    unit = CodedText(ucodes, uuniq)
    nu = max(len(uuniq), 1)
    pair_u, inverse = unique_small(np.maximum(vidx, 0) * nu + ucodes, len(cat.names) * nu)
    factor_u = np.ones(len(pair_u))
    offset_u = np.zeros(len(pair_u))
    live = np.zeros(len(pair_u), dtype=bool)
    live[inverse[rc.ok]] = True
    for k in np.flatnonzero(live):
        var = VARIABLES[cat.names[pair_u[k] // nu]]
        spelling = str(uuniq[pair_u[k] % nu]) if len(uuniq) else ""
        if not spelling.strip():
            if not var.unit_optional and opts.strict_units:
                rc.reject(
                    inverse == k,
                    "unit",
                    "missing_unit",
                    "rows without a unit (strict_units): rejected",
                    f"missing unit (strict_units) for {var.name}",
                    detail_key=var.name,
                )
            elif not var.unit_optional:
                rc.note(
                    inverse == k,
                    "unit",
                    "missing_unit",
                    "rows without a unit: the canonical unit is assumed",
                    detail_key=f"{var.name} ({var.unit})",
                )
            continue
        conv = var.conversion(spelling)
        if conv is None:
            rc.reject(
                inverse == k,
                "unit",
                "unknown_unit",
                "units not known for the variable",
                f"unknown unit '{spelling}' for {var.name}",
                unit,
                detail_key=f"{var.name}: {spelling}",
            )
            continue
        factor_u[k], offset_u[k] = conv.factor, conv.offset
        if conv.note:
            rc.note(
                inverse == k,
                "unit",
                "unit_assumption",
                "units read with an assumption",
                unit,
                detail_key=f"{var.name}: {spelling} ({conv.note})",
            )
    value = value * factor_u[inverse] + offset_u[inverse]
    safe = np.maximum(vidx, 0)
    out_of_range = (value < cat.low[safe]) | (value > cat.high[safe])
    rc.note(
        out_of_range,
        "value",
        "out_of_range",
        "values outside the catalogue's plausible range: kept and flagged",
        frame["value"],
        details=_by_variable(safe, out_of_range & rc.ok),
    )
    rc.note(
        censored != 0,
        "value",
        "censored_value",
        "censored results (<x, >x): kept as numbers and flagged",
        frame["value"],
        severity="info",
        details={
            **_by_variable(safe, (censored < 0) & rc.ok, " <"),
            **_by_variable(safe, (censored > 0) & rc.ok, " >"),
        },
    )
    return ObservationValues(vidx, value, censored, out_of_range)


def _significant(values: np.ndarray, digits: int = 12) -> np.ndarray:
    """Values rounded to ``digits`` significant digits, so that unit conversions that agree
    up to floating-point noise (1.2 mg/dL and 12 mg/L) count as the same value."""
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log10(np.abs(values)))
    scale = 10.0 ** np.where(np.isfinite(exponent), digits - 1 - exponent, 0)
    return np.round(values * scale) / scale


def _by_variable(vidx: np.ndarray, mask: np.ndarray, suffix: str = "") -> dict[str, int]:
    names = catalogue_arrays().names
    counts = np.bincount(vidx[mask], minlength=len(names))
    return {f"{names[i]}{suffix}": int(counts[i]) for i in np.flatnonzero(counts)}


def finish_observations(
    rc: RowChecks,
    pat: Patients,
    pcode,
    hours,
    vals: ObservationValues,
    raw: RawTable,
    opts: DataConfig,
    col: Collector,
) -> pd.DataFrame:
    """Kept rows, sorted, with duplicates resolved, as the cohort's observations table."""
    pos = np.flatnonzero(rc.ok)
    p, h, v = pcode[pos], hours[pos], vals.vidx[pos]
    cat = catalogue_arrays()
    order = sort_order(pat.rank[p], h, cat.rank[v], raw.source_row[pos])
    pos, p, h, v = pos[order], p[order], h[order], v[order]
    value = vals.value[pos].copy()
    censored = vals.censored[pos].copy()
    m = len(pos)
    same = np.zeros(m, dtype=bool)
    same[1:] = (p[1:] == p[:-1]) & (h[1:] == h[:-1]) & (v[1:] == v[:-1])
    keep = np.ones(m, dtype=bool)
    multi = same | np.append(same[1:], False)
    if multi.any():
        group = np.cumsum(~same)
        idx = np.flatnonzero(multi)
        sub = pd.DataFrame(
            {"g": group[idx], "value": _significant(value[idx]), "c": censored[idx], "i": idx}
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
    pos, p, h, v = pos[keep], p[keep], h[keep], v[keep]
    value, censored = value[keep], censored[keep]
    return pd.DataFrame(
        {
            "patient_id": pat.id_column(p),
            "hours": h.astype("float64"),
            "variable": pd.Series(pd.array(cat.names, dtype="str").take(v)),
            "value": value.astype("float64"),
            "censored": censored.astype("int8"),
            "out_of_range": (value < cat.low[v]) | (value > cat.high[v]),
            "source_row": raw.source_row[pos].astype("int64"),
        }
    )


def _dup_problem(col, raw: RawTable, code: str, message: str, positions, details=None) -> None:
    if len(positions) == 0:
        return
    first = np.sort(positions)[:5]
    values = raw.frame["value"].gather(first).to_pandas()
    examples = [
        {"file": raw.file, "row": int(raw.source_row[i]), "column": "value", "value": str(v)}
        for i, v in zip(first, values, strict=True)
    ]
    col.add("observations", code, "warning", message, len(positions), examples, details)


def sorted_frame(frame: pd.DataFrame, rank: np.ndarray, keys: list[str], columns) -> pd.DataFrame:
    """``frame`` sorted by patient rank then ``keys``, typed, with ``columns`` only."""
    out = frame.assign(_rank=rank).sort_values(["_rank", *keys], kind="stable")
    out = out.reset_index(drop=True)[list(columns)]
    for c in out.columns:
        if c in ("patient_id", "event", "detail", "label_definition"):
            out[c] = out[c].astype("str")
        elif c in ("hours", "end_hours", "grade3_hours", "followup_hours", "death_hours"):
            out[c] = out[c].astype("float64")
        elif c in ("source_row", "crs_max_grade"):
            out[c] = out[c].astype("int64")
    return out
