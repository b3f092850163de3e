"""Row-level normalisation shared by the loaders: the patients as lookup tables, times and
hours since infusion, sorting of the secondary tables. Patient ids are looked up by polars
(native threads); masks and times are numpy; per-row Python never runs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.ingest.problems import RowChecks
from crs_ml.ingest.values import (
    TIME_PROBLEMS,
    hour_problem_codes,
    hours_since,
    parse_times,
    time_problem_codes,
)

NAT = np.iinfo("int64").min
#: ids looked up by a dict when there are this few of them and of patients (one patient)
SMALL_LOOKUP = 2_000


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

    @functools.cached_property
    def id_series(self) -> pl.Series:
        """The ids as a polars column (file order)."""
        return pl.Series("patient_id", self.ids.tolist(), dtype=pl.String)

    @functools.cached_property
    def rank_series(self) -> pl.Series:
        return pl.Series("rank", self.rank, dtype=pl.Int64)

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """{id: position in the patients}."""
        return {k: i for i, k in enumerate(self.ids.tolist())}

    def codes(self, ids: pl.Series) -> np.ndarray:
        """Position of each id of a polars text column in the patients (-1 when unknown),
        by one hash lookup in native threads (a cast to the patients' ids as categories);
        a few ids among a few patients by a dict (the same positions, without the polars
        calls' fixed cost)."""
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        if len(ids) <= SMALL_LOOKUP and len(self.ids) <= SMALL_LOOKUP and ids.dtype == pl.String:
            get = self.position.get
            return np.array([get(t, -1) for t in ids.to_list()], dtype=np.int64)
        found = ids.cast(pl.Enum(self.id_series), strict=False).to_physical()
        return found.cast(pl.Int64).fill_null(-1).to_numpy()


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
