"""External validation of a model bundle on a labelled cohort: everything in metrics.json.

At each reported landmark L (one row per patient at risk at L) the model is evaluated overall
and for patients treated / untreated (tocilizumab or a corticosteroid at hours <= L):
discrimination (AUROC, AUPRC), Brier score, calibration intercept and slope (Van Calster
2019), a decision curve (Vickers 2006) and a threshold table. Alert metrics (lead time,
alerts per patient-day, number needed to evaluate) use the stacked rows of all the model's
landmarks, i.e. the patient scored every few hours. The m-EASIX and early-fever baselines
are scored on the same rows, subgroups by product, site, sex and age band, and a drift
check compares the cohort's features with the training fingerprint (:mod:`crs_ml.evaluation.drift`).

Every interval is a 95% percentile bootstrap resampling PERSONS (all rows of a person move
together); see :data:`INTERVALS_CONDITION_ON`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.config import DEFAULT_REPORT_LANDMARKS_H, config_from_dict, stored_features
from crs_ml.errors import InputError
from crs_ml.evaluation import metrics as M
from crs_ml.evaluation import utility as U
from crs_ml.evaluation.censored import (
    censored_summary,
    censoring_strata,
    incidence_curves_by_band,
)
from crs_ml.evaluation.comparisons import (
    baseline_scores,
    cohort_summary,
    compare_baselines,
    sample_size,
    subgroup_attributes,
    subgroup_metrics,
)
from crs_ml.evaluation.drift import drift_summary, drift_table
from crs_ml.evaluation.performance import (  # noqa: F401 - re-exported for the report and tests
    POINT_METRICS,
    VALIDATION_MIN_EVENTS,
    WeightedMetrics,
    performance,
    point_metrics,
)
from crs_ml.evaluation.verdict import validation_verdict
from crs_ml.features.builder import build_features
from crs_ml.features.landmarks import build_landmark_dataset, horizon_status
from crs_ml.fingerprints import data_fingerprint, dataset_digest

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


def observed_expected(y, p, groups, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05):
    """Observed / expected events (events / sum of risks) and a person-bootstrap percentile
    interval (the persons drawn as in :func:`crs_ml.evaluation.performance.performance`).

    Above 1 the model under-predicts, below 1 it over-predicts. NaN without risk mass; no
    interval for a slice with too few events (:func:`crs_ml.evaluation.metrics.too_few_events`),
    as for the other metrics."""
    from crs_ml.evaluation.resampling import GroupResampler

    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    expected = float(p.sum())
    oe = float(y.sum()) / expected if expected > 0 else float("nan")
    ci = [float("nan"), float("nan")]
    if n_boot > 0 and not M.too_few_events(y.sum(), y.size):
        resampler = GroupResampler(groups, y.size)
        draws = resampler.draw(np.random.default_rng(seed + 7), n_boot)
        g_y = np.bincount(resampler.codes, weights=y, minlength=resampler.n_groups)
        g_p = np.bincount(resampler.codes, weights=p, minlength=resampler.n_groups)
        counts = np.stack([np.bincount(d, minlength=resampler.n_groups) for d in draws])
        ratios = (counts @ g_y) / (counts @ g_p)
        ratios = ratios[np.isfinite(ratios)]
        if ratios.size:
            lo, hi = np.percentile(ratios, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            ci = [float(lo), float(hi)]
    return {"observed_expected": oe, "observed_expected_ci": ci}


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
    #: one row per patient x reported landmark (identifiers: written locally, never logged)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


def prediction_rows(
    cohort, report_landmarks_h, horizon_h: float, meta: pd.DataFrame, risk, treated
) -> pd.DataFrame:
    """Every patient x reported landmark: patient_id and person_id as in the input,
    landmark_h, risk (NaN when not scored), y (0/1; missing when excluded before the outcome
    is defined), at_risk (at risk with data: scored and evaluated), exclusion_reason (the
    reason of :func:`crs_ml.features.landmarks.landmark_status`; missing when at risk),
    treated_before_L (scored rows only)."""
    from crs_ml.features.landmarks import landmark_status

    status = landmark_status(cohort, report_landmarks_h, horizon_h)
    scored = pd.DataFrame(
        {
            "patient_id": meta["patient_id"].astype(object).to_numpy(),
            "landmark_h": meta["landmark_h"].to_numpy(dtype=float),
            "risk": np.asarray(risk, dtype=float),
            "treated_before_L": pd.array(np.asarray(treated, dtype=bool), dtype="boolean"),
        }
    )
    out = status.merge(scored, on=["patient_id", "landmark_h"], how="left", validate="1:1")
    out["at_risk"] = out["status"].eq("included").to_numpy()
    out["exclusion_reason"] = out["status"].where(~out["at_risk"], None)
    return out[
        ["patient_id", "person_id", "landmark_h", "risk", "y", "at_risk", "exclusion_reason"]
        + ["treated_before_L"]
    ].reset_index(drop=True)


def model_settings(bundle) -> dict[str, Any]:
    """Task, features and risk bands the bundle was trained with (defaults when absent)."""
    stored = dict(bundle.manifest.get("config") or {})
    cfg = config_from_dict(stored, source="model bundle")  # (registers its site variables)
    return {
        "landmarks_h": [float(h) for h in cfg.task.landmarks_h],
        "horizon_h": float(cfg.task.horizon_h),
        "features": stored_features(stored),
        "censoring_by": cfg.task.censoring_by,
        "low_below": float(cfg.scoring.low_below),
        "high_from": float(cfg.scoring.high_from),
        "experiment": cfg.mlflow.experiment,
        "registered_model": cfg.mlflow.registered_model,
    }


def _censored_summary(rows: pd.DataFrame, risk, end_h: float, censoring_by: str, n_boot: int,
                      seed: int) -> dict:  # fmt: skip
    """:func:`crs_ml.evaluation.censored.censored_summary` of one landmark's rows by
    ``end_h``, the censoring weights within deciles of ``risk``, sites or overall."""
    strata = censoring_strata(censoring_by, rows["site"].to_numpy(), risk)
    return censored_summary(rows["time_h"], rows["cause"], risk, end_h,
                            rows["person_id"].astype(str).to_numpy(), strata, n_boot, seed)  # fmt: skip


def censored_view(bundle, cohort, report_lms, s: dict, n_boot: int, seed: int) -> dict:
    """Per report landmark, the IPCW metrics by the horizon (crs_ml.evaluation.censored) on
    everyone at risk at L with data (rules 1-3 and 5), the censored included through the
    censoring weights (reverse Kaplan-Meier within deciles of predicted risk, sites or
    overall: the bundle's ``task.censoring_by``), and the observed cumulative incidence curves (Aalen-
    Johansen, every 6 h from L to the horizon) by risk band. For a model with short horizons
    (:mod:`crs_ml.modeling.horizons`), ``windows`` holds the same metrics per window (key
    e.g. ``24h``) for its risk (capped as scoring caps it) against grade >= 3 by
    min(L + w, horizon), on the same rows, weights refit at that end."""
    H = s["horizon_h"]
    hs = horizon_status(cohort, report_lms, [], H)
    inc = hs[hs["status"] == "included"].reset_index(drop=True)
    if inc.empty:
        return {}
    X = build_features(cohort, inc[["patient_id", "landmark_h"]], s["features"])
    risk = bundle.predict_risk(X)
    windows = bundle.horizon_risks(X, risk)
    lo, hi = s["low_below"], s["high_from"]
    bands = {"low": (-np.inf, lo), "intermediate": (lo, hi), "high": (hi, np.inf)}
    out = {}
    for h in report_lms:
        at = (inc["landmark_h"] == h).to_numpy()
        if not at.any():
            continue
        rows = inc[at]
        out[f"{h:g}"] = _censored_summary(rows, risk[at], H, s["censoring_by"], n_boot, seed)
        out[f"{h:g}"]["censoring_by"] = s["censoring_by"]
        out[f"{h:g}"]["curves_by_band"] = incidence_curves_by_band(
            rows["time_h"], rows["cause"], risk[at], bands, np.arange(h, H + 1e-9, 6.0)
        )
        if windows:
            out[f"{h:g}"]["windows"] = {
                hz.suffix: {"window_h": hz.window_h, "horizon": hz.label,
                            "risk_column": hz.column,
                            **_censored_summary(rows, windows[hz.column][at],
                                                min(h + hz.window_h, H), s["censoring_by"],
                                                n_boot, seed)}
                for hz, _ in bundle.horizons
            }  # fmt: skip
    return out


def validate_cohort(
    bundle,
    cohort,
    report_landmarks_h=tuple(DEFAULT_REPORT_LANDMARKS_H),
    n_boot: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
) -> ValidationResult:
    """Score a labelled cohort with ``bundle`` and compute every metric of metrics.json."""
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
        out.update(observed_expected(y[mask], risk[mask], persons[mask], n_boot, seed))
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
    reported = np.isin(lm, report_lms)
    predictions = prediction_rows(
        cohort, report_lms, s["horizon_h"], meta.loc[reported], risk[reported], treated[reported]
    )
    digest = dataset_digest(data_fingerprint(cohort, y, meta))
    metrics: dict[str, Any] = {
        "verdict": {},  # filled below from the numbers; first in metrics.json
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
        "censored": censored_view(bundle, cohort, report_lms, s, n_boot, seed),
        "alerts": alerts,
        "drift": drift_summary(drift),
        "sample_size": sample_size(per_landmark, bundle),
    }
    metrics["verdict"] = validation_verdict(metrics)
    return ValidationResult(metrics, X, y, meta, risk, baselines, attrition, drift, predictions)
