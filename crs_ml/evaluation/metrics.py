"""Discrimination, calibration and sample-size statistics for binary risk predictions.

All functions take ``y`` (0/1 outcomes) and ``p`` (predicted probabilities, or any score for
the rank metrics) as array-likes of equal length and are vectorised. Input rules, the same
for every metric here and in :mod:`crs_ml.evaluation.utility` (one shared check, :func:`check_risks`):

* a NaN or infinite risk is an error naming how many rows and which (1-based positions), never
  silently dropped or read as "no alert";
* a probability outside [0, 1] is an error everywhere a probability is expected (all but the
  rank metrics AUROC and AUPRC, which accept any finite score, e.g. m-EASIX);
* one outcome class is not an error: AUROC, AUPRC and the calibration fits are then NaN, so a
  bootstrap replicate or a small subgroup without events does not abort a report; the Brier
  score stays defined (it needs no second class).

A slice with fewer than :data:`MIN_SLICE_EVENTS` events or non-events keeps its point
estimates but is flagged ``too_few_events`` (:func:`too_few_events`) and gets no interval.

Companion modules, whose public functions are re-exported here (``metrics.bootstrap_ci``
works): :mod:`crs_ml.evaluation.utility` (decision curves, threshold tables and the alert metrics
clinicians ask for) and :mod:`crs_ml.evaluation.resampling` (person-level bootstrap intervals and
Harrell's optimism-corrected bootstrap).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import integrate, stats
from scipy.special import expit, logit

from crs_ml.errors import InputError

#: predictions are clipped to [EPS, 1 - EPS] before taking logits
EPS = 1e-6

#: a slice (landmark, subgroup, site, product) with fewer events or fewer non-events than
#: this is flagged ``too_few_events``: point estimates are kept, intervals are not given
MIN_SLICE_EVENTS = 10


def _rows(bad: np.ndarray, shown: int = 5) -> str:
    """'3 of 10 rows (rows 2, 5, 9; 1-based positions)' for a boolean mask of bad rows."""
    idx = np.flatnonzero(bad) + 1
    listed = ", ".join(str(i) for i in idx[:shown]) + (", ..." if idx.size > shown else "")
    return f"{idx.size} of {bad.size} rows (rows {listed}; 1-based positions)"


def check_risks(p, name: str = "p", *, probabilities: bool = True) -> np.ndarray:
    """The one input check for risks used by every metric: 1-d, finite, and in [0, 1] when
    ``probabilities``. Raises :class:`InputError` naming the column, count and rows."""
    try:
        p = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric", column=name) from None
    if p.ndim != 1:
        raise InputError(f"{name} must be 1-d (got shape {p.shape})", column=name)
    missing = ~np.isfinite(p)
    if missing.any():
        raise InputError(
            f"risk is NaN or infinite in {_rows(missing)}; score or drop those rows first",
            column=name,
        )
    if probabilities:
        outside = (p < 0.0) | (p > 1.0)
        if outside.any():
            raise InputError(
                f"predicted probabilities must lie in [0, 1]; {_rows(outside)} outside",
                column=name,
            )
    return p


def check_binary(y, p, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``y`` (0/1) and ``p`` (via :func:`check_risks`)."""
    y = np.asarray(y)
    p_arr = np.asarray(p)
    if y.ndim != 1 or p_arr.ndim != 1:
        raise InputError(f"y and p must be 1-d (got shapes {y.shape} and {p_arr.shape})")
    if y.shape[0] != p_arr.shape[0]:
        raise InputError(f"y and p differ in length ({y.shape[0]} vs {p_arr.shape[0]})")
    try:
        y_float = y.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError("y must be 0/1 outcomes", column="y") from None
    not_binary = ~np.isin(y_float, (0.0, 1.0))
    if not_binary.any():
        raise InputError(
            f"y must contain only 0 and 1 (no missing outcomes); {_rows(not_binary)} are not",
            column="y",
        )
    p = check_risks(p_arr, "p", probabilities=probabilities)
    return y_float.astype(np.int8), p


def too_few_events(n_events: float, n: float) -> bool:
    """True when a slice has fewer than :data:`MIN_SLICE_EVENTS` events or non-events."""
    return bool(n_events < MIN_SLICE_EVENTS or n - n_events < MIN_SLICE_EVENTS)


def _one_class(y: np.ndarray) -> bool:
    return y.size == 0 or y.min() == y.max()


