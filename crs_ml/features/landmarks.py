"""At-risk sets, outcomes and attrition at each landmark; the stacked landmark data set.

Task definition (exact). At landmark L with horizon H, in this order:

1. grade3_hours <= L                      -> excluded ``already_grade3``
2. death_hours <= L                       -> excluded ``died``
3. followup_hours <= L                    -> excluded ``followup_ended``
4. followup_hours < H, unless death_hours <= followup_hours -> excluded
   ``censored_before_horizon`` (followup_hours NaN = followed through the horizon).
   Everyone left is at risk: y = 1 if L < grade3_hours <= H; else y = 0, with
   ``competing_event`` when L < death_hours <= H.
5. at risk but no numeric observation at hours <= L -> excluded ``no_data``.

Rule 4 decides who stays in the complete-case set without looking at the grade >= 3
outcome: a patient whose follow-up ends before the horizon is excluded whether or not an
event was seen before that end, so with loss to follow-up independent of the outcome the
at-risk set is a random subset, deaths aside (below) (benchmarks/bench_at_risk.py). Keeping the patients with an event seen before the end of follow-up (and dropping the others)
would over-represent events. Death is not loss to follow-up: follow-up that ends with death
(death_hours <= followup_hours, typically equal; or followup_hours empty) is complete, the
outcome being known through H (grade >= 3 before the death, else a competing event, y = 0).
Excluding those deaths instead would drop competing events and make the set depend on whether
an extract writes followup_hours as the death time or leaves it empty. Death after follow-up
ended (death_hours > followup_hours, e.g. from a registry) does not complete it: grade >= 3
could have been missed in between. Limit: a patient who dies before the horizon has no
observable censoring time, so under random loss to follow-up deaths are kept slightly more
often than others (the benchmark measures it); censoring weights (issue 18) would remove it.

The simulator's truth covers the set after rule 4 (before ``no_data``).

Censored, competing-risk view (issue 18; :func:`competing_risk_times`, :func:`horizon_status`).
Rule 4 is the complete-case view of one horizon. For several horizons (by L + w for each of
``TaskConfig.windows_h`` and by ``horizon_h``), and for metrics that weight the censored
instead of dropping them, each patient passing rules 1-3 and 5 keeps one observed time and
cause: ``time_h`` = the first of grade >= 3 (cause 1), death before grade >= 3 within
follow-up (cause 2), end of follow-up (cause 0, censored) or ``horizon_h`` (cause 0,
followed through). At horizon t the patient is an ``event`` (cause 1, time_h <= t),
``competing`` (cause 2, time_h <= t), ``censored`` (cause 0, time_h < t: follow-up ended
before t, as in rule 4) or ``event_free``. Censoring weights turn these into estimates for
everyone at risk (crs_ml.evaluation.censored).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort
from crs_ml.config import DEFAULT_LANDMARKS_H, DEFAULT_WINDOWS_H, FeatureConfig
from crs_ml.errors import InputError
from crs_ml.features.builder import build_features

EXCLUSION_REASONS = (
    "already_grade3",
    "died",
    "followup_ended",
    "censored_before_horizon",
    "no_data",
)
ATTRITION_COLUMNS = [
    "landmark_h",
    "n_patients",
    *EXCLUSION_REASONS,
    "n_at_risk",
    "n_events",
    "n_competing",
]
META_COLUMNS = [
    "patient_id",
    "person_id",
    "landmark_h",
    "treated_before_L",
    "competing_event",
    "outcome_hours",
    "product",
    "site",
]


#: causes of :func:`competing_risk_times`: censored (or followed through), grade >= 3, death
CAUSE_CENSORED, CAUSE_EVENT, CAUSE_COMPETING = 0, 1, 2
#: a patient's status at one horizon (module docstring, censored view)
HORIZON_OUTCOMES = ("event", "competing", "event_free", "censored")
HORIZON_COLUMNS = [
    "patient_id",
    "person_id",
    "landmark_h",
    "horizon",
    "horizon_end_h",
    "status",
    "outcome",
    "time_h",
    "cause",
    "site",
]
HORIZON_ATTRITION_COLUMNS = [
    "landmark_h",
    "horizon",
    "horizon_end_h",
    "n_at_risk",
    *(f"n_{o}" for o in HORIZON_OUTCOMES),
]


class AttritionTable(pd.DataFrame):
    """The attrition table as stored in ``meta.attrs["attrition"]``.

    pandas propagates ``attrs`` through ``concat`` only after comparing them with ``==``,
    which is ambiguous (an error) for a DataFrame. This subclass compares by content
    (``==`` is ``DataFrame.equals``), so that ``pd.concat`` of metas keeps working. Use
    :func:`attrition_table` for a plain DataFrame."""

    @property
    def _constructor(self):
        return AttritionTable

    def __eq__(self, other):  # type: ignore[override]
        return isinstance(other, pd.DataFrame) and self.equals(other)

    def __ne__(self, other):  # type: ignore[override]
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def _outcomes_per_patient(cohort: Cohort) -> pd.DataFrame:
    if cohort.outcomes is None:
        raise InputError(
            "the cohort has no outcomes: derive them first with "
            "`crs-ml label --data DIR` (writes outcomes.csv), or supply outcomes.csv",
            file="outcomes",
        )
    out = cohort.outcomes
    pids = cohort.patients["patient_id"].astype(object)
    dup = out["patient_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 1
        raise InputError(
            f"patient '{out['patient_id'].iloc[row - 1]}' has more than one outcome row",
            file="outcomes",
            row=row,
            column="patient_id",
        )
    known = out.set_index(out["patient_id"].astype(object))
    missing = ~pids.isin(known.index)
    if missing.any():
        raise InputError(
            f"{int(missing.sum())} patient(s) have no outcome row (first: "
            f"'{pids[missing].iloc[0]}'); run `crs-ml label` or complete outcomes.csv",
            file="outcomes",
            column="patient_id",
        )
    cols = ["grade3_hours", "death_hours", "followup_hours"]
    return known.reindex(pids)[cols].astype("float64").reset_index(drop=True)


def _landmarks(landmarks_h) -> np.ndarray:
    lm = np.asarray(DEFAULT_LANDMARKS_H if landmarks_h is None else landmarks_h, dtype="float64")
    if lm.ndim != 1 or len(lm) == 0 or not np.isfinite(lm).all() or (lm <= 0).any():
        raise InputError(f"landmarks must be hours > 0, got {list(np.atleast_1d(lm))}")
    return np.unique(lm)


def at_risk_status(grade3_hours, death_hours, followup_hours, landmark_h, horizon_h: float):
    """Rules 1-4 of the task definition (module docstring), elementwise on float arrays
    of equal shape (``landmark_h`` may be a scalar).

    Returns (status, event, competing): status is 'included' (at risk) or the first of
    already_grade3, died, followup_ended, censored_before_horizon that applies (object
    array); event is L < grade3_hours <= H; competing is death in (L, H] without an event.
    Both are computed for every row; they define y only where status is 'included'.
    """
    times = (grade3_hours, death_hours, followup_hours)
    g3, death, fu = (np.asarray(t, dtype="float64") for t in times)
    L, H = np.asarray(landmark_h, dtype="float64"), float(horizon_h)
    event = (g3 > L) & (g3 <= H)
    competing = ~event & (death > L) & (death <= H)
    # follow-up ended before the horizon and not by death: decided without the outcome
    lost = (fu < H) & ~(death <= fu)
    conds = [g3 <= L, death <= L, fu <= L, lost]
    status = np.select(conds, list(EXCLUSION_REASONS[:4]), default="included").astype(object)
    return status, event, competing


def competing_risk_times(grade3_hours, death_hours, followup_hours, horizon_h: float):
    """(time_h, cause) elementwise: the first of grade >= 3 (cause 1), death before grade >= 3
    and within follow-up (cause 2; death_hours <= followup_hours or followup_hours empty, as
    in rule 4), end of follow-up (cause 0, censored) and ``horizon_h`` (cause 0, followed
    through). An event recorded after the end of follow-up is not used (censored at the end);
    grade >= 3 at the hour of death counts as grade >= 3, as in :func:`at_risk_status`."""
    times = (grade3_hours, death_hours, followup_hours)
    g3, death, fu = (np.asarray(t, dtype="float64") for t in times)
    H = float(horizon_h)
    end = np.fmin(np.where(np.isnan(fu), H, fu), H)
    death_seen = np.where(death <= np.where(np.isnan(fu), np.inf, fu), death, np.nan)
    event = g3 <= np.fmin(end, np.where(np.isnan(death_seen), np.inf, death_seen))
    competing = ~event & (death_seen <= end)
    time = np.select([event, competing], [g3, death_seen], default=end)
    cause = np.select([event, competing], [CAUSE_EVENT, CAUSE_COMPETING], default=CAUSE_CENSORED)
    return time, cause.astype(np.int8)


def horizon_outcome(time_h, cause, horizon_end_h):
    """Status at horizon t (object array of HORIZON_OUTCOMES) from :func:`competing_risk_times`:
    event or competing if that cause happened by t, censored if follow-up ended before t
    (time_h < t, as rule 4), else event_free (known free of both through t)."""
    time, cause = np.asarray(time_h, dtype="float64"), np.asarray(cause)
    t = np.asarray(horizon_end_h, dtype="float64")
    by_t = time <= t
    conds = [
        by_t & (cause == CAUSE_EVENT),
        by_t & (cause == CAUSE_COMPETING),
        (time < t) & (cause == CAUSE_CENSORED),
    ]
    return np.select(conds, ["event", "competing", "censored"], default="event_free").astype(object)


def horizon_label(window_h: float | None, horizon_h: float) -> str:
    """'next 24 h' for a window after the landmark; 'by day 14' (or 'by 100 h') for the end."""
    if window_h is not None:
        return f"next {float(window_h):g} h"
    days = float(horizon_h) / 24.0
    return f"by day {days:g}" if days == round(days) else f"by {float(horizon_h):g} h"


def _first_observation(cohort: Cohort) -> np.ndarray:
    """Hours of each patient's first numeric observation (cohort order; NaN if none)."""
    obs = cohort.observations
    numeric = obs[obs["value"].notna()]
    first_obs = numeric.groupby("patient_id", sort=False)["hours"].min()
    pids = cohort.patients["patient_id"].astype(object)
    return pids.map(first_obs).to_numpy(dtype="float64")


