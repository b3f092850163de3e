"""How much of what the model relies on was measured, and what to do with untrained gaps.

**Key inputs.** :data:`KEY_INPUTS` are the time-varying measurements a score leans on: the
variables whose features carry the largest mean |SHAP| in a default model trained on 1,000
simulated patients (m-EASIX's ingredients LDH, creatinine and platelets; IL-6; temperature;
CRP; heart rate; ferritin; systolic BP; ``benchmarks/bench_completeness.py`` prints the
ranking). Static descriptors (age, product, disease) are not in the list: they are known
at admission, and a missing one is handled by the imputation rule below. The list is a
constant, not a model setting, so the scores table has the same columns for every model.

**Completeness** of a scored patient is the share of key inputs with at least one value at or
before the landmark L (the data the score used; pre-infusion baselines count), and each key
input's age is ``hours_since_<variable>``: hours from its last such value to L, where the
score's data end (empty when never measured; add the hours from L to the as-of time for its
age now). The band is ``full`` from :data:`FULL_FROM`, ``sparse`` below
:data:`SPARSE_BELOW`, otherwise ``partial``.

**Inputs never missing in training.** When a feature had no missing value in the training
rows (age, the baseline labs of a site that always sends them), xgboost's default branch for
a missing value was never taken by a training patient, so a missing value at scoring gets an
arbitrary contribution. Such a feature is set to its training median before prediction
(:func:`impute_untrained_missing`), so the trees take a trained path; the SHAP values then
explain the imputed value, and drivers and message say so. The training missing shares and
medians are stored in the bundle (``training_inputs``); a bundle without them is scored
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crs_ml.cohort import implausible

#: the measurements completeness counts (catalogue variable names), by mean |SHAP|
KEY_INPUTS: tuple[str, ...] = (
    "il6",
    "temperature",
    "crp",
    "heart_rate",
    "ldh",
    "ferritin",
    "sbp",
    "platelets",
    "creatinine",
)
#: completeness at or above this share is ``full`` (every key input measured: removing IL-6
#: alone moves the 90th percentile of risk by 0.09 at 24 h, benchmarks/bench_completeness.py)
FULL_FROM = 1.0
#: completeness below this share is ``sparse`` (4 of 9 or fewer; 5 to 8 of 9 is ``partial``)
SPARSE_BELOW = 0.5
#: a score whose |SHAP| comes more than this share from unmeasured or imputed inputs says so
MOSTLY_ABSENT_SHARE = 0.5
#: features missing in at most this share of training rows are imputed when missing
UNTRAINED_MISSING_SHARE = 0.0
BANDS = ("full", "partial", "sparse")
#: below this many rows (one patient, a few), completeness and the untrained-missing fill take
#: numpy paths that give what the general (pandas) paths give
SMALL_ROWS = 1_000
_FLOAT = np.dtype(np.float64)


def key_input_columns() -> list[str]:
    """The freshness columns of the scores table, ``hours_since_<variable>``."""
    return [f"hours_since_{v}" for v in KEY_INPUTS]


def band_of(share: np.ndarray) -> np.ndarray:
    """``full`` / ``partial`` / ``sparse`` per share (None where NaN)."""
    share = np.asarray(share, dtype=np.float64)
    out = np.full(share.shape, None, dtype=object)
    ok = np.isfinite(share)
    out[ok] = np.select(
        [share[ok] >= FULL_FROM, share[ok] < SPARSE_BELOW], ["full", "sparse"], "partial"
    )
    return out


@dataclass
class Completeness:
    """Per patient: share of key inputs measured by L, band, missing names, input ages."""

    share: np.ndarray
    band: np.ndarray
    missing: np.ndarray  #: display names of the key inputs not measured, "; "-free text
    hours_since: np.ndarray  #: (n_patients, len(KEY_INPUTS)) hours since last value

    def frame(self) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "completeness": self.share,
                "completeness_band": pd.Series(self.band, dtype=object),
                "missing_inputs": pd.Series(self.missing, dtype=object),
            }
        )
        ages = pd.DataFrame(self.hours_since, columns=key_input_columns())
        return pd.concat([out, ages], axis=1)


def completeness(
    observations: pd.DataFrame,
    obs_code: np.ndarray,
    landmark_h: np.ndarray,
) -> Completeness:
    """Completeness of every patient from their observations at or before ``landmark_h``.

    ``obs_code``: each observation row's patient position (-1: none). Patients without a
    landmark get NaN and no band."""
    from crs_ml.variables import VARIABLES

    n, k = len(landmark_h), len(KEY_INPUTS)
    last = np.full(n * k, -np.inf)
    if len(observations):
        value = observations["value"]
        small = len(observations) < SMALL_ROWS and value.dtype == _FLOAT
        if small:  # a few rows (one patient): each variable looked up in a dict
            position = {v: j for j, v in enumerate(KEY_INPUTS)}
            variables = observations["variable"].tolist()
            var_index = np.array([position.get(v, -1) for v in variables], dtype=np.int64)
            value_ok = ~np.isnan(value.to_numpy())
        else:
            codes, uniques = pd.factorize(observations["variable"])
            key_of = pd.Index(KEY_INPUTS).get_indexer(pd.Index(np.asarray(uniques, dtype=object)))
            var_index = np.where(codes >= 0, key_of[np.maximum(codes, 0)], -1)
            value_ok = value.notna().to_numpy()
        value_ok = value_ok & ~implausible(observations)  # read by no feature: not measured
        t = observations["hours"].to_numpy(dtype=np.float64)
        L = landmark_h[np.maximum(obs_code, 0)]
        with np.errstate(invalid="ignore"):
            use = (obs_code >= 0) & (var_index >= 0) & value_ok & (t <= L)
        # no time is NaN (t <= L): the latest by np.maximum, as groupby().max() gives it
        # (about 5x faster than that for a 5,000-patient chunk)
        np.maximum.at(last, obs_code[use] * k + var_index[use], t[use])
    last = last.reshape(n, k)
    seen = np.isfinite(last)
    has_l = np.isfinite(landmark_h)
    share = np.where(has_l, seen.mean(axis=1), np.nan)
    with np.errstate(invalid="ignore"):
        age = np.where(seen & has_l[:, None], landmark_h[:, None] - last, np.nan)
    names = [VARIABLES[v].display for v in KEY_INPUTS]
    if n < SMALL_ROWS:  # a few patients: their texts joined one by one
        missing = np.empty(n, dtype=object)
        missing[:] = [", ".join(names[j] for j in range(k) if not seen[i, j]) if has_l[i]
                      else None for i in range(n)]  # fmt: skip
        return Completeness(share, band_of(share), missing, age)
    # one text per pattern of key inputs seen (at most 2^k, a handful in practice), not per
    # patient: each pattern's names joined once, then taken by pattern
    pattern = seen.astype(np.int64) @ (1 << np.arange(k, dtype=np.int64))
    uniq, which = np.unique(pattern, return_inverse=True)
    texts = np.empty(len(uniq), dtype=object)
    texts[:] = [", ".join(names[j] for j in range(k) if not (p >> j) & 1) for p in uniq.tolist()]
    missing = texts[which.ravel()]
    missing[~has_l] = None
    return Completeness(share, band_of(share), missing, age)


def training_inputs(X: pd.DataFrame) -> dict:
    """What scoring needs to know of the training feature matrix: per feature the share of
    rows missing and the median (None when all missing); stored in the bundle."""
    numbers = X.astype(np.float64)
    share = numbers.isna().mean() if len(X) else pd.Series(1.0, index=X.columns)
    median = numbers.median()
    cols = list(X.columns)
    return {
        "rows": int(len(X)),
        "missing_share": {c: float(share[c]) for c in cols},
        "median": {c: (float(median[c]) if np.isfinite(median[c]) else None) for c in cols},
    }


def impute_untrained_missing(
    X: pd.DataFrame, names: list[str], stored: dict | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """``X`` with each feature that was (almost) never missing in training set to its training
    median where missing, and the (rows, features) mask of the values so imputed.

    ``stored``: the bundle's ``training_inputs`` (None or empty: nothing imputed)."""
    mask = np.zeros((len(X), len(names)), dtype=bool)
    if not stored or not len(X):
        return X, mask
    share, median = stored.get("missing_share", {}), stored.get("median", {})
    cols = [
        j
        for j, name in enumerate(names)
        if share.get(name) is not None
        and median.get(name) is not None
        and share[name] <= UNTRAINED_MISSING_SHARE
    ]
    if not cols:
        return X, mask
    if (len(X) < SMALL_ROWS and not X.attrs and list(X.columns) == names
            and set(X.dtypes.tolist()) == {_FLOAT}):  # fmt: skip
        # a few float rows (one patient): no frame taken by column names nor set by them
        values = X.to_numpy(dtype=np.float64, copy=True)
        gap = np.isnan(values[:, cols])
        if not gap.any():
            return X, mask
        fill = np.array([float(median[names[j]]) for j in cols])
        values[:, cols] = np.where(gap, fill, values[:, cols])
        mask[:, cols] = gap
        return pd.DataFrame(values, index=X.index, columns=X.columns, copy=False), mask
    chosen = [names[j] for j in cols]
    values = X[chosen].to_numpy(dtype=np.float64, na_value=np.nan)
    gap = np.isnan(values)
    if not gap.any():
        return X, mask
    out = X.copy()
    # one vectorised fill (a column loop cost ~8 ms a call for one patient)
    out[chosen] = np.where(gap, np.array([float(median[n]) for n in chosen]), values)
    mask[:, cols] = gap
    return out, mask
