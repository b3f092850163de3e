"""Metrics for censored, competing-risk outcomes at a horizon: IPCW AUROC and Brier score,
calibration against the Aalen-Johansen estimate, with person-bootstrap intervals.

Input, per landmark (the rows at risk at L): ``time_h`` and ``cause`` from
:func:`crs_ml.features.landmarks.competing_risk_times` (cause 1 grade >= 3, 2 death before
grade >= 3, 0 censored or followed through), the predicted cumulative incidence ``risk`` of
grade >= 3 by the horizon ``t`` (hours since infusion), and optionally the censoring strata
(e.g. site) and the persons (bootstrap clusters).

Censoring weights (inverse probability of censoring weighting, IPCW). The censoring
distribution G(u) = P(C > u) is a reverse Kaplan-Meier (at tied times events come before
censoring), fitted on the rows given, so at a landmark it is conditional on follow-up beyond
L; with ``strata`` one per stratum (censoring may then differ between strata, e.g. sites, and
need be independent of the outcome only within them). At horizon t (Blanche, Dartigues &
Jacqmin-Gadda, Stat Med 2013, competing risks, "definition 2" controls):

* case: grade >= 3 by t (cause 1, time_h <= t), weight 1 / G(time_h-);
* competing: death before grade >= 3 by t (cause 2, time_h <= t), weight 1 / G(time_h-), a
  control;
* event-free: known free of both through t, weight 1 / G(t-), a control (G(t-) = P(C >= t):
  follow-up ending exactly at t counts as followed through, as the task's rule 4);
* censored before t: weight 0 (their share is carried by the weights of the others).

Time-dependent AUROC(t) = weighted concordance of cases against controls (ties 1/2);
Brier(t) = (1/n) sum_i w_i (1{case_i} - risk_i)^2 over all n rows (censored rows add 0).
With no censoring every weight is 1 and both equal the plain AUROC and Brier score with
competing deaths counted as non-events.

Calibration. Rows are split into risk groups (quantiles of ``risk``); in each, the observed
cumulative incidence of grade >= 3 by t is the Aalen-Johansen estimate (death competing,
censoring assumed independent within the group) and the expected is the mean predicted risk.
Observed / expected (O/E) over all rows = sum_g n_g AJ_g(t) / sum_i risk_i: the observed is
the group-size weighted mean of the groups' estimates (a risk-stratified Aalen-Johansen), so
loss to follow-up that depends on the predicted risk does not bias it.

Implementations. The reverse Kaplan-Meier, the Aalen-Johansen estimate and the weighted
concordance are a few vectorised numpy lines each, tested equal to scikit-survival's
``kaplan_meier_estimator(reverse=True)`` and ``cumulative_incidence_competing_risks`` and to
scikit-learn's ``roc_auc_score(sample_weight=...)``: those count rows in a Python loop or
validate their input on every call, several times slower in a bootstrap that refits them
in every replicate. The competing-risk weights have no library implementation (the R package timeROC
has them) and are tested against a hand-computed example.

Intervals: percentile bootstrap resampling persons (:class:`crs_ml.evaluation.resampling.
GroupResampler`); every replicate refits the censoring distribution and the risk groups'
Aalen-Johansen estimates. Like :func:`crs_ml.evaluation.resampling.bootstrap_ci`, they
condition on the fitted model that produced ``risk``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.errors import InputError
from crs_ml.evaluation.metrics import check_risks, too_few_events
from crs_ml.evaluation.resampling import GroupResampler, Stats
from crs_ml.features.landmarks import CAUSE_COMPETING, CAUSE_EVENT

CENSORED_METRICS = ("auroc", "brier", "observed", "expected", "oe_ratio")
#: risk groups of the calibration table (quantiles of the predicted risk)
DEFAULT_RISK_GROUPS = 10


def check_competing(time_h, cause, risk=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Arrays of equal length: finite times, causes in {0, 1, 2}, finite risks in [0, 1]."""
    time = np.asarray(time_h, dtype="float64")
    cause = np.asarray(cause)
    if time.ndim != 1 or cause.shape != time.shape:
        raise InputError(f"time_h and cause must be 1-D of equal length, got {time.shape}, "
                         f"{cause.shape}")  # fmt: skip
    bad = ~np.isfinite(time)
    if bad.any():
        raise InputError(f"{int(bad.sum())} time(s) are missing or infinite (first at row "
                         f"{int(np.flatnonzero(bad)[0]) + 1})")  # fmt: skip
    bad = ~np.isin(cause, (0, CAUSE_EVENT, CAUSE_COMPETING))
    if bad.any():
        raise InputError(f"cause must be 0 (censored), 1 (grade >= 3) or 2 (death); row "
                         f"{int(np.flatnonzero(bad)[0]) + 1} has {cause[bad][0]!r}")  # fmt: skip
    cause = cause.astype(np.int64)
    if risk is None:
        return time, cause, None
    risk = check_risks(risk, "risk")
    if risk.shape != time.shape:
        raise InputError(f"risk must have one value per row ({time.size}), got {risk.shape}")
    return time, cause, risk