def landmark_status(cohort: Cohort, landmarks_h=None, horizon_h: float = 336.0) -> pd.DataFrame:
    """One row per patient x landmark (landmark-major, patients in cohort order).

    Columns: patient_id, person_id, landmark_h, status ('included' or an exclusion reason),
    y (nullable Int8: 0/1 for rows passing rule 4, NA otherwise), competing_event (bool),
    outcome_hours (grade3_hours).
    """
    lm = _landmarks(landmarks_h)
    H = float(horizon_h)
    oc = _outcomes_per_patient(cohort)
    n_p, n_l = len(oc), len(lm)
    g3, death, fu = (np.tile(oc[c].to_numpy(), n_l) for c in oc.columns)
    L = np.repeat(lm, n_p)
    pids = cohort.patients["patient_id"].astype(object)
    first = np.tile(_first_observation(cohort), n_l)

    status, event, competing = at_risk_status(g3, death, fu, L, H)
    status[(status == "included") & ~(first <= L)] = "no_data"
    y = pd.array(np.where(event, 1, 0), dtype="Int8")
    passed = np.isin(status, ("included", "no_data"))
    y[~passed] = pd.NA
    persons = cohort.patients["person_id"].astype(object).to_numpy()
    return pd.DataFrame(
        {
            "patient_id": pd.Series(np.tile(pids.to_numpy(), n_l), dtype=object),
            "person_id": pd.Series(np.tile(persons, n_l), dtype=object),
            "landmark_h": L,
            "status": pd.Series(status, dtype=object),
            "y": y,
            "competing_event": competing & passed,
            "outcome_hours": g3,
        }
    )


