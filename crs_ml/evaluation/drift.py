"""Drift check: a validation cohort's features against the model's training fingerprint.

The training fingerprint (``bundle.manifest['fingerprint']['features']``, written by
:func:`crs_ml.fingerprints.feature_fingerprint` on the stacked training rows) holds per feature
the share of rows where it was measured and the mean, sd and quartiles of the measured
values: aggregates only, never rows. The same aggregates are computed on the validation
cohort's stacked landmark rows (same landmarks, same feature code) and compared:

* standardised mean difference ``SMD = (mean_val - mean_train) / sqrt((sd_train^2 +
  sd_val^2) / 2)`` over measured values (the pooled sd of the two cohorts; where it is 0
  the SMD is 0 for equal means and +-inf otherwise);
* ``measured_diff = share_measured_val - share_measured_train`` (missingness shift: a
  site that measures IL-6 rarely changes what the model sees even if the values match).

A feature is flagged when ``|SMD| > smd_threshold`` (default 0.2, the usual "small effect"
bound) or ``|measured_diff| > measured_threshold`` (default 0.2, i.e. 20 percentage points).
Flags describe the data, not the model's performance: a shift in a feature the model barely
uses does little harm, so read the table next to the SHAP summary.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.fingerprints import feature_fingerprint

SMD_THRESHOLD = 0.2
MEASURED_THRESHOLD = 0.2
DRIFT_COLUMNS = [
    "feature",
    "train_share_measured",
    "val_share_measured",
    "measured_diff",
    "train_mean",
    "val_mean",
    "train_sd",
    "val_sd",
    "smd",
    "flagged",
    "reason",
]


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def standardised_mean_difference(mean_train, sd_train, mean_val, sd_val) -> np.ndarray:
    """SMD with the pooled sd of both cohorts (vectorised; NaN where a mean is unknown)."""
    m0, s0 = np.asarray(mean_train, dtype=float), np.asarray(sd_train, dtype=float)
    m1, s1 = np.asarray(mean_val, dtype=float), np.asarray(sd_val, dtype=float)
    pooled = np.sqrt((s0**2 + s1**2) / 2.0)
    diff = m1 - m0
    with np.errstate(divide="ignore", invalid="ignore"):
        smd = np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), np.nan)
    zero_sd = (pooled == 0) & np.isfinite(diff)
    smd = np.where(zero_sd & (diff == 0), 0.0, smd)
    smd = np.where(zero_sd & (diff != 0), np.where(diff > 0, np.inf, -np.inf), smd)
    return smd


def drift_table(
    X: pd.DataFrame,
    training_features: dict[str, dict[str, Any]] | None,
    smd_threshold: float = SMD_THRESHOLD,
    measured_threshold: float = MEASURED_THRESHOLD,
) -> pd.DataFrame:
    """One row per feature present in both the fingerprint and ``X``; flagged rows first.

    Columns: feature, train_share_measured, val_share_measured, measured_diff, train_mean,
    val_mean, train_sd, val_sd, smd, flagged (bool), reason ('' when not flagged). Sorted
    by flagged, then by the larger of |SMD| and |measured_diff| / measured_threshold *
    smd_threshold (both on the scale of their thresholds), descending.
    """
    if not training_features:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in DRIFT_COLUMNS})
    names = [c for c in X.columns if c in training_features]
    with warnings.catch_warnings():  # all-missing columns: NaN aggregates are the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        val = feature_fingerprint(X[names])
    train = pd.DataFrame(
        {
            k: [_num(training_features[n].get(k)) for n in names]
            for k in ("share_measured", "mean", "sd")
        },
        index=names,
    )
    now = pd.DataFrame(
        {k: [_num(val[n].get(k)) for n in names] for k in ("share_measured", "mean", "sd")},
        index=names,
    )
    smd = standardised_mean_difference(train["mean"], train["sd"], now["mean"], now["sd"])
    mdiff = (now["share_measured"] - train["share_measured"]).to_numpy(dtype=float)
    big_smd = np.abs(np.nan_to_num(smd, nan=0.0)) > smd_threshold
    big_miss = np.abs(np.nan_to_num(mdiff, nan=0.0)) > measured_threshold
    reason = np.where(
        big_smd & big_miss,
        "values and missingness",
        np.where(big_smd, "values", np.where(big_miss, "missingness", "")),
    )
    table = pd.DataFrame(
        {
            "feature": pd.Series(names, dtype=object),
            "train_share_measured": train["share_measured"].to_numpy(),
            "val_share_measured": now["share_measured"].to_numpy(),
            "measured_diff": mdiff,
            "train_mean": train["mean"].to_numpy(),
            "val_mean": now["mean"].to_numpy(),
            "train_sd": train["sd"].to_numpy(),
            "val_sd": now["sd"].to_numpy(),
            "smd": smd,
            "flagged": big_smd | big_miss,
            "reason": pd.Series(reason, dtype=object),
        }
    )
    severity = np.maximum(
        np.abs(np.nan_to_num(smd, nan=0.0, posinf=1e9, neginf=-1e9)),
        np.abs(np.nan_to_num(mdiff, nan=0.0)) / measured_threshold * smd_threshold,
    )
    order = np.lexsort((-severity, ~table["flagged"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def drift_summary(
    table: pd.DataFrame,
    smd_threshold: float = SMD_THRESHOLD,
    measured_threshold: float = MEASURED_THRESHOLD,
    top: int = 15,
) -> dict[str, Any]:
    """metrics.json block: the rule, the counts and the top rows (flagged first)."""
    flagged = table["flagged"].astype(bool) if len(table) else pd.Series(dtype=bool)
    return {
        "rule": (
            f"flagged when |SMD| > {smd_threshold:g} (pooled sd of training and validation "
            f"measured values) or the share of rows with the feature measured changes by more "
            f"than {measured_threshold:g}"
        ),
        "smd_threshold": smd_threshold,
        "measured_threshold": measured_threshold,
        "n_features": int(len(table)),
        "n_flagged": int(flagged.sum()),
        "flagged_features": table.loc[flagged, "feature"].astype(str).tolist(),
        "table": table.head(max(top, int(flagged.sum()))).to_dict(orient="records"),
    }
