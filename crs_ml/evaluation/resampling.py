"""Person-level (cluster) bootstrap: confidence intervals, paired comparisons, optimism.

Stacked landmark data hold several rows per patient and several patients per person, so
every resample here draws PERSONS (``groups``) with replacement and takes all their rows;
resampling rows would treat correlated rows as independent and give intervals that are too
narrow.

What the intervals condition on: :func:`bootstrap_ci` and :func:`paired_bootstrap_diff`
resample fixed predictions (e.g. pooled out-of-fold predictions of models already fitted).
They quantify the sampling variability of the evaluation set given those fitted models and
ignore training variability, so they under-cover the performance of the modelling
procedure (Bates, Hastie & Tibshirani, JASA 2024). :func:`optimism_corrected_bootstrap`
(Harrell) refits the model in every replicate and estimates the optimism of the procedure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from crs_ml.errors import InputError
from crs_ml.evaluation.metrics import auroc, check_binary

MetricFn = Callable[[np.ndarray, np.ndarray], float]


class Stats(tuple):
    """A plain tuple of floats (e.g. estimate, lo, hi) that also carries how many bootstrap
    replicates were used (``n_used``) and skipped because they held one class only
    (``n_skipped``). Unpacks like the tuple it is."""

    n_used: int
    n_skipped: int

    def __new__(cls, values: Sequence[float], n_used: int = 0, n_skipped: int = 0):
        obj = super().__new__(cls, tuple(float(v) for v in values))
        obj.n_used = int(n_used)
        obj.n_skipped = int(n_skipped)
        return obj

    def __getnewargs__(self):
        return (tuple(self),)


class GroupResampler:
    """Draws bootstrap samples of whole groups (persons) and returns their row indices.

    Rows are sorted by group once; a sample of groups is turned into row indices with one
    ``np.repeat`` (no per-group Python loop). ``groups=None`` makes every row its own group.
    """

    def __init__(self, groups, n_rows: int) -> None:
        if groups is None:
            codes = np.arange(n_rows)
        else:
            groups = np.asarray(groups)
            if groups.shape != (n_rows,):
                raise InputError(
                    f"groups must have one entry per row ({n_rows}), got {groups.shape}"
                )
            codes = pd.factorize(groups, use_na_sentinel=True)[0]
            if (codes < 0).any():
                raise InputError("groups (person ids) contain missing values")
        self.codes = codes
        self.n_groups = int(codes.max()) + 1 if n_rows else 0
        self.order = np.argsort(codes, kind="stable")
        self.sizes = np.bincount(codes, minlength=self.n_groups)
        self.starts = np.r_[0, np.cumsum(self.sizes)[:-1]]

    def draw(self, rng: np.random.Generator, n_boot: int) -> np.ndarray:
        """(n_boot, n_groups) group codes drawn with replacement."""
        return rng.integers(0, self.n_groups, size=(n_boot, self.n_groups))

    def rows(self, drawn_groups: np.ndarray) -> np.ndarray:
        """Row indices of the drawn groups, each group's rows kept together."""
        lengths = self.sizes[drawn_groups]
        out_starts = np.cumsum(lengths) - lengths
        offsets = np.repeat(self.starts[drawn_groups] - out_starts, lengths)
        return self.order[offsets + np.arange(lengths.sum())]