def _attrition(status: pd.DataFrame, lm: np.ndarray) -> pd.DataFrame:
    counts = pd.crosstab(status["landmark_h"], status["status"]).reindex(
        index=lm, columns=[*EXCLUSION_REASONS, "included"], fill_value=0
    )
    inc = status[status["status"] == "included"]
    by = inc.groupby("landmark_h")
    table = pd.DataFrame({"landmark_h": lm})
    table["n_patients"] = status.groupby("landmark_h").size().reindex(lm, fill_value=0).to_numpy()
    for reason in EXCLUSION_REASONS:
        table[reason] = counts[reason].to_numpy()
    table["n_at_risk"] = counts["included"].to_numpy()
    table["n_events"] = by["y"].sum().reindex(lm, fill_value=0).to_numpy()
    table["n_competing"] = by["competing_event"].sum().reindex(lm, fill_value=0).to_numpy()
    return table.astype({c: "int64" for c in ATTRITION_COLUMNS[1:]})


def attrition_table(cohort: Cohort, landmarks_h=None, horizon_h: float = 336.0) -> pd.DataFrame:
    """Per landmark: n_patients, the exclusions in rule order (already_grade3, died,
    followup_ended, censored_before_horizon, no_data), then n_at_risk (patients at risk AND
    included, i.e. the rows at L; n_patients = sum of exclusions + n_at_risk), n_events (y = 1)
    and n_competing (death before grade >= 3 within the horizon, y = 0)."""
    return _attrition(landmark_status(cohort, landmarks_h, horizon_h), _landmarks(landmarks_h))


