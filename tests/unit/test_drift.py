"""Drift check: shifted features are flagged, unshifted ones are not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crs_ml.evaluation.drift import drift_summary, drift_table, standardised_mean_difference
from crs_ml.fingerprints import feature_fingerprint


def _cohort(n: int, seed: int, shift: float = 0.0, measured: float = 0.9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    il6 = rng.normal(3.0 + shift, 1.0, n)
    crp = rng.normal(50.0, 10.0, n)
    ferritin = rng.normal(500.0, 100.0, n)
    ferritin[rng.random(n) > measured] = np.nan
    return pd.DataFrame({"il6_max": il6, "crp_max": crp, "ferritin_max": ferritin})


def test_smd_by_hand():
    # (12 - 10) / sqrt((2^2 + 4^2) / 2) = 2 / sqrt(10)
    assert standardised_mean_difference(10, 2, 12, 4) == pytest.approx(2 / np.sqrt(10))
    assert standardised_mean_difference(1, 0, 1, 0) == 0.0
    assert standardised_mean_difference(0, 0, 1, 0) == np.inf


def test_drift_flags_shifted_values_and_missingness_only():
    training = feature_fingerprint(_cohort(2000, seed=1))
    validation = _cohort(2000, seed=2, shift=0.6, measured=0.5)
    table = drift_table(validation, training).set_index("feature")
    assert table.loc["il6_max", "flagged"] and table.loc["il6_max", "reason"] == "values"
    assert table.loc["il6_max", "smd"] == pytest.approx(0.6, abs=0.1)
    assert table.loc["ferritin_max", "flagged"]
    assert table.loc["ferritin_max", "reason"] == "missingness"
    assert table.loc["ferritin_max", "measured_diff"] == pytest.approx(-0.4, abs=0.05)
    assert not table.loc["crp_max", "flagged"]
    assert abs(table.loc["crp_max", "smd"]) < 0.2


def test_same_population_flags_nothing_and_order_is_by_severity():
    training = feature_fingerprint(_cohort(2000, seed=1))
    assert not drift_table(_cohort(2000, seed=3), training)["flagged"].any()
    table = drift_table(_cohort(2000, seed=2, shift=1.5, measured=0.5), training)
    assert table["feature"].tolist()[:2] == ["il6_max", "ferritin_max"]
    summary = drift_summary(table)
    assert summary["n_flagged"] == 2
    assert summary["flagged_features"] == ["il6_max", "ferritin_max"]


def test_no_fingerprint_gives_an_empty_table():
    assert drift_table(_cohort(10, seed=0), None).empty
    assert drift_summary(drift_table(_cohort(10, seed=0), {}))["n_flagged"] == 0
