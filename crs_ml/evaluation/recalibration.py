"""Site recalibration: refit only the calibration map of a model's margin on a site's data.

The calibrated log-odds of a bundle are ``slope * margin + intercept``
(:meth:`crs_ml.modeling.bundle.Bundle.predict_margin`): for xgboost the Platt map of the raw
booster margin; for the stack the Platt map of its blend ``sum_m w_m logit_m`` of the
members' calibrated log-odds; for the other families the identity map of their own log-odds.
Recalibration keeps the model files (booster, members and weights, estimator), and so the
margin and its unscaled SHAP values, byte for byte, and updates the two numbers (Vergouwe et
al., Stat Med 2017, model-updating hierarchy), with ``lp = slope * margin + intercept`` the
current log-odds:

* ``intercept`` (recalibration in the large): ``logit P = lp + delta``; new intercept =
  intercept + delta, slope unchanged;
* ``logistic`` (logistic recalibration): ``logit P = a + b * lp``; new slope = b * slope,
  new intercept = a + b * intercept;
* ``auto``: a closed test. (1) logistic recalibration against the original model, likelihood
  ratio test on 2 df: not significant at ``alpha`` -> keep the original (``none``);
  (2) otherwise logistic against intercept-only on 1 df: significant -> ``logistic``, else
  ``intercept``. With fewer than ``MIN_EVENTS_SLOPE`` (20) persons with an event the slope
  is not estimated (too few events): only the intercept update is tested (1 df against the
  original).

Landmark rows of one person are correlated, so each likelihood-ratio statistic is divided by
the mean number of rows per person (a design effect with the intra-person correlation taken
as 1: conservative). The site's persons are split (``holdout`` share, stratified by whether a
person has an event, seeded): the map is fitted on one part and calibration before and after
is measured on the other, which the fit never saw.

The rows are everyone at risk with data at each landmark (rules 1-3 and 5 of
:func:`crs_ml.features.landmarks.horizon_status`), weighted by censoring weights by the
horizon as in training (:func:`crs_ml.evaluation.censored.landmark_weights`; within deciles
of the predicted risk, the validation report's choice, the refit intercept under
risk-dependent loss was 0.16-0.21 log-odds low on three simulated sites, against 0.01-0.10
with one G per landmark: README, "Site recalibration"): a patient censored before the horizon
weighs 0, an event seen before a loss counts. The likelihood and its likelihood-ratio tests
are weighted (weights of mean 1).

A model with short horizons (:mod:`crs_ml.modeling.horizons`): only the day-14 map is refit;
the windows keep their training calibration (copied unchanged) and stay capped by the
recalibrated day-14 risk. The summary says so (``short_horizons`` and a warning).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import expit

from crs_ml.config import DEFAULT_REPORT_LANDMARKS_H
from crs_ml.errors import InputError
from crs_ml.evaluation import metrics as M
from crs_ml.evaluation.censored import landmark_weights
from crs_ml.evaluation.performance import performance
from crs_ml.evaluation.validate import model_settings
from crs_ml.evaluation.verdict import MIN_EVENTS_SLOPE, recalibration_warnings
from crs_ml.features.builder import build_features
from crs_ml.features.landmarks import horizon_status

ALPHA = 0.05
METHODS = ("auto", "intercept", "logistic")
#: what the recalibrated map is applied to, per model type (others: their own log-odds)
MARGINS = {
    "xgboost": "the raw booster margin",
    "stack": "the stack's blend of its members' calibrated log-odds",
}


@dataclass
class RecalibrationFit:
    """A fitted calibration map on the margin and how it was chosen."""

    method: str  # none, intercept or logistic
    slope: float
    intercept: float
    previous_slope: float
    previous_intercept: float
    requested: str = "auto"
    n_rows: int = 0
    n_persons: int = 0
    n_event_persons: int = 0
    design_effect: float = 1.0
    tests: dict[str, Any] = field(default_factory=dict)
    rule: str = ""


def _loglik(y: np.ndarray, eta: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(w * (y * eta - np.logaddexp(0.0, eta))))


def fit_recalibration(
    margin,
    y,
    groups,
    slope: float,
    intercept: float,
    method: str = "auto",
    alpha: float = ALPHA,
    min_events_slope: int = MIN_EVENTS_SLOPE,
    weights=None,
) -> RecalibrationFit:
    """Fit the calibration map of ``margin`` to ``y`` (see the module docstring);
    ``weights``: censoring weights of the rows (None: all 1; rows of weight 0 are left out)."""
    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, not '{method}'")
    y = np.asarray(y, dtype=float)
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=float)
    keep = w > 0
    y, w = y[keep], w[keep]
    margin = np.asarray(margin, dtype=float)[keep]
    groups = np.asarray(groups).astype(str)[keep]
    if y.size == 0 or y.min() == y.max():
        raise InputError(
            f"recalibration needs both outcomes in the fitting data ({int(y.sum())} events "
            f"in {y.size} landmark rows)"
        )
    lp = slope * margin + intercept
    ones = np.ones((y.size, 1))
    delta = M.fit_logistic(ones, y, offset=lp, weights=w)[0]
    a, b = M.fit_logistic(np.column_stack([ones, lp]), y, start=np.array([0.0, 1.0]),
                          weights=w)  # fmt: skip
    ll0, ll1, ll2 = _loglik(y, lp, w), _loglik(y, lp + delta, w), _loglik(y, a + b * lp, w)
    uniq, codes = np.unique(groups, return_inverse=True)
    event_persons = int((np.bincount(codes, weights=y, minlength=uniq.size) > 0).sum())
    deff = y.size / uniq.size

    def lr(ll_big: float, ll_small: float, df: int) -> dict[str, float]:
        stat = max(0.0, 2.0 * (ll_big - ll_small)) / deff
        return {"statistic": stat, "df": df, "p_value": float(stats.chi2.sf(stat, df))}

    slope_ok = event_persons >= min_events_slope and np.isfinite(b)
    tests = {
        "intercept_vs_original": lr(ll1, ll0, 1),
        "logistic_vs_original": lr(ll2, ll0, 2) if slope_ok else None,
        "logistic_vs_intercept": lr(ll2, ll1, 1) if slope_ok else None,
    }
    if method == "auto":
        if not slope_ok:
            chosen = "intercept" if tests["intercept_vs_original"]["p_value"] < alpha else "none"
        elif tests["logistic_vs_original"]["p_value"] >= alpha:
            chosen = "none"
        else:
            significant = tests["logistic_vs_intercept"]["p_value"] < alpha
            chosen = "logistic" if significant else "intercept"
    elif method == "logistic" and not np.isfinite(b):
        raise InputError("logistic recalibration did not converge (separation?): use intercept")
    else:
        chosen = method
    new = {
        "none": (slope, intercept),
        "intercept": (slope, intercept + delta),
        "logistic": (b * slope, a + b * intercept) if np.isfinite(b) else (np.nan, np.nan),
    }[chosen]
    rule = (
        f"Closed test at alpha {alpha:g} (Vergouwe 2017): logistic vs original (2 df), then "
        f"logistic vs intercept-only (1 df); with fewer than {min_events_slope} persons with an "
        "event only the intercept is tested; LR statistics divided by the mean rows per person"
        if method == "auto"
        else f"method '{method}' requested"
    )
    return RecalibrationFit(
        method=chosen,
        slope=float(new[0]),
        intercept=float(new[1]),
        previous_slope=float(slope),
        previous_intercept=float(intercept),
        requested=method,
        n_rows=int(y.size),
        n_persons=int(uniq.size),
        n_event_persons=event_persons,
        design_effect=float(deff),
        tests=tests,
        rule=rule,
    )


def split_persons(persons, y, holdout: float, seed: int) -> np.ndarray:
    """True for rows of held-out persons: ``holdout`` share of persons with and of persons
    without an event (seeded), so both parts keep the event rate."""
    persons = np.asarray(persons).astype(str)
    uniq, codes = np.unique(persons, return_inverse=True)
    has_event = np.bincount(codes, weights=np.asarray(y, dtype=float), minlength=uniq.size) > 0
    rng = np.random.default_rng(seed)
    held = np.zeros(uniq.size, dtype=bool)
    for stratum in (has_event, ~has_event):
        members = rng.permutation(np.flatnonzero(stratum))
        held[members[: int(round(holdout * members.size))]] = True
    return held[codes]


@dataclass
class RecalibrationResult:
    fit: RecalibrationFit  # the map written into the new bundle
    evaluation: dict[str, Any]  # before / after on held-out persons
    summary: dict[str, Any]  # recalibration.json
    #: held-out rows: outcome and risk before / after (``y``, ``before``, ``after``), for the
    #: calibration figure of the report (:func:`crs_ml.reporting.html.render_recalibration`)
    held_out: dict[str, np.ndarray] | None = None


def evaluate_maps(y, margin, persons, lm, landmarks, maps: dict, n_boot: int, seed: int,
                  weights=None) -> dict:  # fmt: skip
    """Calibration and discrimination of each ``(slope, intercept)`` map, per landmark and
    over all stacked rows, on the rows of weight > 0 (``weights``: censoring weights; None:
    all 1). With weights, ``observed_expected_ipcw`` and ``calibration_intercept_ipcw`` are
    the weighted O/E and calibration-in-the-large (point estimates), beside the unweighted
    metrics of the rows followed to the horizon."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    out: dict[str, Any] = {}
    slices = {f"{h:g}": (lm == h) & (w > 0) for h in landmarks}
    slices["all"] = w > 0
    for key, mask in slices.items():
        if not mask.any():
            continue
        out[key] = {}
        for name, (slope, intercept) in maps.items():
            eta = slope * margin[mask] + intercept
            p = expit(eta)
            perf = performance(y[mask], p, persons[mask], n_boot, seed)
            perf.pop("bootstrap", None)
            if weights is not None:
                wm = w[mask]
                perf["observed_expected_ipcw"] = float(np.sum(wm * y[mask]) / np.sum(wm * p))
                citl = M.fit_logistic(np.ones((p.size, 1)), y[mask], offset=eta, weights=wm)
                perf["calibration_intercept_ipcw"] = float(citl[0])
            out[key][name] = perf
    return out