def horizon_status(
    cohort: Cohort, landmarks_h=None, windows_h=None, horizon_h: float = 336.0
) -> pd.DataFrame:
    """Censored, competing-risk labels: one row per patient x landmark x horizon (landmark-
    major, then horizon: each window of ``windows_h`` (default ``DEFAULT_WINDOWS_H``) ending at
    min(L + w, horizon_h), then ``horizon_h``), patients in cohort order.

    Columns (``HORIZON_COLUMNS``): patient_id, person_id, landmark_h, horizon (label),
    horizon_end_h, status ('included' or the exclusion of rules 1-3 and 5: already_grade3,
    died, followup_ended, no_data; rule 4 does not apply here), outcome (HORIZON_OUTCOMES for
    included rows, None otherwise), time_h and cause (:func:`competing_risk_times`, the same
    at every horizon; they feed the censoring weights), site. Unlike rule 4, a patient whose
    follow-up ended early after a grade >= 3 event (or a death) seen before that end keeps
    the event; one whose follow-up ended before the horizon without either is ``censored``.
    """
    lm = _landmarks(landmarks_h)
    windows = np.unique(np.asarray(DEFAULT_WINDOWS_H if windows_h is None else windows_h, float))
    if windows.ndim != 1 or not np.isfinite(windows).all() or (windows <= 0).any():
        raise InputError(f"windows must be hours > 0, got {list(np.atleast_1d(windows))}")
    H = float(horizon_h)
    status = landmark_status(cohort, lm, H)
    # rule 4 belongs to the complete-case view: here the censored stay, with their times
    st = status["status"].to_numpy(dtype=object).copy()
    lost = st == "censored_before_horizon"
    oc = _outcomes_per_patient(cohort)
    n_l = len(lm)
    time, cause = competing_risk_times(*(oc[c].to_numpy() for c in oc.columns), H)
    time, cause = np.tile(time, n_l), np.tile(cause, n_l)
    if lost.any():  # rule 5 (no data at or before L) applies to them as to everyone
        first = _first_observation(cohort)
        st[lost] = np.where(np.tile(first, n_l)[lost] <= status["landmark_h"].to_numpy()[lost],
                            "included", "no_data")  # fmt: skip
    L = status["landmark_h"].to_numpy()
    sites = np.tile(cohort.patients["site"].astype(object).to_numpy(), n_l)
    parts = []
    specs = [(float(w), horizon_label(w, H)) for w in windows] + [(None, horizon_label(None, H))]
    for w, label in specs:
        end = np.minimum(L + w, H) if w is not None else np.full(len(L), H)
        outcome = horizon_outcome(time, cause, end)
        outcome[st != "included"] = None
        parts.append(
            pd.DataFrame(
                {
                    "patient_id": status["patient_id"],
                    "person_id": status["person_id"],
                    "landmark_h": L,
                    "horizon": label,
                    "horizon_end_h": end,
                    "status": pd.Series(st, dtype=object),
                    "outcome": pd.Series(outcome, dtype=object),
                    "time_h": time,
                    "cause": cause,
                    "site": pd.Series(sites, dtype=object),
                    "_order": np.arange(len(L)),
                }
            )
        )
    out = pd.concat(parts, keys=range(len(parts)), names=["_h", None]).reset_index(level=0)
    out = out.sort_values(["landmark_h", "_h", "_order"], kind="stable")
    return out[HORIZON_COLUMNS].reset_index(drop=True)


