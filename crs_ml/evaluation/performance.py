"""Performance of a risk score on one validation slice, with person-bootstrap intervals.

Point estimates (AUROC, AUPRC, Brier, calibration intercept and slope) and percentile
intervals from a bootstrap that resamples persons; each replicate re-weights the original
rows by how often their person was drawn, which equals computing the metrics on the
resample. Used by the validation report, its subgroups and site recalibration.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from crs_ml.evaluation import metrics as M
from crs_ml.evaluation.resampling import GroupResampler

#: external validation needs at least ~100 events (Collins et al. 2016)
VALIDATION_MIN_EVENTS = 100
POINT_METRICS = ("auroc", "auprc", "brier", "calibration_intercept", "calibration_slope")


# --------------------------------------------------------------------------- metrics
def point_metrics(y, p) -> dict[str, float]:
    """AUROC, AUPRC, Brier, calibration intercept and slope (NaN with one class, but Brier)."""
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
    the :mod:`crs_ml.evaluation.metrics` functions on the materialised resample. The calibration
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
        slope = float(self._newton(w, np.array([0.0, self.start[1] or 1.0]), slope=True)[1])
        if np.isfinite(slope):
            return slope
        # no finite fit: when the drawn rows' risks separate the events completely, the
        # maximum-likelihood slope is infinite (+ when events rank above, - below)
        drawn = w > 0
        events, others = self.lp[drawn & (self.y == 1)], self.lp[drawn & (self.y == 0)]
        if events.size and others.size and events.min() > others.max():
            return float("inf")
        if events.size and others.size and events.max() < others.min():
            return float("-inf")
        return slope


def performance(y, p, groups, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Counts, point estimates and person-level bootstrap percentile intervals.

    Keys: n, n_events, n_persons, event_rate, mean_risk, reaches_100_events,
    too_few_events, then each of auroc, auprc, brier, calibration_intercept,
    calibration_slope with ``<name>_ci`` = [lo, hi], and ``bootstrap`` = replicates drawn /
    skipped (one outcome class only) / separated (the drawn rows' risks separate the events
    completely, so their calibration slope is infinite: it counts as +-inf, and an interval
    with an end at infinity is [NaN, NaN], not estimable).

    ``too_few_events`` is True when the slice has fewer than
    :data:`crs_ml.evaluation.metrics.MIN_SLICE_EVENTS` events or non-events: the point estimates are
    kept, no bootstrap is drawn and every interval is [NaN, NaN], so no confident-looking
    interval is shown for a slice that cannot support one.
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
        "too_few_events": M.too_few_events(events, n),
    }
    out.update(point_metrics(y, p) if n else dict.fromkeys(POINT_METRICS, float("nan")))
    if out["too_few_events"]:
        n_boot = 0
    values = np.full((max(n_boot, 0), len(POINT_METRICS)), np.nan)
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
    separated = int(np.isinf(values[:, POINT_METRICS.index("calibration_slope")]).sum())
    for j, name in enumerate(POINT_METRICS):
        col = values[:, j][~np.isnan(values[:, j])]  # a separated replicate's slope is +-inf
        with np.errstate(invalid="ignore"):  # inf - inf next to an infinite slope
            lo, hi = (
                np.percentile(col, [100 * alpha / 2, 100 * (1 - alpha / 2)])
                if col.size
                else (np.nan, np.nan)
            )
        if not (np.isfinite(lo) and np.isfinite(hi)):  # an end at infinity: not estimable
            lo = hi = np.nan
        out[f"{name}_ci"] = [float(lo), float(hi)]
    out["bootstrap"] = {"replicates": int(n_boot), "skipped_one_class": skipped,
                        "separated": separated}  # fmt: skip
    return out