def auroc(y, p) -> float:
    """Area under the ROC curve (Mann-Whitney; ties count 1/2). NaN with one class."""
    y, p = check_binary(y, p)
    if _one_class(y):
        return float("nan")
    ranks = stats.rankdata(p)
    n1 = int(y.sum())
    n0 = y.size - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def auprc(y, p) -> float:
    """Average precision: sum over distinct thresholds of (R_k - R_{k-1}) * P_k.

    Tied scores form one threshold (no interpolation), as in
    ``sklearn.metrics.average_precision_score``. NaN with one class.
    """
    y, p = check_binary(y, p)
    if _one_class(y):
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    p_sorted = p[order]
    tp = np.cumsum(y[order], dtype=np.float64)
    # the last position of each block of tied scores is a threshold
    last = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    tp = tp[last]
    n_flagged = (np.flatnonzero(last) + 1).astype(np.float64)
    precision = tp / n_flagged
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(y, p) -> float:
    """Mean squared difference between predicted probability and outcome.

    Defined with one outcome class too; NaN only without rows.
    """
    y, p = check_binary(y, p, probabilities=True)
    if y.size == 0:
        return float("nan")
    return float(np.mean((p - y) ** 2))


def _loglik(X: np.ndarray, y: np.ndarray, offset: np.ndarray, beta: np.ndarray,
            w: np.ndarray) -> float:  # fmt: skip
    eta = offset + X @ beta
    return float(np.sum(w * (y * eta - np.logaddexp(0.0, eta))))