def horizon_attrition(
    cohort: Cohort, landmarks_h=None, windows_h=None, horizon_h: float = 336.0
) -> pd.DataFrame:
    """Per landmark and horizon (``HORIZON_ATTRITION_COLUMNS``): n_at_risk (rules 1-3 and 5
    passed) split into n_event, n_competing, n_event_free and n_censored (follow-up ended
    before the horizon: weighted by the censoring weights, not dropped)."""
    hs = horizon_status(cohort, landmarks_h, windows_h, horizon_h)
    inc = hs[hs["status"] == "included"]
    keys = ["landmark_h", "horizon", "horizon_end_h"]
    frame = hs.drop_duplicates(["landmark_h", "horizon"])[keys]
    counts = pd.crosstab([inc["landmark_h"], inc["horizon"]], inc["outcome"]).reindex(
        columns=list(HORIZON_OUTCOMES), fill_value=0
    )
    counts.columns = [f"n_{o}" for o in HORIZON_OUTCOMES]
    table = frame.merge(counts.reset_index(), on=["landmark_h", "horizon"], how="left")
    table = table.fillna({c: 0 for c in counts.columns})
    table["n_at_risk"] = table[counts.columns].sum(axis=1)
    ints = {c: "int64" for c in HORIZON_ATTRITION_COLUMNS if c.startswith("n_")}
    return table[HORIZON_ATTRITION_COLUMNS].astype(ints).reset_index(drop=True)


def treated_before(cohort: Cohort, patient_ids, landmarks_h) -> np.ndarray:
    """True where tocilizumab or a corticosteroid was given at hours <= landmark."""
    ev = cohort.events
    tr = ev[ev["event"].isin(["tocilizumab", "corticosteroid"])]
    first = tr.groupby("patient_id")["hours"].min()
    when = pd.Series(np.asarray(patient_ids, dtype=object)).map(first).to_numpy(dtype="float64")
    return when <= np.asarray(landmarks_h, dtype="float64")


def build_landmark_dataset(
    cohort: Cohort,
    landmarks_h=None,
    horizon_h: float = 336.0,
    features: FeatureConfig | None = None,
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """(X, y, meta), one row per included patient x landmark (landmark-major).

    X: float64 features (catalogue order); y: int64 0/1; meta: patient_id, person_id,
    landmark_h, treated_before_L, competing_event, outcome_hours, product, site, with
    ``meta.attrs["attrition"]`` = :func:`attrition_table`. Index: RangeIndex on all three.
    """
    lm = _landmarks(landmarks_h)
    status = landmark_status(cohort, lm, horizon_h)
    inc = status[status["status"] == "included"].reset_index(drop=True)
    X = build_features(cohort, inc[["patient_id", "landmark_h"]], features or FeatureConfig())
    y = inc["y"].to_numpy(dtype="int64")
    pts = cohort.patients.drop_duplicates("patient_id").set_index(
        cohort.patients["patient_id"].drop_duplicates().astype(object)
    )
    meta = pd.DataFrame(
        {
            "patient_id": inc["patient_id"].astype(object),
            "person_id": inc["person_id"].astype(object),
            "landmark_h": inc["landmark_h"].astype("float64"),
            "treated_before_L": treated_before(cohort, inc["patient_id"], inc["landmark_h"]),
            "competing_event": inc["competing_event"].astype(bool),
            "outcome_hours": inc["outcome_hours"].astype("float64"),
            "product": inc["patient_id"].map(pts["product"]).astype(object),
            "site": inc["patient_id"].map(pts["site"]).astype(object),
        }
    )
    meta.attrs["attrition"] = AttritionTable(_attrition(status, lm))
    return X, y, meta