def recalibrate_cohort(
    bundle,
    cohort,
    method: str = "auto",
    holdout: float = 0.5,
    seed: int = 0,
    n_boot: int = 500,
    report_landmarks_h=DEFAULT_REPORT_LANDMARKS_H,
    refit_all: bool = False,
) -> RecalibrationResult:
    """Fit the map on the site's fitting persons and measure it on the held-out persons.

    The map written into the new bundle is the one fitted on the fitting persons, so the
    held-out report describes that exact bundle; ``refit_all`` refits the chosen method on
    every person after the evaluation (more precise; the report then describes the method).
    """
    if not 0.0 <= holdout < 1.0:
        raise InputError(f"--holdout must be in [0, 1), got {holdout}")
    s = model_settings(bundle)
    H = s["horizon_h"]
    hs = horizon_status(cohort, s["landmarks_h"], [], H)
    meta = hs[hs["status"] == "included"].reset_index(drop=True)
    if meta.empty:
        raise InputError(
            "no patient is at risk with data at any landmark: nothing to recalibrate",
            file=str(cohort.source) if cohort.source else None,
        )
    X = build_features(cohort, meta[["patient_id", "landmark_h"]], s["features"])
    y = (meta["outcome"].to_numpy(dtype=object) == "event").astype(int)
    margin = bundle.predict_margin(X).astype(float)
    persons = meta["person_id"].astype(str).to_numpy()
    lm = meta["landmark_h"].to_numpy(dtype=float)
    held = split_persons(persons, y, holdout, seed) if holdout > 0 else np.zeros(len(y), bool)
    old = (bundle.platt_slope, bundle.platt_intercept)
    # the censored count through censoring weights (fitted within each part), not by being
    # left out: loss that depends on risk would bias a complete-case map
    w = np.zeros(len(y))
    for part in (~held, held):
        if part.any():
            w[part] = landmark_weights(meta[part], H, s["censoring_by"])
    fit = fit_recalibration(margin[~held], y[~held], persons[~held], *old, method=method,
                            weights=w[~held])  # fmt: skip
    evaluation: dict[str, Any] = {}
    held_out = None
    if held.any():
        lms = [h for h in report_landmarks_h if h in set(s["landmarks_h"])]
        maps = {"before": old, "after": (fit.slope, fit.intercept)}
        evaluation = evaluate_maps(
            y[held], margin[held], persons[held], lm[held], lms, maps, n_boot, seed, w[held]
        )
        followed = held & (w > 0)
        held_out = {
            "y": y[followed],
            "before": expit(old[0] * margin[followed] + old[1]),
            "after": expit(fit.slope * margin[followed] + fit.intercept),
        }
    final = fit
    if refit_all and held.any() and fit.method != "none":
        w_all = landmark_weights(meta, H, s["censoring_by"])
        final = fit_recalibration(margin, y, persons, *old, method=fit.method, weights=w_all)
    summary = {
        "margin": MARGINS.get(bundle.model_type, f"the {bundle.model_type} model's log-odds"),
        "method_requested": method,
        "method": final.method,
        "rule": fit.rule,
        "calibration_before": {"slope": old[0], "intercept": old[1]},
        "calibration_after": {"slope": final.slope, "intercept": final.intercept},
        "fit": {k: v for k, v in asdict(fit).items() if k not in ("rule",)},
        "refit_on_all_persons": bool(final is not fit),
        "holdout": {
            "share": holdout,
            "seed": seed,
            "n_rows": int((held & (w > 0)).sum()),
            "n_persons": int(np.unique(persons[held & (w > 0)]).size),
            "bootstrap": n_boot,
        },
        "evaluation": evaluation,
        "n_landmark_rows": int(len(y)),
        "n_persons": int(np.unique(persons).size),
        "censoring": {
            "rows_censored": int((w == 0).sum()),
            "persons_censored_only": int(
                np.setdiff1d(np.unique(persons), np.unique(persons[w > 0])).size
            ),
            "weights": "IPCW by the horizon as in training: a reverse Kaplan-Meier per "
            "landmark"
            + (" and site" if s["censoring_by"] == "site" else "")
            + ", fitted in the fitting and the held-out part each; censored rows weigh 0, "
            "events seen before a loss count",
        },
        "sites": sorted(set(meta["site"].dropna().astype(str))),
    }
    summary["warnings"] = recalibration_warnings(summary)
    if bundle.horizons:  # one map per model: the short horizons' maps are not refit
        labels = [h.label for h, _ in bundle.horizons]
        summary["short_horizons"] = {"horizons": labels, "recalibrated": False}
        summary["warnings"].append(
            f"the short horizons ({', '.join(labels)}) keep their training calibration: only "
            "the day-14 map is refit; they stay capped by the recalibrated day-14 risk, so "
            "never above it; check them on this site with crs-ml validate (per window)"
        )
    return RecalibrationResult(final, evaluation, summary, held_out)
