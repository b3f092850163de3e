"""Clinical utility of a risk score: decision curves, threshold tables and alert metrics.

Definitions (all thresholds are "flag when risk >= threshold"):

* net benefit (Vickers & Elkin 2006): NB(t) = TP/n - FP/n * t / (1 - t); treat-all uses
  TP = events, FP = non-events; treat-none is 0.
* the alert metrics work on the stacked landmark rows of the at-risk set (one row per
  patient x landmark, only landmarks before grade >= 3 onset), each row being one scoring
  of that patient at ``landmark_h``. An *alert* is a row with risk >= threshold; since
  rows are at-risk rows, every alert precedes the patient's event.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.errors import InputError
from crs_ml.evaluation.metrics import check_binary, check_risks

DEFAULT_THRESHOLDS = np.round(np.arange(0.05, 0.501, 0.05), 2)


def _thresholds(thresholds) -> np.ndarray:
    t = DEFAULT_THRESHOLDS if thresholds is None else np.atleast_1d(thresholds)
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0 or not np.isfinite(t).all() or (t <= 0).any() or (t >= 1).any():
        raise InputError("thresholds must be probabilities strictly between 0 and 1")
    return t


def _confusion(y: np.ndarray, p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """TP, FP, TN, FN for 'flag if p >= t' at each threshold, by binary search (O(n log n))."""
    pos = np.sort(p[y == 1])
    neg = np.sort(p[y == 0])
    tp = pos.size - np.searchsorted(pos, t, side="left")
    fp = neg.size - np.searchsorted(neg, t, side="left")
    return tp, fp, neg.size - fp, pos.size - tp


def net_benefit(y, p, thresholds=None) -> pd.DataFrame:
    """Decision curve: net benefit of the model, treat-all and treat-none at each threshold.

    Default thresholds 0.05, 0.10, ..., 0.50. Columns: threshold, net_benefit_model,
    net_benefit_treat_all, net_benefit_treat_none (always 0).
    """
    y, p = check_binary(y, p, probabilities=True)
    t = _thresholds(thresholds)
    n = y.size
    if n == 0:
        raise InputError("net benefit needs at least one prediction")
    tp, fp, _, _ = _confusion(y, p, t)
    odds = t / (1.0 - t)
    events = float(y.sum())
    return pd.DataFrame(
        {
            "threshold": t,
            "net_benefit_model": tp / n - fp / n * odds,
            "net_benefit_treat_all": events / n - (n - events) / n * odds,
            "net_benefit_treat_none": np.zeros_like(t),
        }
    )


def threshold_table(y, p, thresholds=None) -> pd.DataFrame:
    """Operating characteristics of 'flag if risk >= threshold' (row level).

    Columns: threshold, sensitivity, specificity, ppv, npv, alerts_per_100 (flagged share
    x 100), n_flagged, tp, fp, tn, fn. Ratios with a zero denominator are NaN.
    """
    y, p = check_binary(y, p, probabilities=True)
    t = _thresholds(thresholds)
    tp, fp, tn, fn = _confusion(y, p, t)
    n_flagged = tp + fp
    n = y.size

    def ratio(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.maximum(b, 1), np.nan)

    return pd.DataFrame(
        {
            "threshold": t,
            "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, n_flagged),
            "npv": ratio(tn, tn + fn),
            "alerts_per_100": 100.0 * n_flagged / n if n else np.full(t.shape, np.nan),
            "n_flagged": n_flagged.astype(np.int64),
            "tp": tp.astype(np.int64),
            "fp": fp.astype(np.int64),
            "tn": tn.astype(np.int64),
            "fn": fn.astype(np.int64),
        }
    )


def _as_float(values, name: str) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric", column=name) from None
    if out.ndim != 1:
        raise InputError(f"{name} must be 1-d", column=name)
    return out


def lead_time_hours(
    frame: pd.DataFrame,
    threshold: float,
    *,
    risk_col: str = "p",
    horizon_h: float | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Lead time of the first alert before grade >= 3 onset, per event patient.

    ``frame`` holds stacked landmark rows with columns ``patient_id``, ``landmark_h``,
    ``outcome_hours`` (grade3_hours, NaN if never) and ``risk_col``. An *event patient* has a
    finite ``outcome_hours`` (<= ``horizon_h`` when given) and at least one row with
    ``landmark_h < outcome_hours``. Only those rows count. The alert time is the first
    landmark whose risk >= ``threshold`` (the score is available at the landmark, as data
    up to L are used), and lead time = outcome_hours - first alert landmark.

    Returns (per_patient, summary). per_patient: patient_id, outcome_hours, first_alert_h
    (NaN if never alerted before onset), lead_time_h (NaN if not alerted), alerted.
    summary: median, q25, q75 (over alerted event patients), n_alerted_events, n_events.
    A NaN risk (or one outside [0, 1]) in any row is an error naming the rows, as in every
    metric (:func:`crs_ml.evaluation.metrics.check_risks`), not a silent "no alert".
    """
    missing = [c for c in ("patient_id", "landmark_h", "outcome_hours", risk_col) if c not in frame]
    if missing:
        raise InputError(f"lead time needs column(s) {missing}", column=missing[0])
    landmark = _as_float(frame["landmark_h"], "landmark_h")
    onset = _as_float(frame["outcome_hours"], "outcome_hours")
    risk = check_risks(frame[risk_col], risk_col)
    keep = np.isfinite(onset) & (landmark < onset)
    if horizon_h is not None:
        keep &= onset <= horizon_h
    rows = pd.DataFrame(
        {
            "patient_id": frame["patient_id"].to_numpy()[keep],
            "outcome_hours": onset[keep],
            "alert_h": np.where(risk[keep] >= threshold, landmark[keep], np.nan),
        }
    )
    per_patient = rows.groupby("patient_id", sort=True, dropna=False).agg(
        outcome_hours=("outcome_hours", "first"), first_alert_h=("alert_h", "min")
    )
    per_patient = per_patient.reset_index()
    per_patient["lead_time_h"] = per_patient["outcome_hours"] - per_patient["first_alert_h"]
    per_patient["alerted"] = per_patient["first_alert_h"].notna()
    lead = per_patient.loc[per_patient["alerted"], "lead_time_h"].to_numpy(dtype=np.float64)
    q25, median, q75 = np.quantile(lead, [0.25, 0.5, 0.75]) if lead.size else (np.nan,) * 3
    summary = {
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "n_alerted_events": int(lead.size),
        "n_events": int(len(per_patient)),
    }
    return per_patient, summary