def _percentiles(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def bootstrap_ci(
    metric_fns: Mapping[str, MetricFn],
    y,
    p,
    groups,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Stats]:
    """Percentile bootstrap intervals of several metrics, resampling persons (groups).

    Returns name -> (estimate, lo, hi); the estimate is the metric on the full data.
    Replicates with one outcome class are skipped and counted (``n_skipped`` on each
    result); replicates where a metric is NaN are ignored for that metric.
    The interval conditions on the fitted models that produced ``p``: it ignores training
    variability (Bates, Hastie & Tibshirani 2024), see the module docstring.
    """
    y, p = check_binary(y, p)
    if n_boot < 1:
        raise InputError("n_boot must be >= 1")
    resampler = GroupResampler(groups, y.size)
    draws = resampler.draw(np.random.default_rng(seed), n_boot)
    values = {name: np.full(n_boot, np.nan) for name in metric_fns}
    skipped = 0
    for b in range(n_boot):
        idx = resampler.rows(draws[b])
        yb = y[idx]
        if yb.min() == yb.max():
            skipped += 1
            continue
        pb = p[idx]
        for name, fn in metric_fns.items():
            values[name][b] = fn(yb, pb)
    out = {}
    for name, fn in metric_fns.items():
        lo, hi = _percentiles(values[name], alpha)
        used = int(np.isfinite(values[name]).sum())
        out[name] = Stats((fn(y, p), lo, hi), n_used=used, n_skipped=skipped)
    return out


def paired_bootstrap_diff(
    y,
    p_a,
    p_b,
    groups,
    metric: MetricFn = auroc,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Stats:
    """metric(p_a) - metric(p_b) with a person-level bootstrap interval and two-sided p-value.

    Both models are evaluated on the same resamples (paired). Returns
    (diff, lo, hi, p_value) with p_value = min(1, 2 min(P*(d <= 0), P*(d >= 0))), the
    proportions taken as (count + 1) / (B + 1) over valid replicates. Like
    :func:`bootstrap_ci`, it conditions on the fitted models (Bates, Hastie & Tibshirani 2024).
    """
    y, p_a = check_binary(y, p_a)
    _, p_b = check_binary(y, p_b)
    resampler = GroupResampler(groups, y.size)
    draws = resampler.draw(np.random.default_rng(seed), n_boot)
    diffs = np.full(n_boot, np.nan)
    skipped = 0
    for b in range(n_boot):
        idx = resampler.rows(draws[b])
        yb = y[idx]
        if yb.min() == yb.max():
            skipped += 1
            continue
        diffs[b] = metric(yb, p_a[idx]) - metric(yb, p_b[idx])
    diff = metric(y, p_a) - metric(y, p_b)
    valid = diffs[np.isfinite(diffs)]
    lo, hi = _percentiles(valid, alpha)
    if valid.size:
        below = (np.sum(valid <= 0) + 1) / (valid.size + 1)
        above = (np.sum(valid >= 0) + 1) / (valid.size + 1)
        p_value = min(1.0, 2.0 * min(below, above))
    else:
        p_value = float("nan")
    return Stats((diff, lo, hi, p_value), n_used=valid.size, n_skipped=skipped)


FitPredict = Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]]


def optimism_corrected_bootstrap(
    fit_predict: FitPredict,
    y,
    groups,
    metric_fns: Mapping[str, MetricFn],
    n_boot: int = 200,
    seed: int = 0,
    *,
    slices: Mapping[str, np.ndarray] | None = None,
    p_apparent=None,
    progress: Callable[[int, int], None] | None = None,
):
    """Harrell's optimism-corrected bootstrap, resampling persons.

    ``fit_predict(train_idx, eval_idx_list)`` must fit a fresh model on the rows
    ``train_idx`` (row indices into ``y``; a person drawn twice appears twice, with the same
    person id, so inner splits by person keep the copies together) and return one array of
    predictions per index array in ``eval_idx_list``.

    apparent = metric of the model fitted on all rows, evaluated on all rows; in each
    replicate the model is fitted on the resample and evaluated on the resample and on the
    original rows; optimism = mean(resample - original); corrected = apparent - optimism.
    Returns name -> (apparent, optimism, corrected). Unlike :func:`bootstrap_ci`, this
    covers training variability (the whole fitting procedure is repeated).

    ``slices`` ({slice: boolean row mask}) scores every fit on each slice of the rows (e.g.
    one landmark) and returns slice -> name -> Stats. ``p_apparent``: predictions of a
    model already fitted on all rows, which saves that fit. ``progress(done, n_boot)`` is
    called after each replicate.
    """
    y = np.asarray(y)
    y, _ = check_binary(y, np.zeros(len(y)))
    n = y.size
    all_idx = np.arange(n)
    masks = {"": np.ones(n, dtype=bool)} if slices is None else dict(slices)
    if p_apparent is None:
        p_apparent = fit_predict(all_idx, [all_idx])[0]
    p_app = np.asarray(p_apparent, dtype=np.float64)
    apparent = {
        (s, name): fn(y[m], p_app[m]) for s, m in masks.items() for name, fn in metric_fns.items()
    }
    resampler = GroupResampler(groups, n)
    draws = resampler.draw(np.random.default_rng(seed), n_boot)
    optimism = {key: np.full(n_boot, np.nan) for key in apparent}
    skipped = 0
    for b in range(n_boot):
        idx = resampler.rows(draws[b])
        yb = y[idx]
        if yb.min() == yb.max():
            skipped += 1
        else:
            p_boot, p_orig = (np.asarray(v) for v in fit_predict(idx, [idx, all_idx]))
            for s, m in masks.items():
                mb = m[idx]
                for name, fn in metric_fns.items():
                    optimism[s, name][b] = fn(yb[mb], p_boot[mb]) - fn(y[m], p_orig[m])
        if progress:
            progress(b + 1, n_boot)
    out: dict = {s: {} for s in masks}
    for (s, name), values in optimism.items():
        vals = values[np.isfinite(values)]
        opt = float(vals.mean()) if vals.size else float("nan")
        app = apparent[s, name]
        out[s][name] = Stats((app, opt, app - opt), n_used=vals.size, n_skipped=skipped)
    return out[""] if slices is None else out
