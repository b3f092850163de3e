"""External validation of a model bundle on a labelled cohort: everything in metrics.json.

At each reported landmark L (one row per patient at risk at L) the model is evaluated overall
and for patients treated / untreated (tocilizumab or a corticosteroid at hours <= L):
discrimination (AUROC, AUPRC), Brier score, calibration intercept and slope (Van Calster
2019), a decision curve (Vickers 2006) and a threshold table. Alert metrics (lead time,
alerts per patient-day, number needed to evaluate) use the stacked rows of all the model's
landmarks, i.e. the patient scored every few hours. The m-EASIX and early-fever baselines
are scored on the same rows, subgroups by product, site, sex and age band, and a drift
check compares the cohort's features with the training fingerprint (:mod:`crs_ml.drift`).

Every interval is a 95% percentile bootstrap resampling PERSONS (all rows of a person move
together); see :data:`INTERVALS_CONDITION_ON`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from crs_ml import metrics as M
from crs_ml import utility as U
from crs_ml.errors import InputError
from crs_ml.resampling import GroupResampler
from crs_ml.validate_compare import (
    VALIDATION_MIN_EVENTS,
    baseline_scores,
    cohort_summary,
    compare_baselines,
    sample_size,
    subgroup_attributes,
    subgroup_metrics,
)

Progress = Callable[[str, int, int], None]

#: subgroups with fewer events are listed as skipped, not evaluated
SUBGROUP_MIN_EVENTS = 10
EXTRA_THRESHOLDS = (0.1, 0.2, 0.3)
INTERVALS_CONDITION_ON = (
    "95% intervals are percentile intervals of a bootstrap that resamples persons of this "
    "validation cohort ({n_boot} replicates); they condition on the model as it was trained "
    "(its training data and fitting are held fixed) and cover only the sampling variability "
    "of this cohort."
)
_POINT = ("auroc", "auprc", "brier", "calibration_intercept", "calibration_slope")


# --------------------------------------------------------------------------- metrics
def point_metrics(y, p) -> dict[str, float]:
    """AUROC, AUPRC, Brier, calibration intercept and slope (NaN with one class)."""
    intercept, slope = M.calibration_intercept_slope(y, p)
    return {
        "auroc": M.auroc(y, p),
        "auprc": M.auprc(y, p),
        "brier": M.brier(y, p),
        "calibration_intercept": intercept,
        "calibration_slope": slope,
    }


class WeightedMetrics:
    """The five point metrics of fixed (y, p) under row weights, in O(n) per call.

    A person-level bootstrap replicate is the original rows weighted by how often their
    person was drawn, so the risk order (and its ties) is computed once; AUROC (Mann-Whitney,
    ties 1/2), AUPRC (tied scores one threshold), Brier and the calibration fits then equal
    the :mod:`crs_ml.metrics` functions on the materialised resample. The calibration
    intercept and slope are weighted Newton fits started at the full-data estimates.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray, start=(0.0, 1.0)) -> None:
        from scipy.special import logit

        self.y = np.asarray(y, dtype=np.float64)
        self.p = np.asarray(p, dtype=np.float64)
        _, self.code = np.unique(self.p, return_inverse=True)  # ascending risk
        self.k = int(self.code.max()) + 1 if self.y.size else 0
        self.lp = logit(np.clip(self.p, M.EPS, 1.0 - M.EPS))
        self.start = [0.0 if not np.isfinite(v) else float(v) for v in start]

    def __call__(self, w: np.ndarray) -> list[float]:
        y, code, k = self.y, self.code, self.k
        pos = np.bincount(code, weights=w * y, minlength=k)
        tot = np.bincount(code, weights=w, minlength=k)
        neg = tot - pos
        n_pos, n_neg = pos.sum(), neg.sum()
        auroc = float(np.dot(pos, np.cumsum(neg) - 0.5 * neg) / (n_pos * n_neg))
        tp, flagged = np.cumsum(pos[::-1]), np.cumsum(tot[::-1])
        precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
        auprc = float(np.dot(np.diff(np.r_[0.0, tp / n_pos]), precision))
        brier = float(np.dot(w, (self.p - y) ** 2) / w.sum())
        return [auroc, auprc, brier, self._intercept(w), self._slope(w)]

    def _newton(self, w: np.ndarray, beta: np.ndarray, slope: bool) -> np.ndarray:
        y, lp = self.y, self.lp

        def eta(b):
            return b[0] + b[1] * lp if slope else lp + b[0]

        def loglik(e):
            return float(np.dot(w, y * e - np.logaddexp(0.0, e)))

        ll = loglik(eta(beta))
        for _ in range(50):
            mu = expit(eta(beta))
            r, v = w * (y - mu), w * mu * (1.0 - mu)
            if slope:
                g = np.array([r.sum(), np.dot(r, lp)])
                h = np.array([[v.sum(), np.dot(v, lp)], [np.dot(v, lp), np.dot(v, lp * lp)]])
                try:
                    step = np.linalg.solve(h, g)
                except np.linalg.LinAlgError:
                    break
            else:
                step = np.array([r.sum() / v.sum()])
            t = 1.0
            while t > 1e-8:  # step halving keeps the log-likelihood from falling
                new = beta + t * step
                ll_new = loglik(eta(new))
                if ll_new >= ll - 1e-12 * (1.0 + abs(ll)):
                    break
                t /= 2.0
            beta, ll = new, ll_new
            if np.max(np.abs(t * step)) < 1e-10 * (1.0 + np.max(np.abs(beta))):
                return beta if np.max(np.abs(beta)) < 1e4 else beta * np.nan
        return beta * np.nan

    def _intercept(self, w: np.ndarray) -> float:
        return float(self._newton(w, np.array([self.start[0]]), slope=False)[0])

    def _slope(self, w: np.ndarray) -> float:
        return float(self._newton(w, np.array([0.0, self.start[1] or 1.0]), slope=True)[1])