def fit_logistic(
    X: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray | None = None,
    start: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Unpenalised maximum-likelihood logistic regression by Newton-Raphson with step halving.

    ``X`` is the full design (include a column of ones for an intercept); ``weights``: row
    weights of the log-likelihood (e.g. censoring weights; None: all 1). Returns the
    coefficients, or NaNs when the fit does not converge (e.g. perfect separation).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    offset = np.zeros(len(y)) if offset is None else np.asarray(offset, dtype=np.float64)
    beta = np.zeros(X.shape[1]) if start is None else np.asarray(start, dtype=np.float64)
    ll = _loglik(X, y, offset, beta, w)
    for _ in range(max_iter):
        mu = expit(offset + X @ beta)
        grad = X.T @ (w * (y - mu))
        hess = (X * (w * mu * (1.0 - mu))[:, None]).T @ X
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        t = 1.0
        while True:
            new = beta + t * step
            ll_new = _loglik(X, y, offset, new, w)
            if ll_new >= ll - 1e-12 * (1.0 + abs(ll)) or t < 1e-10:
                break
            t /= 2.0
        beta, ll = new, ll_new
        if np.max(np.abs(t * step)) < tol * (1.0 + np.max(np.abs(beta))):
            if np.max(np.abs(beta)) < 1e4:
                return beta
            break
    return np.full(X.shape[1], np.nan)


def calibration_intercept_slope(y, p) -> tuple[float, float]:
    """Calibration-in-the-large and calibration slope (Van Calster et al. 2019).

    With ``lp = logit(clip(p, 1e-6, 1 - 1e-6))``:

    * intercept: ``a`` in ``logit P(y=1) = a + lp`` (``lp`` as an offset, no slope);
      0 when the average prediction is right, > 0 when risks are underestimated;
    * slope: ``b`` in ``logit P(y=1) = a' + b * lp``; 1 is ideal, < 1 means predictions are
      too extreme (overfitting).

    Both are unpenalised maximum-likelihood fits (Newton-Raphson). NaN with one class or
    when a fit does not converge.
    """
    y, p = check_binary(y, p, probabilities=True)
    if _one_class(y):
        return float("nan"), float("nan")
    lp = logit(np.clip(p, EPS, 1.0 - EPS))
    ones = np.ones((len(y), 1))
    intercept = fit_logistic(ones, y, offset=lp)[0]
    slope = fit_logistic(np.column_stack([ones, lp]), y, start=np.array([0.0, 1.0]))[1]
    return float(intercept), float(slope)


def wilson_interval(k, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k events out of n (vectorised; NaN where n == 0)."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = stats.norm.ppf(1.0 - alpha / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        phat = k / n
        denom = 1.0 + z**2 / n
        centre = (phat + z**2 / (2.0 * n)) / denom
        half = z * np.sqrt(phat * (1.0 - phat) / n + z**2 / (4.0 * n**2)) / denom
    return centre - half, centre + half


def calibration_curve_binned(
    y, p, n_bins: int = 10, strategy: str = "quantile", alpha: float = 0.05
) -> pd.DataFrame:
    """Observed vs predicted risk in bins of predicted risk, with Wilson intervals.

    ``strategy='quantile'`` makes bins of (nearly) equal size (tied edges merged),
    ``'uniform'`` splits [0, 1] into equal widths. Empty bins are dropped. Columns: bin,
    p_from, p_to (bin edges), mean_predicted, observed (event rate), n, n_events, ci_lo,
    ci_hi (Wilson interval of the observed rate).
    """
    y, p = check_binary(y, p, probabilities=True)
    if n_bins < 1:
        raise InputError("n_bins must be >= 1")
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
        if edges.size == 1:
            edges = np.r_[edges, edges]
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise InputError(f"strategy must be 'quantile' or 'uniform', not {strategy!r}")
    n_edges = edges.size - 1
    bins = np.clip(np.searchsorted(edges[1:-1], p, side="right"), 0, n_edges - 1)
    n = np.bincount(bins, minlength=n_edges).astype(np.float64)
    events = np.bincount(bins, weights=y, minlength=n_edges)
    sum_p = np.bincount(bins, weights=p, minlength=n_edges)
    keep = n > 0
    lo, hi = wilson_interval(events[keep], n[keep], alpha)
    return pd.DataFrame(
        {
            "bin": np.flatnonzero(keep),
            "p_from": edges[:-1][keep],
            "p_to": edges[1:][keep],
            "mean_predicted": sum_p[keep] / n[keep],
            "observed": events[keep] / n[keep],
            "n": n[keep].astype(np.int64),
            "n_events": events[keep].astype(np.int64),
            "ci_lo": lo,
            "ci_hi": hi,
        }
    )


def calibration_curve_smooth(
    y, p, grid=None, n_knots: int = 5, n_grid: int = 101
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed calibration curve: logistic regression of y on a cubic B-spline of logit(p).

    Stands in for the usual loess curve (not available in scipy): knots at quantiles of
    logit(p), linear extrapolation, near-unpenalised fit (C = 1e4). ``grid`` (probabilities)
    defaults to ``n_grid`` points evenly spaced in logit between the 1st and 99th percentile
    of p. Returns (grid, smoothed observed risk); NaNs with one class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer

    y, p = check_binary(y, p, probabilities=True)
    lp = logit(np.clip(p, EPS, 1.0 - EPS))
    if grid is None:
        lo, hi = np.quantile(lp, [0.01, 0.99])
        grid_lp = np.linspace(lo, hi, n_grid)
    else:
        grid_lp = logit(np.clip(np.asarray(grid, dtype=np.float64), EPS, 1.0 - EPS))
    grid_p = expit(grid_lp)
    if _one_class(y) or np.unique(lp).size < 2:
        return grid_p, np.full(grid_p.shape, np.nan)
    n_knots = int(max(2, min(n_knots, np.unique(lp).size)))
    model = make_pipeline(
        SplineTransformer(n_knots=n_knots, degree=3, knots="quantile", extrapolation="linear"),
        LogisticRegression(C=1e4, max_iter=2000),
    )
    model.fit(lp[:, None], y)
    return grid_p, model.predict_proba(grid_lp[:, None])[:, 1]


# --- sample size (Riley et al., BMJ 2020;368:m441) -------------------------------------


def max_r2_cs(prevalence: float) -> float:
    """Largest Cox-Snell R^2 attainable at this outcome prevalence: 1 - L_null^(2/n)."""
    phi = float(prevalence)
    ln_null = phi * math.log(phi) + (1.0 - phi) * math.log(1.0 - phi)
    return 1.0 - math.exp(2.0 * ln_null)


def r2_cs_from_c_statistic(c_statistic: float, prevalence: float) -> float:
    """Cox-Snell R^2 implied by a C-statistic (Riley, Van Calster & Collins, Stat Med 2021).

    Riley et al. assume the linear predictor is N(mu, 1) in events and N(0, 1) in non-events
    with mu = sqrt(2) * Phi^-1(C), fit a logistic model to a simulated million patients and
    report R2cs = 1 - exp(-LR / n). Under that model the logistic fit is exact, so the
    large-sample limit is computed here deterministically by numerical integration:
    LR / n -> 2 * I(Y; LP) (mutual information in nats), R2cs = 1 - exp(-2 I).
    """
    c = float(c_statistic)
    phi = float(prevalence)
    if not 0.5 <= c < 1.0:
        raise InputError(f"C-statistic must be in [0.5, 1), got {c}")
    mu = math.sqrt(2.0) * stats.norm.ppf(c)
    if mu == 0.0:
        return 0.0
    log_odds0 = math.log(phi / (1.0 - phi)) - mu**2 / 2.0

    def expected_ll(cls_mean: float, cls: int) -> float:
        # E[log P(Y = cls | LP)] for LP ~ N(cls_mean, 1); the true log-odds is log_odds0 + mu*x
        def integrand(x: float) -> float:
            eta = log_odds0 + mu * x
            logp = -np.logaddexp(0.0, -eta) if cls == 1 else -np.logaddexp(0.0, eta)
            return float(logp * stats.norm.pdf(x, loc=cls_mean))

        return integrate.quad(integrand, cls_mean - 12.0, cls_mean + 12.0, limit=200)[0]

    ll_model = phi * expected_ll(mu, 1) + (1.0 - phi) * expected_ll(0.0, 0)
    ll_null = phi * math.log(phi) + (1.0 - phi) * math.log(1.0 - phi)
    return float(1.0 - math.exp(-2.0 * (ll_model - ll_null)))


def riley_min_sample_size(
    prevalence: float,
    n_parameters: int,
    r2_cs: float | None = None,
    c_statistic: float | None = None,
    shrinkage: float = 0.9,
    r2_optimism: float = 0.05,
    intercept_margin: float = 0.05,
    mape: float = 0.05,
) -> dict:
    """Minimum development sample size for a binary-outcome model (Riley et al. BMJ 2020).

    Criteria (n rounded up):

    (i)   expected uniform shrinkage >= ``shrinkage``:
          n = P / ((S - 1) ln(1 - R2cs / S));
    (ii)  optimism in Nagelkerke R^2 <= ``r2_optimism`` (delta):
          S_ii = R2cs / (R2cs + delta * maxR2cs), n = P / ((S_ii - 1) ln(1 - R2cs - delta maxR2cs));
    (iii) overall risk estimated within +-``intercept_margin``:
          n = (1.96 / margin)^2 phi (1 - phi).

    ``min_n`` is the max of (i)-(iii). For information only (not in the max) the
    mean-absolute-prediction-error criterion of van Smeden et al. (2019), cited by Riley
    2020, is given as ``n_mape``: n = exp((-0.508 + 0.259 ln phi + 0.504 ln P - ln MAPE)/0.544).

    R2cs: ``r2_cs`` if given; else derived from ``c_statistic`` by
    :func:`r2_cs_from_c_statistic` (Riley et al. Stat Med 2021); else the conservative default
    Riley 2020 recommends without prior information: R2cs = 0.15 * maxR2cs (Nagelkerke 0.15).
    ``r2_source`` says which was used.
    """
    phi = float(prevalence)
    n_par = int(n_parameters)
    if not 0.0 < phi < 1.0:
        raise InputError(f"prevalence must be in (0, 1), got {phi}")
    if n_par < 1:
        raise InputError(f"n_parameters must be >= 1, got {n_par}")
    max_r2 = max_r2_cs(phi)
    if r2_cs is not None:
        r2, source = float(r2_cs), "given"
    elif c_statistic is not None:
        r2, source = r2_cs_from_c_statistic(c_statistic, phi), "c_statistic (Riley 2021)"
    else:
        r2, source = 0.15 * max_r2, "default 0.15 * max R2cs (Riley 2020)"
    if not 0.0 < r2 < max_r2:
        raise InputError(f"R2cs must be in (0, max R2cs = {max_r2:.4f}), got {r2:.4f}")
    n_i = n_par / ((shrinkage - 1.0) * math.log(1.0 - r2 / shrinkage))
    s_ii = r2 / (r2 + r2_optimism * max_r2)
    n_ii = n_par / ((s_ii - 1.0) * math.log(1.0 - r2 - r2_optimism * max_r2))
    n_iii = (1.96 / intercept_margin) ** 2 * phi * (1.0 - phi)
    n_mape = math.exp(
        (-0.508 + 0.259 * math.log(phi) + 0.504 * math.log(n_par) - math.log(mape)) / 0.544
    )
    sizes = {k: math.ceil(v - 1e-9) for k, v in (("i", n_i), ("ii", n_ii), ("iii", n_iii))}
    n_min = max(sizes.values())
    return {
        "n_shrinkage": sizes["i"],
        "n_r2_optimism": sizes["ii"],
        "n_intercept": sizes["iii"],
        "min_n": n_min,
        "min_events": math.ceil(n_min * phi - 1e-9),
        "min_epp": n_min * phi / n_par,
        "n_mape": math.ceil(n_mape - 1e-9),
        "r2_cs": r2,
        "max_r2_cs": max_r2,
        "r2_nagelkerke": r2 / max_r2,
        "r2_source": source,
        "prevalence": phi,
        "n_parameters": n_par,
    }


def events_per_parameter(n_events: float, n_parameters: int) -> float:
    """Events per candidate parameter (EPP); NaN when there are no parameters."""
    return float(n_events) / n_parameters if n_parameters > 0 else float("nan")


_REEXPORTS = {
    "bootstrap_ci": "resampling",
    "paired_bootstrap_diff": "resampling",
    "optimism_corrected_bootstrap": "resampling",
    "net_benefit": "utility",
    "threshold_table": "utility",
    "lead_time_hours": "utility",
    "alerts_per_patient_day": "utility",
    "number_needed_to_evaluate": "utility",
}


def __getattr__(name: str):
    # resampling and utility import this module, so they are re-exported lazily (PEP 562)
    if name in _REEXPORTS:
        import importlib

        return getattr(importlib.import_module(f"crs_ml.evaluation.{_REEXPORTS[name]}"), name)
    raise AttributeError(f"module 'crs_ml.evaluation.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_REEXPORTS))
