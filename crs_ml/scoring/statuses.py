"""Per patient, before any feature is built: the as-of time, the landmark and the status.

:func:`statuses` decides, for each patient of a cohort, the hours since infusion at the
as-of time, the landmark L (the largest model landmark <= those hours) and whether the
patient can be scored: ``too_early``, ``not_at_risk`` (grade >= 3 CRS or death by the as-of
time: the features read data up to L only, but a patient with severe CRS or dead by the time
the score is read has no risk left to predict),
``error`` (no infusion time for an absolute as-of, no data at or before L) or ``scored``, with
the reason in ``message``. Used by :mod:`crs_ml.scoring.score`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from crs_ml.cohort import Cohort
from crs_ml.config import LabelConfig
from crs_ml.errors import InputError
from crs_ml.features.builder import run_starts
from crs_ml.features.grading import (
    FEVER_C,
    FEVER_LIFTING_EVENTS,
    HYPOTENSION_SBP_MMHG,
    grade_summary,
)
from crs_ml.ingest.values import MAX_ABS_HOURS, parse_time

#: up to this many candidate rows, the rows' variables are compared in numpy (no pandas
#: operations, whose fixed cost dominates for one patient); the same masks either way
SMALL_ROWS = 2_000


@dataclass
class Statuses:
    """Per patient of ``cohort.patients`` (in order) and per row of its tables."""

    pid_values: np.ndarray  #: patient ids (object array)
    pid: pd.Index
    hours: np.ndarray  #: hours since infusion at the as-of time
    when: pd.Series  #: the as-of timestamps
    landmark_h: np.ndarray  #: L, NaN when none
    status: np.ndarray
    message: np.ndarray
    obs_code: np.ndarray  #: patient position of each observation row (-1: none)
    ev_code: np.ndarray  #: the same for events


def statuses(cohort: Cohort, landmarks: np.ndarray, as_of=None, as_of_hours=None,
             grading: LabelConfig | None = None) -> Statuses:  # fmt: skip
    """See the module docstring. ``grading``: the model's ASTCT grading settings (its
    ``features.grading``, those its labels were derived with; None: the defaults)."""
    patients = cohort.patients
    n = len(patients)
    pid_values = patients["patient_id"].to_numpy(dtype=object)
    pid = pd.Index(pid_values, dtype=object)
    if not pid.is_unique:  # (load_cohort refuses these; a Cohort built by hand may have them)
        code = pd.factorize(pid_values, use_na_sentinel=False)[0]  # a missing id is one value
        again = int(np.flatnonzero(pd.Series(code).duplicated(keep="first"))[0])
        first = int(np.flatnonzero(code == code[again])[0])
        raise InputError(
            f"duplicated patient_id '{pid[again]}' (rows {first + 1} and {again + 1}): each "
            "patient once in the patients table",
            file="patients",
            row=int(again) + 1,
            column="patient_id",
        )
    obs_code = _codes(pid, cohort.observations["patient_id"])
    ev_code = _codes(pid, cohort.events["patient_id"])
    tables = [(cohort.observations, obs_code), (cohort.events, ev_code)]
    hours, when, why = _as_of_hours(cohort, tables, as_of, as_of_hours)

    status = np.full(n, "scored", dtype=object)
    message = why.copy()
    status[why != ""] = "error"
    idx = np.searchsorted(landmarks, np.nan_to_num(hours, nan=-np.inf), side="right") - 1
    L = np.where((idx >= 0) & ~np.isnan(hours), landmarks[np.maximum(idx, 0)], np.nan)
    early = (status == "scored") & np.isnan(L)
    status[early] = "too_early"
    message[early] = [f"{h:g} h since infusion: before the first landmark ({landmarks[0]:g} h)"
                      for h in hours[early]]  # fmt: skip
    late = (status == "scored") & (hours > landmarks[-1])
    message[late] = f"scored at the last landmark ({landmarks[-1]:g} h)"

    until = np.where(np.isfinite(L), np.fmax(hours, L), np.nan)  # the as-of hours
    at_risk = _not_at_risk(cohort, pid, obs_code, ev_code, L, until, status == "scored",
                           grading)  # fmt: skip
    status[at_risk != ""] = "not_at_risk"
    message[at_risk != ""] = at_risk[at_risk != ""]

    cand = status == "scored"
    obs_hours = cohort.observations["hours"].to_numpy(dtype=np.float64)
    seen = (obs_code >= 0) & (obs_hours <= L[np.maximum(obs_code, 0)])
    n_visible = np.bincount(obs_code[seen], minlength=n)
    no_data = cand & (n_visible == 0)
    status[no_data] = "error"
    message[no_data] = [f"no observation at or before the {lm:g} h landmark: nothing to score"
                        for lm in L[no_data]]  # fmt: skip
    return Statuses(pid_values, pid, hours, when, L, status, message, obs_code, ev_code)


def _codes(pid: pd.Index, ids: pd.Series) -> np.ndarray:
    """Position in ``pid`` of each id (-1 when absent or missing). A Cohort's rows come in
    runs of one patient, so only the first id of each run is looked up (the runs found by
    comparing neighbours in Arrow, :func:`~crs_ml.features.builder.run_starts`: about half the time of hashing every row)."""
    if len(ids) == 0:
        return np.empty(0, dtype=np.int64)
    if len(pid) == 1 and isinstance(pid[0], str):  # one patient: compared, not hashed
        same = ids.to_numpy(dtype=object, na_value=None) == pid[0]
        return np.where(same, 0, -1).astype(np.int64)
    arr = pa.array(ids, from_pandas=True)  # text: a Cohort's ids are
    start = run_starts(arr)
    runs = arr.take(pa.array(np.flatnonzero(start)))
    where = pid.get_indexer(pd.Index(runs.to_numpy(zero_copy_only=False).astype(object),
                                     dtype=object))  # fmt: skip
    where[runs.is_null().to_numpy(zero_copy_only=False)] = -1
    return where[np.cumsum(start) - 1].astype(np.int64)


def _latest_hours(tables, n: int) -> np.ndarray:
    latest = np.full(n, -np.inf)
    for table, code in tables:
        ok = code >= 0
        np.maximum.at(latest, code[ok], table["hours"].to_numpy(dtype=np.float64)[ok])
    latest[np.isinf(latest)] = np.nan
    return latest


def _as_of_hours(cohort: Cohort, tables, as_of, as_of_hours):
    """(hours since infusion, as-of timestamps, reason when hours are unknown) per patient."""
    n = len(cohort.patients)
    infusion = cohort.patients["infusion_time"]
    if infusion.dtype != "datetime64[ns, UTC]":  # what loading gives: nothing to convert
        infusion = pd.to_datetime(infusion, utc=True)
    infusion = infusion.reset_index(drop=True)
    why = np.full(n, "", dtype=object)
    if as_of is not None and as_of_hours is not None:
        raise InputError("give either an as-of time or as-of hours, not both")
    if as_of is not None:
        ts = parse_time(as_of, "as-of time")  # read as the data's time columns are
        hours = ((ts - infusion) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
        when = pd.Series(pd.DatetimeIndex([ts] * n))
        why[np.isnan(hours)] = (
            "no infusion_time: an absolute as-of time needs it (use as-of hours instead)"
        )
        return hours, when, why
    if as_of_hours is not None:
        h = float(as_of_hours)
        if not np.isfinite(h):
            raise InputError(f"as-of hours must be a finite number, got {as_of_hours}")
        if abs(h) > MAX_ABS_HOURS:  # as for the data's hours: 100 years
            raise InputError(f"as-of hours {h:g} are implausible (more than "
                             f"{MAX_ABS_HOURS:,.0f} h, 100 years, from the infusion)")  # fmt: skip
        hours = np.full(n, h)
    else:
        hours = _latest_hours(tables, n)
        why[np.isnan(hours)] = "no observations or events: nothing to score"
    when = infusion + pd.to_timedelta(hours, unit="h")
    return hours, when, why


def _not_at_risk(
    cohort: Cohort,
    pid: pd.Index,
    obs_code: np.ndarray,
    ev_code: np.ndarray,
    L: np.ndarray,
    until: np.ndarray,
    cand: np.ndarray,
    grading: LabelConfig | None = None,
) -> np.ndarray:
    """Reason text ('' when at risk) for each patient: grade >= 3 (graded with ``grading``)
    or death by the as-of hours ``until`` (>= the landmark ``L``)."""
    why = np.full(len(pid), "", dtype=object)
    if not cand.any():
        return why
    obs = cohort.observations
    # only what grading reads: fevers and low sbp after infusion (label._intervals)
    value = obs["value"].to_numpy(dtype=np.float64)
    hours = obs["hours"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        maybe = (hours >= 0) & ((value >= FEVER_C) | (value < HYPOTENSION_SBP_MMHG))
    rows = np.flatnonzero(maybe)
    if len(rows) <= SMALL_ROWS:  # a few rows (one patient): compared as Python texts
        variable = obs["variable"].array.take(rows).to_numpy(dtype=object, na_value=None)
        is_temperature = (variable == "temperature").astype(bool)
        used = is_temperature | (variable == "sbp").astype(bool)
    else:
        variable = obs["variable"].iloc[rows]
        is_temperature = variable.eq("temperature").to_numpy(dtype=bool)
        used = is_temperature | variable.eq("sbp").to_numpy(dtype=bool)
    rows, is_temperature = rows[used], is_temperature[used]
    # Grade >= 3 by the as-of time needs a fever by then (fever first: a never-febrile
    # patient is never graded) and a support started by then (fever, low sbp and treatments
    # alone are grade <= 2; any event but a fever-lifting treatment or death counts as a
    # possible support): only such candidates are graded, which spares most one-patient
    # calls the grading's cost.
    # tests/model/test_score.py checks the statuses against grading every patient.
    code = obs_code[rows]
    with np.errstate(invalid="ignore"):
        fever = (code >= 0) & is_temperature & (value[rows] >= FEVER_C)
        fever &= hours[rows] <= until[np.maximum(code, 0)]
    ev = cohort.events
    ev_name = ev["event"].to_numpy(dtype=object)
    support = (ev_code >= 0) & ~np.isin(ev_name, [*FEVER_LIFTING_EVENTS, "death"])
    with np.errstate(invalid="ignore"):
        support &= ev["hours"].to_numpy(dtype=np.float64) <= until[np.maximum(ev_code, 0)]
    graded = np.zeros(len(pid), dtype=bool)
    graded[code[fever]] = True
    supported = np.zeros(len(pid), dtype=bool)
    supported[ev_code[support]] = True
    graded &= cand & supported
    g3 = np.full(len(pid), np.nan)
    if graded.any():
        limit = pd.Series(until[graded], index=pd.Index(pid[graded], dtype=object))
        keep = np.isin(code, np.flatnonzero(graded))
        ev_keep = np.flatnonzero(np.isin(ev_code, np.flatnonzero(graded)))
        summary = grade_summary(obs.iloc[rows[keep]], ev.iloc[ev_keep], "patient_id",
                                until=limit, settings=grading)  # fmt: skip
        g3 = pd.Series(pid, dtype=object).map(summary["grade3_hours"]).to_numpy(dtype=np.float64)
    ev = cohort.events
    death = np.full(len(pid), np.inf)
    dead = (ev["event"].to_numpy(dtype=object) == "death") & (ev_code >= 0)
    if dead.any():
        np.minimum.at(death, ev_code[dead], ev["hours"].to_numpy(dtype=np.float64)[dead])
    if cohort.outcomes is not None and len(cohort.outcomes):
        oc = cohort.outcomes.drop_duplicates("patient_id").set_index("patient_id")
        known = pd.Series(pid, dtype=object)
        og3 = known.map(oc["grade3_hours"]).to_numpy(dtype=np.float64)
        g3 = np.fmin(g3, np.where(og3 <= until, og3, np.nan))
        if "death_hours" in oc:
            death = np.fmin(death, known.map(oc["death_hours"]).to_numpy(dtype=np.float64))
    with np.errstate(invalid="ignore"):
        is_g3 = cand & (g3 <= until)
        is_dead = cand & ~is_g3 & (death <= until)
    why[is_g3] = [f"already grade >= 3 CRS at {h:g} h ({_when(h, lm, t)})"
                  for h, lm, t in zip(g3[is_g3], L[is_g3], until[is_g3], strict=True)]  # fmt: skip
    why[is_dead] = [f"died at {h:g} h ({_when(h, lm, t)})"
                    for h, lm, t in zip(death[is_dead], L[is_dead], until[is_dead],
                                        strict=True)]  # fmt: skip
    return why


def _when(h: float, landmark: float, as_of: float) -> str:
    if h <= landmark:
        return f"by the {landmark:g} h landmark"
    return f"after the {landmark:g} h landmark, by the as-of time {as_of:g} h"