def performance(y, p, groups, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Counts, point estimates and person-level bootstrap percentile intervals.

    Keys: n, n_events, n_persons, event_rate, mean_risk, reaches_100_events, then each of
    auroc, auprc, brier, calibration_intercept, calibration_slope with ``<name>_ci`` =
    [lo, hi], and ``bootstrap`` = replicates used / skipped (one outcome class only).
    """
    y, p = M.check_binary(y, p, probabilities=True)
    groups = np.asarray(groups)
    n, events = int(y.size), int(y.sum())
    out: dict[str, Any] = {
        "n": n,
        "n_events": events,
        "n_persons": int(pd.unique(groups).size),
        "event_rate": events / n if n else float("nan"),
        "mean_risk": float(p.mean()) if n else float("nan"),
        "reaches_100_events": events >= VALIDATION_MIN_EVENTS,
    }
    out.update(point_metrics(y, p) if n else dict.fromkeys(_POINT, float("nan")))
    values = np.full((max(n_boot, 0), len(_POINT)), np.nan)
    skipped = 0
    if n_boot > 0 and 0 < events < n:
        resampler = GroupResampler(groups, n)
        draws = resampler.draw(np.random.default_rng(seed), n_boot)
        replicate = WeightedMetrics(
            y, p, start=(out["calibration_intercept"], out["calibration_slope"])
        )
        for b in range(n_boot):
            w = np.bincount(draws[b], minlength=resampler.n_groups)[resampler.codes]
            if not 0 < np.dot(w, y) < w.sum():
                skipped += 1
                continue
            values[b] = replicate(w.astype(np.float64))
    for j, name in enumerate(_POINT):
        col = values[:, j][np.isfinite(values[:, j])]
        lo, hi = (
            np.percentile(col, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            if col.size
            else (np.nan, np.nan)
        )
        out[f"{name}_ci"] = [float(lo), float(hi)]
    out["bootstrap"] = {"replicates": int(n_boot), "skipped_one_class": skipped}
    return out


def decision_curve(y, p, thresholds=None) -> list[dict]:
    """Net benefit of the model, treat-all and treat-none (thresholds 0.05-0.50 by default)."""
    return U.net_benefit(y, p, thresholds).to_dict(orient="records")


def operating_points(y, p, thresholds) -> list[dict]:
    """Sensitivity, specificity, PPV, NPV and alerts per 100 patients at each threshold."""
    return U.threshold_table(y, p, sorted(set(thresholds))).to_dict(orient="records")


def alert_metrics(
    frame: pd.DataFrame, threshold: float, horizon_h: float | None, spacing_h: float
) -> dict:
    """Alerts of repeated scoring: ``frame`` has patient_id, landmark_h, outcome_hours, y, risk.

    lead time = grade >= 3 onset minus the first landmark with risk >= threshold (event
    patients alerted before onset; median and IQR); alerts per patient-day (each row stands
    for ``spacing_h`` hours of monitoring); number needed to evaluate (alerted patients per
    alerted patient with an event).
    """
    _, lead = U.lead_time_hours(frame, threshold, risk_col="risk", horizon_h=horizon_h)
    burden = U.alerts_per_patient_day(
        frame["patient_id"], frame["landmark_h"], frame["risk"], threshold, spacing_h
    )
    nne = U.number_needed_to_evaluate(frame["patient_id"], frame["y"], frame["risk"], threshold)
    return {
        "threshold": float(threshold),
        "lead_time_h": {
            "median": lead["median"],
            "iqr": [lead["q25"], lead["q75"]],
            "n_alerted_events": lead["n_alerted_events"],
            "n_events": lead["n_events"],
        },
        "event_patients_alerted_share": (
            lead["n_alerted_events"] / lead["n_events"] if lead["n_events"] else float("nan")
        ),
        "alerts_per_patient_day": burden["alerts_per_patient_day"],
        "new_alerts_per_patient_day": burden["new_alerts_per_patient_day"],
        "patient_days": burden["patient_days"],
        "number_needed_to_evaluate": nne["nne"],
        "n_alerted_patients": nne["n_alerted"],
        "n_patients": nne["n_patients"],
    }


# --------------------------------------------------------------------------- the run
@dataclass
class ValidationResult:
    """metrics.json content plus what the report's figures need (never written as rows)."""

    metrics: dict[str, Any]
    X: pd.DataFrame
    y: np.ndarray
    meta: pd.DataFrame
    risk: np.ndarray
    baselines: dict[str, dict] = field(default_factory=dict)
    attrition: pd.DataFrame = field(default_factory=pd.DataFrame)
    drift: pd.DataFrame = field(default_factory=pd.DataFrame)


def model_settings(bundle) -> dict[str, Any]:
    """Task, features and risk bands the bundle was trained with (defaults when absent)."""
    from crs_ml.config import config_from_dict

    cfg = config_from_dict(dict(bundle.manifest.get("config") or {}), source="model bundle")
    return {
        "landmarks_h": [float(h) for h in cfg.task.landmarks_h],
        "horizon_h": float(cfg.task.horizon_h),
        "features": cfg.features,
        "low_below": float(cfg.scoring.low_below),
        "high_from": float(cfg.scoring.high_from),
        "experiment": cfg.mlflow.experiment,
        "registered_model": cfg.mlflow.registered_model,
    }


def validate_cohort(
    bundle,
    cohort,
    report_landmarks_h=(24.0, 48.0),
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
) -> ValidationResult:
    """Score a labelled cohort with ``bundle`` and compute every metric of metrics.json."""
    from crs_ml.drift import drift_summary, drift_table
    from crs_ml.landmarks import build_landmark_dataset
    from crs_ml.tracking import data_fingerprint, dataset_digest

    s = model_settings(bundle)
    report_lms = sorted({float(h) for h in report_landmarks_h})
    if not report_lms or any(h <= 0 for h in report_lms):
        raise InputError(f"--landmarks must be hours > 0, got {report_landmarks_h}")
    model_lms = s["landmarks_h"]
    X, y, meta = build_landmark_dataset(
        cohort, sorted(set(model_lms) | set(report_lms)), s["horizon_h"], s["features"]
    )
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        raise InputError(
            "no patient is at risk with data at any landmark: nothing to validate",
            file=str(cohort.source) if cohort.source else None,
        )
    risk = bundle.predict_risk(X)
    lm = meta["landmark_h"].to_numpy(dtype=float)
    persons = meta["person_id"].astype(str).to_numpy()
    treated = meta["treated_before_L"].to_numpy(dtype=bool)
    thresholds = sorted({s["low_below"], s["high_from"], *EXTRA_THRESHOLDS})
    baselines = baseline_scores(X, s["features"].high_fever_c)
    attrs = subgroup_attributes(cohort, meta)
    total, done = len(report_lms) + 2, 0

    def tick(stage: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(stage, done, total)

    def block(mask: np.ndarray, with_curves: bool) -> dict:
        out = performance(y[mask], risk[mask], persons[mask], n_boot, seed)
        if with_curves and mask.any():
            out["net_benefit"] = decision_curve(y[mask], risk[mask])
            out["threshold_table"] = operating_points(y[mask], risk[mask], thresholds)
            bins = M.calibration_curve_binned(y[mask], risk[mask], n_bins=10)
            out["calibration_curve"] = bins.to_dict(orient="records")
        return out

    per_landmark: dict[str, Any] = {}
    for h in report_lms:
        at = lm == h
        entry: dict[str, Any] = {
            "landmark_h": h,
            "training_landmark": h in set(model_lms),
            "overall": block(at, True),
            "untreated": block(at & ~treated, True),
            "treated": block(at & treated, True),
        }
        if at.any():
            base = {
                k: {**v, "score": v["score"][at], "missing": v["missing"][at]}
                for k, v in baselines.items()
            }
            entry["baselines"] = compare_baselines(y[at], risk[at], base, persons[at], n_boot, seed)
            entry["subgroups"] = subgroup_metrics(
                y[at],
                risk[at],
                persons[at],
                attrs[at].reset_index(drop=True),
                n_boot,
                seed,
                SUBGROUP_MIN_EVENTS,
            )
        per_landmark[f"{h:g}"] = entry
        tick("validation metrics")

    stacked = np.isin(lm, model_lms)
    all_block = block(stacked, False)
    tick("validation metrics")
    spacing = float(np.median(np.diff(model_lms))) if len(model_lms) > 1 else 24.0
    frame = pd.DataFrame(
        {
            "patient_id": meta["patient_id"].astype(str).to_numpy()[stacked],
            "landmark_h": lm[stacked],
            "outcome_hours": meta["outcome_hours"].to_numpy(dtype=float)[stacked],
            "y": y[stacked],
            "risk": risk[stacked],
        }
    )
    alerts = alert_metrics(frame, s["high_from"], s["horizon_h"], spacing)
    alerts["by_threshold"] = [alert_metrics(frame, t, s["horizon_h"], spacing) for t in thresholds]
    alerts.update({"landmarks_h": model_lms, "landmark_spacing_h": spacing})
    fingerprint = bundle.manifest.get("fingerprint") or {}
    drift = drift_table(X.loc[stacked], fingerprint.get("features"))
    tick("validation metrics")
    attrition = meta.attrs.get("attrition", pd.DataFrame())
    digest = dataset_digest(data_fingerprint(cohort, y, meta))
    metrics = {
        "settings": {
            "report_landmarks_h": report_lms,
            "model_landmarks_h": model_lms,
            "horizon_h": s["horizon_h"],
            "bootstrap": int(n_boot),
            "seed": int(seed),
            "risk_bands": {"low_below": s["low_below"], "high_from": s["high_from"]},
            "thresholds": thresholds,
            "high_risk_alert_threshold": s["high_from"],
        },
        "intervals_condition_on": INTERVALS_CONDITION_ON.format(n_boot=n_boot),
        "cohort": {**cohort_summary(cohort, y, meta, stacked), "dataset_digest": digest},
        "attrition": attrition.to_dict(orient="records"),
        "landmarks": per_landmark,
        "all_landmarks": all_block,
        "alerts": alerts,
        "drift": drift_summary(drift),
        "sample_size": sample_size(per_landmark, bundle),
    }
    return ValidationResult(metrics, X, y, meta, risk, baselines, attrition, drift)
