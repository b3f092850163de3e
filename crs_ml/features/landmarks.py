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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort
from crs_ml.config import DEFAULT_LANDMARKS_H, FeatureConfig
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
    obs = cohort.observations
    numeric = obs[obs["value"].notna()]
    first_obs = numeric.groupby("patient_id", sort=False)["hours"].min()
    pids = cohort.patients["patient_id"].astype(object)
    first = np.tile(pids.map(first_obs).to_numpy(dtype="float64"), n_l)

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