def alerts_per_patient_day(
    patient_id, landmark_h, p, threshold: float, landmark_spacing_h: float = 6.0
) -> dict:
    """Alert burden of repeated scoring every ``landmark_spacing_h`` hours.

    Each row (patient x landmark, at-risk) stands for ``landmark_spacing_h`` hours of
    monitoring, so patient_days = n_rows * spacing / 24. ``alerts`` counts rows with
    risk >= threshold (every high-risk score shown); ``new_alerts`` counts only the rows
    where a patient crosses the threshold (first row, or previous landmark below it).
    Returns alerts, new_alerts, patient_days, alerts_per_patient_day,
    new_alerts_per_patient_day, n_patients. A NaN risk (or one outside [0, 1]) is an error
    naming the rows (:func:`crs_ml.evaluation.metrics.check_risks`), not a silent "no alert".
    """
    pid = np.asarray(patient_id)
    landmark = _as_float(landmark_h, "landmark_h")
    risk = check_risks(p, "p")
    if not (pid.shape[0] == landmark.shape[0] == risk.shape[0]):
        raise InputError("patient_id, landmark_h and p differ in length")
    if landmark_spacing_h <= 0:
        raise InputError("landmark_spacing_h must be > 0")
    codes = pd.factorize(pid)[0]
    order = np.lexsort((landmark, codes))
    flag = (risk >= threshold)[order]
    same_patient = np.r_[False, codes[order][1:] == codes[order][:-1]]
    previous_flag = np.r_[False, flag[:-1]] & same_patient
    alerts = int(flag.sum())
    new_alerts = int((flag & ~previous_flag).sum())
    patient_days = pid.shape[0] * landmark_spacing_h / 24.0
    per_day = (lambda k: k / patient_days) if patient_days > 0 else (lambda k: float("nan"))
    return {
        "alerts": alerts,
        "new_alerts": new_alerts,
        "patient_days": float(patient_days),
        "alerts_per_patient_day": per_day(alerts),
        "new_alerts_per_patient_day": per_day(new_alerts),
        "n_patients": int(codes.max() + 1) if codes.size else 0,
    }


def number_needed_to_evaluate(patient_id, y, p, threshold: float) -> dict:
    """Patient-level number needed to evaluate: alerted patients per alerted patient with event.

    A patient is *alerted* if any of their landmark rows has risk >= threshold, and is an
    *event patient* if any row has y = 1 (grade >= 3 in the horizon after that landmark).
    NNE = n_alerted / n_alerted_with_event = 1 / patient-level PPV; NaN when nobody is
    alerted, inf when no alerted patient has an event.
    """
    y, risk = check_binary(y, p, probabilities=True)
    pid = np.asarray(patient_id)
    if pid.shape[0] != y.shape[0]:
        raise InputError("patient_id and y differ in length")
    codes, uniques = pd.factorize(pid)
    n_pat = len(uniques)
    alerted = np.bincount(codes, weights=(risk >= threshold), minlength=n_pat) > 0
    event = np.bincount(codes, weights=y, minlength=n_pat) > 0
    n_alerted = int(alerted.sum())
    n_hit = int((alerted & event).sum())
    if n_alerted == 0:
        nne = ppv = float("nan")
    else:
        ppv = n_hit / n_alerted
        nne = n_alerted / n_hit if n_hit else float("inf")
    return {
        "nne": nne,
        "ppv_patient": ppv,
        "n_alerted": n_alerted,
        "n_alerted_with_event": n_hit,
        "n_patients": n_pat,
        "n_event_patients": int(event.sum()),
    }
