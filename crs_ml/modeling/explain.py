"""Exact SHAP contributions in calibrated log-odds, so that base + sum(contributions) = logit(risk).

xgboost models
    Exact TreeSHAP of the raw booster: what xgboost's ``pred_contribs=True`` gives on a dense
    float32 matrix (NaN = missing), computed by :func:`crs_ml.modeling.treeshap.pred_contribs`
    (lookup tables per shallow tree, xgboost itself for deeper trees). Each contribution is
    multiplied by the Platt slope and the calibrated base value is ``slope * bias +
    intercept``; the risk is then ``expit(base + sum(contributions))``. That is the booster's
    calibrated risk up to float32 rounding (xgboost's thresholds and leaves are float32,
    about 1e-6 in log-odds), and it makes the additivity exact by construction.

logistic regression (:class:`crs_ml.modeling.baselines.LogisticRiskModel`)
    Exact linear SHAP with the training data as background: on the model's design matrix z
    (median-imputed features and missing indicators, standardised on the training rows, so
    the training mean of every z column is 0) the contribution of design column k is
    ``beta_k * z_k``, the base value is the intercept (the log-odds at the training mean),
    and a feature's contribution is the sum over its own column and its missing indicator.

m-EASIX (:class:`crs_ml.modeling.baselines.MEasixModel`)
    One input, x = log m-EASIX (landmark value, else the baseline one). Linear SHAP with the
    training median of x as the reference point: contribution ``beta * (x - median)`` on the
    column that supplied x (nothing when x was imputed), base = the log-odds at the median.

early-fever rule (:class:`crs_ml.modeling.baselines.FeverRuleModel`)
    One binary input: base = the training-weighted mean log-odds of both sides of the rule,
    and temperature_max_early carries the rest.

additive model (:class:`crs_ml.modeling.additive.AdditiveRiskModel`)
    Each feature's term (its spline basis or linear value and its missing indicator) minus
    the term's training mean; base = the intercept. Exact.

stack (:class:`crs_ml.modeling.stack.StackedRiskModel`)
    The members' exact contributions (as above, in each member's calibrated log-odds) summed
    with the blend's non-negative coefficients; base = the Platt intercept plus the weighted
    member bases. Exact up to xgboost's float32 TreeSHAP rounding.

Any other estimator: contributions and base are NaN (``supported`` is False) and the risk
comes from ``predict_proba``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

_EPS = 1e-12
#: inputs with fewer rows are converted single-threaded
SMALL_INPUT_ROWS = 1000


@dataclass
class Explanation:
    """Calibrated log-odds decomposition of one matrix of feature rows."""

    contributions: np.ndarray  #: (n_rows, n_features) in the bundle's feature order
    base_value: np.ndarray  #: (n_rows,) calibrated log-odds of the reference patient
    logit: np.ndarray  #: (n_rows,) calibrated log-odds = base + contributions.sum(1)
    supported: bool = True
    note: str = ""

    @property
    def risk(self) -> np.ndarray:
        return expit(self.logit)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def tree_shap(bundle, X: pd.DataFrame, threads: int | None = None) -> Explanation:
    """Exact TreeSHAP of an xgboost bundle, scaled into calibrated log-odds. ``threads``:
    threads for TreeSHAP (None: all cores); the values do not depend on it."""
    from crs_ml.modeling.treeshap import pred_contribs

    # one thread for small inputs: starting threads costs more than the work, and on a busy
    # machine xgboost's OpenMP spin-wait turns a single-patient DMatrix into ~20 ms
    if len(X) < SMALL_INPUT_ROWS:
        threads = 1
    # C-ordered float32 is what xgboost reads: no conversion copy inside DMatrix; the
    # columns are the model's, in its order (bundle.matrix checks and orders them)
    matrix = np.ascontiguousarray(bundle.matrix(X), dtype=np.float32)
    raw = pred_contribs(bundle.booster, matrix, threads)
    slope, intercept = bundle.platt_slope, bundle.platt_intercept
    contrib = raw[:, :-1] * slope
    base = raw[:, -1] * slope + intercept
    return Explanation(contrib, base, base + contrib.sum(axis=1))


def logistic_shap(estimator, X: pd.DataFrame, names: list[str]) -> Explanation:
    """Exact linear SHAP of a fitted :class:`~crs_ml.modeling.baselines.LogisticRiskModel`
    on the columns ``names`` of ``X`` (see the module docstring)."""
    pipe = estimator.pipeline_
    design = pipe[:-1].transform(X[names].to_numpy(dtype=np.float64))
    beta = np.asarray(pipe[-1].coef_, dtype=np.float64).ravel()
    intercept = float(np.asarray(pipe[-1].intercept_).ravel()[0])
    phi = design * beta
    out_names = [str(n) for n in pipe[:-1].get_feature_names_out(np.asarray(names, dtype=object))]
    prefix = "missingindicator_"
    owner = np.array(
        [names.index(n[len(prefix) :] if n.startswith(prefix) else n) for n in out_names]
    )
    contrib = np.zeros((len(X), len(names)))
    np.add.at(contrib.T, owner, phi.T)
    base = np.full(len(X), intercept)
    return Explanation(contrib, base, base + contrib.sum(axis=1))


def _measix_shap(estimator, X: pd.DataFrame, names: list[str]) -> Explanation:
    x = estimator._log_measix(X[names], fitting=False)
    lr = estimator.logistic_
    beta = float(np.ravel(lr.coef_)[0])
    b0 = float(np.ravel(lr.intercept_)[0])
    ref = float(estimator.impute_value_)
    contrib = np.zeros((len(X), len(names)))
    landmark = X["measix_landmark"].to_numpy(dtype=np.float64) if "measix_landmark" in X else None
    used_landmark = landmark is not None and "measix_landmark" in names
    phi = np.where(np.isnan(x), 0.0, beta * (x - ref))
    if used_landmark:
        on_landmark = ~np.isnan(landmark)
        contrib[:, names.index("measix_landmark")] = np.where(on_landmark, phi, 0.0)
        if "measix_baseline" in names:
            contrib[:, names.index("measix_baseline")] = np.where(on_landmark, 0.0, phi)
    elif "measix_baseline" in names:
        contrib[:, names.index("measix_baseline")] = phi
    base = np.full(len(X), b0 + beta * ref)
    return Explanation(contrib, base, base + contrib.sum(axis=1))


def _fever_rule_shap(estimator, X: pd.DataFrame, names: list[str]) -> Explanation:
    positive = estimator.rule(X[names])
    lp, ln = _logit(np.array([estimator.rate_positive_, estimator.rate_negative_]))
    n_pos, n_neg = estimator.n_positive_, estimator.n_negative_
    w = n_pos / (n_pos + n_neg) if n_pos + n_neg else 0.5
    base_value = w * lp + (1 - w) * ln
    logit = np.where(positive, lp, ln)
    contrib = np.zeros((len(X), len(names)))
    contrib[:, names.index("temperature_max_early")] = logit - base_value
    base = np.full(len(X), base_value)
    return Explanation(contrib, base, base + contrib.sum(axis=1))


def explain(bundle, X: pd.DataFrame, threads: int | None = None) -> Explanation:
    """Calibrated log-odds, base value and exact SHAP contributions for each row of ``X``.
    ``threads``: for xgboost's TreeSHAP (None: all cores). The bundle's calibration map
    applies: TreeSHAP and a stack carry it already; a family whose map is not the identity
    (a site recalibrated it) has its contributions scaled by the slope and its base mapped,
    so ``base + sum(contributions)`` is still the calibrated log-odds."""
    if bundle.booster is not None:
        return tree_shap(bundle, X, threads)
    ex = _explain_estimator(bundle, X)
    if bundle.model_type == "stack" or bundle.identity_map:
        return ex
    slope, intercept = bundle.platt_slope, bundle.platt_intercept
    base = slope * ex.base_value + intercept
    contrib = slope * ex.contributions
    logit = base + contrib.sum(axis=1) if ex.supported else slope * ex.logit + intercept
    return Explanation(contrib, base, logit, ex.supported, ex.note)


def _explain_estimator(bundle, X: pd.DataFrame) -> Explanation:
    """:func:`explain` in the estimator's own log-odds (before a non-identity map)."""
    est = bundle.estimator
    names = bundle.feature_names
    kind = type(est).__name__
    if kind == "LogisticRiskModel" and hasattr(est, "pipeline_"):
        return logistic_shap(est, X, names)
    if kind == "MEasixModel" and hasattr(est, "logistic_"):
        return _measix_shap(est, X, names)
    if hasattr(est, "explain_logit"):  # additive model, stack
        contrib, base = est.explain_logit(X[names])
        return Explanation(contrib, base, base + contrib.sum(axis=1))
    if kind == "FeverRuleModel" and "temperature_max_early" in names:
        return _fever_rule_shap(est, X, names)
    logit = _logit(est.predict_proba(X[names])[:, 1])
    nan = np.full((len(X), len(names)), np.nan)
    return Explanation(
        nan,
        np.full(len(X), np.nan),
        logit,
        supported=False,
        note=f"no exact SHAP for a {kind} model: contributions left empty",
    )