def _counts(time: np.ndarray, cause: np.ndarray):
    """Unique times and, at each, the number at risk (time_h >= u), of grade >= 3 (cause 1),
    of deaths (cause 2) and of censorings (cause 0)."""
    uniq, inv = np.unique(time, return_inverse=True)
    k = uniq.size
    total = np.bincount(inv, minlength=k)
    at_risk = time.size - np.cumsum(total) + total
    per = [np.bincount(inv, weights=cause == c, minlength=k) for c in (0, 1, 2)]
    return uniq, at_risk, per[1], per[2], per[0]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape), where=num > 0)


def reverse_kaplan_meier(time_h, cause) -> tuple[np.ndarray, np.ndarray]:
    """(times, G): the censoring survival G(u) = P(C > u) at each unique time, by the reverse
    Kaplan-Meier with events before censoring at tied times (the convention of
    ``sksurv.nonparametric.kaplan_meier_estimator(reverse=True)``, which the tests compare
    against; vectorised here because the bootstrap refits it in every replicate)."""
    time, cause, _ = check_competing(time_h, cause)
    return _reverse_km(time, cause)


def _reverse_km(time: np.ndarray, cause: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, at_risk, d1, d2, censored = _counts(time, cause)
    return uniq, np.cumprod(1.0 - _ratio(censored, at_risk - d1 - d2))


def _strata(strata, n: int) -> np.ndarray:
    if strata is None:
        return np.zeros(n, dtype=np.int64)
    labels = np.asarray(strata, dtype=object)
    if labels.shape != (n,):
        raise InputError(f"strata must have one label per row ({n}), got {labels.shape}")
    if pd.isna(labels).any():
        raise InputError("censoring strata contain missing values")
    return labels


def ipcw_weights(time_h, cause, horizon_h: float, strata=None) -> np.ndarray:
    """Blanche et al. (2013) weights at horizon t (module docstring): 1/G(time-) for cause 1
    or 2 by t, 1/G(t-) for the event-free, 0 for the censored before t."""
    time, cause, _ = check_competing(time_h, cause)
    codes = pd.factorize(_strata(strata, time.size))[0]
    return _ipcw_weights(time, cause, float(horizon_h), codes)


def landmark_weights(meta: pd.DataFrame, end_h, censoring_by: str) -> np.ndarray:
    """IPCW per landmark row by its end ``end_h`` (0 for the censored before it): one
    reverse Kaplan-Meier per landmark fitted on ``meta``'s rows (``landmark_h``, ``time_h``,
    ``cause``, ``site``), by site with ``censoring_by='site'``, scaled to mean 1 over the rows
    kept. The weights a model trains with (:func:`crs_ml.modeling.horizons.training_weights`)
    and a site recalibration fits with."""
    lm = meta["landmark_h"].to_numpy(dtype=np.float64)
    time = meta["time_h"].to_numpy(dtype=np.float64)
    cause = meta["cause"].to_numpy()
    site = meta["site"].astype(str).to_numpy()
    end_h = np.broadcast_to(np.asarray(end_h, dtype=np.float64), lm.shape)
    w = np.zeros(len(meta))
    for L in np.unique(lm):
        m = lm == L
        strata = site[m] if censoring_by == "site" else None
        w[m] = ipcw_weights(time[m], cause[m], float(end_h[m][0]), strata)
    kept = w > 0
    if kept.any():
        w[kept] /= w[kept].mean()
    return w


def _ipcw_weights(time: np.ndarray, cause: np.ndarray, t: float, codes: np.ndarray):
    """:func:`ipcw_weights` of checked arrays, ``codes`` the stratum of each row (0, 1, ...):
    per stratum, G by :func:`reverse_kaplan_meier` on its rows (in their order) and G(u-) =
    P(C >= u) read at each row's u; no input checks (the bootstrap calls it in every
    replicate)."""
    by_t = (time <= t) & (cause != 0)
    free = time >= t
    free &= ~by_t
    at = np.where(by_t, time, t)
    G = np.ones(time.size)
    order = np.argsort(codes, kind="stable")  # stratum by stratum, rows in order
    bounds = np.cumsum(np.bincount(codes))
    for start, end in zip(np.r_[0, bounds[:-1]], bounds, strict=True):
        if end == start:
            continue
        rows = order[start:end]
        uniq, surv = _reverse_km(time[rows], cause[rows])
        G[rows] = np.r_[1.0, surv][np.searchsorted(uniq, at[rows], side="left")]  # before u
    used = by_t | free  # G > 0 there: the row itself is under follow-up until time_h or t
    w = np.zeros(time.size)
    w[used] = 1.0 / G[used]
    return w


def _case(time: np.ndarray, cause: np.ndarray, t: float) -> np.ndarray:
    return (cause == CAUSE_EVENT) & (time <= t)


def weighted_auroc(case: np.ndarray, risk: np.ndarray, weights: np.ndarray) -> float:
    """Weighted concordance of cases against the other rows with weight > 0: sum over
    case-control pairs of w_i w_j (1{risk_i > risk_j} + 1/2 1{risk_i = risk_j}) / (W_case
    W_control), the same as ``sklearn.metrics.roc_auc_score(..., sample_weight=weights)``
    (the tests compare; one sort instead of its input checks, for the bootstrap)."""
    used = weights > 0
    y, r, w = np.asarray(case, dtype=bool)[used], risk[used], weights[used]
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    uniq, inv = np.unique(r, return_inverse=True)
    w_case = np.bincount(inv, weights=w * y, minlength=uniq.size)
    w_ctrl = np.bincount(inv, weights=w * ~y, minlength=uniq.size)
    below = np.cumsum(w_ctrl) - w_ctrl  # control weight with a lower risk
    pairs = np.sum(w_case * (below + 0.5 * w_ctrl))
    return float(pairs / (w_case.sum() * w_ctrl.sum()))


def weighted_brier(case: np.ndarray, risk: np.ndarray, weights: np.ndarray) -> float:
    """(1/n) sum w_i (case_i - risk_i)^2 over all n rows (the censored carry weight 0): the
    IPCW Brier score given the censoring weights; NaN without rows."""
    if len(risk) == 0:
        return float("nan")
    return float(np.sum(weights * (np.asarray(case, dtype=bool) - risk) ** 2) / len(risk))


def time_dependent_auroc(time_h, cause, risk, horizon_h: float, strata=None) -> float:
    """IPCW AUROC at horizon t for grade >= 3 with death competing (module docstring);
    NaN without cases or without controls."""
    time, cause, risk = check_competing(time_h, cause, risk)
    w = ipcw_weights(time, cause, horizon_h, strata)
    return weighted_auroc(_case(time, cause, float(horizon_h)), risk, w)


def time_dependent_brier(time_h, cause, risk, horizon_h: float, strata=None) -> float:
    """IPCW Brier score at horizon t: (1/n) sum w_i (1{grade >= 3 by t} - risk_i)^2."""
    time, cause, risk = check_competing(time_h, cause, risk)
    if time.size == 0:
        return float("nan")
    w = ipcw_weights(time, cause, horizon_h, strata)
    return weighted_brier(_case(time, cause, float(horizon_h)), risk, w)


def cumulative_incidence(time_h, cause, at_h) -> np.ndarray:
    """Aalen-Johansen cumulative incidence of grade >= 3 (cause 1), death competing, at each
    time of ``at_h``: sum over u <= t of S(u-) d1(u) / n(u), S the all-cause Kaplan-Meier
    (equal to ``sksurv.nonparametric.cumulative_incidence_competing_risks``, which the tests
    compare against; vectorised for the bootstrap). NaN without rows."""
    time, cause, _ = check_competing(time_h, cause)
    at = np.atleast_1d(np.asarray(at_h, dtype="float64"))
    if time.size == 0:
        return np.full(at.shape, np.nan)
    uniq, at_risk, d1, d2, _ = _counts(time, cause)
    surv = np.cumprod(1.0 - _ratio(d1 + d2, at_risk))
    before = np.r_[1.0, surv[:-1]]
    cif = np.r_[0.0, np.cumsum(before * _ratio(d1, at_risk))]
    return cif[np.searchsorted(uniq, at, side="right")]


def aalen_johansen(time_h, cause, horizon_h: float) -> float:
    """:func:`cumulative_incidence` by one horizon t (hours)."""
    return float(cumulative_incidence(time_h, cause, [float(horizon_h)])[0])


def censoring_strata(censoring_by: str, site, risk) -> np.ndarray | None:
    """The strata of the censoring distribution ``task.censoring_by`` names: the rows' sites,
    deciles of their risk, or None (one reverse Kaplan-Meier for all)."""
    if censoring_by == "site":
        return np.asarray(site).astype(str)
    if censoring_by == "risk_decile":
        return risk_groups(risk, 10)
    return None


def risk_groups(risk, n_groups: int = DEFAULT_RISK_GROUPS) -> np.ndarray:
    """Quantile group (0 = lowest risk) of every row; tied risks share a group, so fewer
    groups than asked when risks take few values."""
    risk = check_risks(risk, "risk")
    if int(n_groups) < 1:
        raise InputError(f"n_groups must be >= 1, got {n_groups}")
    if risk.size == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = pd.Series(risk).rank(method="min").to_numpy()
    return np.minimum(((ranks - 1) * int(n_groups)) // risk.size, int(n_groups) - 1).astype(
        np.int64
    )


def calibration_by_risk_group(
    time_h, cause, risk, horizon_h: float, n_groups: int = DEFAULT_RISK_GROUPS
) -> pd.DataFrame:
    """Per risk group: n, n_events (grade >= 3 by t seen), n_censored (follow-up ended before
    t), expected (mean predicted risk), observed (Aalen-Johansen by t), min and max risk."""
    time, cause, risk = check_competing(time_h, cause, risk)
    t = float(horizon_h)
    group = risk_groups(risk, n_groups)
    rows = []
    for g in np.unique(group):
        m = group == g
        rows.append(
            {
                "risk_group": int(g),
                "n": int(m.sum()),
                "n_events": int(_case(time[m], cause[m], t).sum()),
                "n_censored": int(((cause[m] == 0) & (time[m] < t)).sum()),
                "risk_min": float(risk[m].min()),
                "risk_max": float(risk[m].max()),
                "expected": float(risk[m].mean()),
                "observed": aalen_johansen(time[m], cause[m], t),
            }
        )
    return pd.DataFrame(rows)


def observed_expected(time_h, cause, risk, horizon_h: float, n_groups: int = DEFAULT_RISK_GROUPS):
    """(observed, expected, O/E): observed = risk-group-size weighted Aalen-Johansen by t."""
    time, cause, risk = check_competing(time_h, cause, risk)
    if time.size == 0:
        return float("nan"), float("nan"), float("nan")
    table = calibration_by_risk_group(time, cause, risk, horizon_h, n_groups)
    observed = float(np.sum(table["n"] * table["observed"]) / time.size)
    expected = float(risk.mean())
    return observed, expected, observed / expected if expected > 0 else float("nan")


def censored_point_metrics(
    time_h,
    cause,
    risk,
    horizon_h: float,
    strata=None,
    n_groups: int = DEFAULT_RISK_GROUPS,
    calibration: bool = True,
    oracle=None,
) -> dict[str, float]:
    """AUROC, Brier (both IPCW) and, with ``calibration``, observed (Aalen-Johansen),
    expected and O/E at horizon t; with ``oracle`` (another risk per row, e.g. the
    simulator's true one) its AUROC on the same rows and weights, ``oracle_auroc``."""
    time, cause, risk = check_competing(time_h, cause, risk)
    oracle = None if oracle is None else check_competing(time, cause, oracle)[2]
    codes = pd.factorize(_strata(strata, time.size))[0]
    return _point_metrics(time, cause, risk, horizon_h, codes, n_groups, calibration, oracle)


def _point_metrics(time, cause, risk, horizon_h, codes, n_groups, calibration, oracle=None):
    """:func:`censored_point_metrics` of checked arrays (``codes``: stratum of each row)."""
    w = _ipcw_weights(time, cause, float(horizon_h), codes)
    case = _case(time, cause, float(horizon_h))
    out = {"auroc": weighted_auroc(case, risk, w), "brier": weighted_brier(case, risk, w)}
    if oracle is not None:
        out["oracle_auroc"] = weighted_auroc(case, oracle, w)
    if calibration:
        observed, expected, oe = observed_expected(time, cause, risk, horizon_h, n_groups)
        out.update(observed=observed, expected=expected, oe_ratio=oe)
    return out


def censored_metrics(
    time_h,
    cause,
    risk,
    horizon_h: float,
    persons,
    strata=None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_groups: int = DEFAULT_RISK_GROUPS,
    metrics: tuple[str, ...] = CENSORED_METRICS,
    oracle=None,
) -> dict[str, Stats]:
    """name -> (estimate, lo, hi) for ``metrics`` (of ``CENSORED_METRICS``) at horizon t,
    percentile bootstrap over persons (every replicate refits the censoring weights and the
    Aalen-Johansen estimates). Also returns the :func:`outcome_counts` as plain counts and,
    with ``oracle`` (another risk per row), ``oracle_auroc``: its AUROC on the same rows and
    censoring weights (estimate only). A slice with fewer than
    :data:`~crs_ml.evaluation.metrics.MIN_SLICE_EVENTS` events by t, or as few rows without
    one, gets no interval (``too_few_events``), as in :mod:`crs_ml.evaluation.metrics`:
    resampling so few events gives intervals that look certain and are not."""
    unknown = set(metrics) - set(CENSORED_METRICS)
    if unknown:
        raise ValueError(f"unknown censored metrics {sorted(unknown)}; known: {CENSORED_METRICS}")
    calibration = not {"observed", "expected", "oe_ratio"}.isdisjoint(metrics)
    time, cause, risk = check_competing(time_h, cause, risk)
    oracle = None if oracle is None else check_competing(time, cause, oracle)[2]
    # strata as integer codes: the same groups, compared faster in every replicate
    labels = pd.factorize(_strata(strata, time.size))[0]
    point = _point_metrics(time, cause, risk, horizon_h, labels, n_groups, calibration, oracle)
    counts = outcome_counts(time, cause, horizon_h)
    few = too_few_events(counts["n_events"], counts["n"])
    resampler = GroupResampler(persons, time.size)
    draws = (
        resampler.draw(np.random.default_rng(seed), int(n_boot)) if n_boot > 0 and not few else []
    )
    values = {k: np.full(len(draws), np.nan) for k in metrics}
    for b, drawn in enumerate(draws):
        idx = resampler.rows(drawn)
        rep = _point_metrics(time[idx], cause[idx], risk[idx], horizon_h, labels[idx], n_groups,
                             calibration)  # fmt: skip
        for k in metrics:
            values[k][b] = rep[k]
    out: dict = {}
    for k in metrics:
        v = values[k][np.isfinite(values[k])]
        lo, hi = (
            np.percentile(v, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if v.size else (np.nan,) * 2
        )
        out[k] = Stats((point[k], lo, hi), n_used=v.size, n_skipped=len(draws) - v.size)
    if oracle is not None:
        out["oracle_auroc"] = point["oracle_auroc"]
    out.update(counts)
    out["too_few_events"] = few
    return out


def outcome_counts(time_h, cause, horizon_h: float) -> dict[str, int]:
    """``n`` rows, ``n_events`` (grade >= 3 by t), ``n_competing`` (death before grade >= 3 by
    t) and ``n_censored`` (follow-up ended before t without either) at horizon t."""
    time, cause, _ = check_competing(time_h, cause)
    t = float(horizon_h)
    return {
        "n": int(time.size),
        "n_events": int(_case(time, cause, t).sum()),
        "n_competing": int(((cause == CAUSE_COMPETING) & (time <= t)).sum()),
        "n_censored": int(((cause == 0) & (time < t)).sum()),
    }


def incidence_curves_by_band(
    time_h, cause, risk, bands: dict[str, tuple[float, float]], hours
) -> dict[str, dict]:
    """Observed cumulative incidence (Aalen-Johansen) of grade >= 3 over ``hours`` in each
    risk band {name: (lo, hi)} (lo <= risk < hi): band -> {n, mean_risk, hours,
    cumulative_incidence}; bands without rows are left out."""
    time, cause, risk = check_competing(time_h, cause, risk)
    grid = np.asarray(hours, dtype="float64")
    out = {}
    for name, (lo, hi) in bands.items():
        m = (risk >= lo) & (risk < hi)
        if m.any():
            out[name] = {
                "n": int(m.sum()),
                "mean_risk": float(risk[m].mean()),
                "hours": grid.tolist(),
                "cumulative_incidence": cumulative_incidence(time[m], cause[m], grid).tolist(),
            }
    return out


def censored_summary(
    time_h,
    cause,
    risk,
    horizon_h: float,
    persons,
    strata=None,
    n_boot: int = 1000,
    seed: int = 0,
    n_groups: int = DEFAULT_RISK_GROUPS,
) -> dict:
    """:func:`censored_metrics` as plain numbers for metrics.json: counts, each metric with
    ``<name>_ci`` [lo, hi], and the calibration table by risk group (records)."""
    r = censored_metrics(time_h, cause, risk, horizon_h, persons, strata, n_boot, seed,
                         n_groups=n_groups)  # fmt: skip
    out: dict = {"horizon_h": float(horizon_h)}
    out.update({k: r[k] for k in ("n", "n_events", "n_competing", "n_censored", "too_few_events")})
    for k in CENSORED_METRICS:
        est, lo, hi = r[k]
        out[k], out[f"{k}_ci"] = est, [lo, hi]
    table = calibration_by_risk_group(time_h, cause, risk, horizon_h, n_groups)
    out["calibration"] = table.to_dict(orient="records")
    return out
