"""Validation metrics against hand-computed values on small fixed inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.special import expit, logit

from crs_ml.evaluation.comparisons import (
    age_band,
    baseline_scores,
    compare_baselines,
    subgroup_metrics,
)
from crs_ml.evaluation.validate import (
    alert_metrics,
    decision_curve,
    operating_points,
    performance,
)


def test_auroc_matches_pair_count():
    # positives 0.8 and 0.3 against negatives 0.1, 0.4, 0.35: 0.8 wins 3 pairs, 0.3 wins 1
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.3])
    out = performance(y, p, np.arange(5), n_boot=0)
    assert out["auroc"] == pytest.approx(4 / 6)
    assert out["n"] == 5 and out["n_events"] == 2
    assert out["reaches_100_events"] is False
    assert out["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_calibration_slope_and_intercept_two_groups():
    # two predicted risks, 10 rows each; the logistic fit of y on lp is saturated, so the
    # slope is the log-odds difference of the observed rates over the lp difference
    lp = np.r_[np.full(10, -1.0), np.full(10, 1.0)]
    y = np.r_[np.ones(2), np.zeros(8), np.ones(6), np.zeros(4)]
    out = performance(y, expit(lp), np.arange(20), n_boot=0)
    assert out["calibration_slope"] == pytest.approx((logit(0.6) - logit(0.2)) / 2, abs=1e-6)
    # calibration in the large: a with sum(y) = sum(expit(a + lp))
    a = brentq(lambda a: 10 * expit(a - 1) + 10 * expit(a + 1) - 8, -5, 5)
    assert out["calibration_intercept"] == pytest.approx(a, abs=1e-6)


def test_calibration_intercept_constant_prediction():
    # everyone predicted 50%, 5 of 20 have the event: intercept = logit(0.25) - logit(0.5)
    y = np.r_[np.ones(5), np.zeros(15)]
    out = performance(y, np.full(20, 0.5), np.arange(20), n_boot=0)
    assert out["calibration_intercept"] == pytest.approx(logit(0.25), abs=1e-6)


def test_net_benefit_by_hand():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.3, 0.6, 0.1, 0.2])
    nb = {round(r["threshold"], 2): r for r in decision_curve(y, p, [0.25, 0.5])}
    # t = 0.25: TP = 2, FP = 1 -> 2/5 - 1/5 * (0.25 / 0.75)
    assert nb[0.25]["net_benefit_model"] == pytest.approx(0.4 - 0.2 / 3)
    assert nb[0.25]["net_benefit_treat_all"] == pytest.approx(0.4 - 0.6 / 3)
    # t = 0.5: TP = 1, FP = 1 -> 1/5 - 1/5
    assert nb[0.5]["net_benefit_model"] == pytest.approx(0.0)
    assert nb[0.5]["net_benefit_treat_none"] == 0.0


def test_operating_points_by_hand():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.3, 0.6, 0.1, 0.2])
    row = operating_points(y, p, [0.5, 0.5])[0]  # duplicates collapse
    assert row["sensitivity"] == pytest.approx(0.5)
    assert row["specificity"] == pytest.approx(2 / 3)
    assert row["ppv"] == pytest.approx(0.5)
    assert row["npv"] == pytest.approx(2 / 3)
    assert row["alerts_per_100"] == pytest.approx(40.0)


def _alert_frame() -> pd.DataFrame:
    rows = []
    # A: onset 40 h, first risk >= 0.3 at 18 h -> lead 22 h
    for h, r in zip([6, 12, 18, 24, 30, 36], [0.05, 0.1, 0.35, 0.2, 0.5, 0.6], strict=True):
        rows.append(("A", h, 40.0, 1, r))
    # B: onset 30 h, first alert at 24 h -> lead 6 h
    for h, r in zip([6, 12, 18, 24], [0.1, 0.1, 0.1, 0.4], strict=True):
        rows.append(("B", h, 30.0, 1, r))
    # C: no event, one alert; D: onset 50 h, never alerted
    for h, r in zip([6, 12, 18, 24], [0.5, 0.1, 0.1, 0.1], strict=True):
        rows.append(("C", h, np.nan, 0, r))
    for h in [6, 12, 18, 24]:
        rows.append(("D", h, 50.0, 1, 0.05))
    return pd.DataFrame(rows, columns=["patient_id", "landmark_h", "outcome_hours", "y", "risk"])


def test_lead_time_and_alert_burden_by_hand():
    frame = _alert_frame()
    out = alert_metrics(frame, threshold=0.3, horizon_h=336.0, spacing_h=6.0)
    assert out["lead_time_h"]["median"] == pytest.approx(14.0)  # median of 22 and 6
    assert out["lead_time_h"]["iqr"] == pytest.approx([10.0, 18.0])
    assert out["lead_time_h"]["n_alerted_events"] == 2
    assert out["lead_time_h"]["n_events"] == 3
    # 5 rows at or above 0.3 over 18 rows x 6 h = 4.5 patient-days
    assert out["alerts_per_patient_day"] == pytest.approx(5 / 4.5)
    # alerted patients A, B, C; with an event A, B
    assert out["number_needed_to_evaluate"] == pytest.approx(1.5)


def test_lead_time_ignores_events_after_horizon():
    frame = _alert_frame()
    out = alert_metrics(frame, threshold=0.3, horizon_h=35.0, spacing_h=6.0)
    assert out["lead_time_h"]["n_events"] == 1  # only B has onset within 35 h
    assert out["lead_time_h"]["median"] == pytest.approx(6.0)


def _simulated(n: int, seed: int):
    rng = np.random.default_rng(seed)
    lp = rng.normal(-2.0, 1.2, n)
    y = (rng.random(n) < expit(lp)).astype(int)
    return y, expit(lp)


def test_ci_widths_shrink_with_n():
    widths = {}
    for n in (300, 3000):
        y, p = _simulated(n, seed=7)
        out = performance(y, p, np.arange(n), n_boot=200, seed=1)
        widths[n] = {
            k: out[f"{k}_ci"][1] - out[f"{k}_ci"][0]
            for k in ("auroc", "auprc", "brier", "calibration_intercept", "calibration_slope")
        }
        for k, w in widths[n].items():
            assert np.isfinite(w) and w > 0, k
    for k in widths[300]:
        assert widths[3000][k] < 0.6 * widths[300][k], k


def test_bootstrap_resamples_persons():
    # the same 50 persons each contributing 10 identical rows: resampling by person must
    # give the interval of 50 units, much wider than that of 500 independent rows
    y, p = _simulated(50, seed=3)
    rows_y, rows_p = np.repeat(y, 10), np.repeat(p, 10)
    by_person = performance(rows_y, rows_p, np.repeat(np.arange(50), 10), 200, seed=2)
    by_row = performance(rows_y, rows_p, np.arange(500), 200, seed=2)
    width = lambda o: o["auroc_ci"][1] - o["auroc_ci"][0]  # noqa: E731
    assert width(by_person) > 1.8 * width(by_row)


def test_performance_with_one_class_has_no_interval():
    out = performance(np.zeros(10), np.full(10, 0.1), np.arange(10), n_boot=50)
    assert np.isnan(out["auroc"]) and all(np.isnan(out["auroc_ci"]))
    assert out["n_events"] == 0


@pytest.mark.parametrize("events", [9, 10])
def test_slice_with_too_few_events_keeps_numbers_but_has_no_interval(events):
    # 9 (or 10) events among 60 rows: the point metrics are kept either way, but only a
    # slice with >= MIN_SLICE_EVENTS events and non-events gets an interval
    rng = np.random.default_rng(4)
    y = np.r_[np.ones(events), np.zeros(60 - events)]
    p = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.2, 60), 0.01, 0.99)  # overlapping
    out = performance(y, p, np.arange(60), n_boot=100, seed=0)
    assert out["too_few_events"] is (events < 10)
    assert 0.5 < out["auroc"] <= 1 and np.isfinite(out["brier"])
    assert np.isfinite(out["calibration_slope"])
    for k in ("auroc", "auprc", "brier", "calibration_intercept", "calibration_slope"):
        assert all(np.isnan(out[f"{k}_ci"])) is (events < 10), k
    few_non_events = performance(1 - y, 1 - p, np.arange(60), n_boot=100, seed=0)
    assert few_non_events["too_few_events"] is (events < 10)


def test_subgroup_rows_carry_the_too_few_events_flag():
    y, p = _simulated(600, seed=5)
    attrs = pd.DataFrame({"site": np.where(np.arange(600) < 300, "a", "b")})
    out = subgroup_metrics(y, p, np.arange(600), attrs, n_boot=20, seed=0, min_events=5)
    assert {r["level"]: r["too_few_events"] for r in out["rows"]} == {"a": False, "b": False}
    attrs = pd.DataFrame({"site": np.where(y == 1, "a", "b")})
    attrs.loc[np.flatnonzero(y == 0)[:3], "site"] = "a"  # 'a': all events, 3 non-events
    out = subgroup_metrics(y, p, np.arange(600), attrs, n_boot=20, seed=0, min_events=5)
    row = {r["level"]: r for r in out["rows"]}["a"]
    assert row["too_few_events"] is True and all(np.isnan(row["auroc_ci"]))


def test_baselines_use_fallback_and_rule():
    X = pd.DataFrame(
        {
            "measix_landmark": [np.nan, 2.0, 8.0, np.nan],
            "measix_baseline": [1.0, 99.0, 3.0, np.nan],
            "temperature_max_early": [37.0, 39.5, np.nan, 38.9],
        }
    )
    b = baseline_scores(X, high_fever_c=38.9)
    # fallback to baseline in row 0; row 3 has neither -> median of (1, 2, 8) = 2
    assert b["m-EASIX"]["score"].tolist() == [1.0, 2.0, 8.0, 2.0]
    assert b["m-EASIX"]["missing"].tolist() == [False, False, False, True]
    assert b["fever rule"]["score"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert b["max early temperature"]["score"][2] < 37.0


def test_paired_difference_favours_the_better_score():
    y, p = _simulated(800, seed=11)
    noise = np.random.default_rng(0).normal(0, 3.0, 800)
    base = {"noisy": {"score": logit(p) + noise, "definition": "x"}}
    out = compare_baselines(y, p, base, np.arange(800), n_boot=200, seed=0)["noisy"]
    d = out["auroc_diff_model_minus_baseline"]
    model_auroc = performance(y, p, np.arange(800), n_boot=0)["auroc"]
    assert d["diff"] == pytest.approx(model_auroc - out["auroc"])
    assert d["diff"] > 0 and d["ci"][0] > 0 and d["p_value"] < 0.05


def test_subgroups_skip_few_events():
    y, p = _simulated(600, seed=5)
    attrs = pd.DataFrame({"site": np.where(np.arange(600) < 560, "big", "small")})
    out = subgroup_metrics(y, p, np.arange(600), attrs, n_boot=20, seed=0, min_events=10)
    evaluated = {r["level"] for r in out["rows"]}
    skipped = {r["level"]: r["n_events"] for r in out["skipped"]}
    assert "big" in evaluated
    assert "small" in skipped and skipped["small"] == int(y[560:].sum()) < 10


def test_age_band():
    assert age_band([39.9, 40, 64.9, 65, np.nan]).tolist() == [
        "<40",
        "40-64",
        "40-64",
        ">=65",
        "unknown",
    ]


def test_weighted_replicate_equals_metrics_on_the_materialised_resample():
    from crs_ml.evaluation.resampling import GroupResampler
    from crs_ml.evaluation.validate import WeightedMetrics, point_metrics

    rng = np.random.default_rng(0)
    p = np.round(rng.beta(1, 6, 900), 2)  # many ties
    y = (rng.random(900) < p).astype(int)
    groups = np.repeat(np.arange(300), 3)
    resampler = GroupResampler(groups, 900)
    full = point_metrics(y, p)
    replicate = WeightedMetrics(y, p, (full["calibration_intercept"], full["calibration_slope"]))
    for drawn in resampler.draw(rng, 5):
        direct = list(point_metrics(y[resampler.rows(drawn)], p[resampler.rows(drawn)]).values())
        weights = np.bincount(drawn, minlength=300)[resampler.codes].astype(float)
        np.testing.assert_allclose(replicate(weights), direct, rtol=1e-9, atol=1e-12)


def test_a_slope_interval_with_an_end_at_infinity_is_not_estimable():
    # 19 events ranked almost perfectly: in about 1 resample in 7 the drawn risks separate the
    # events completely, so that resample's calibration slope is infinite
    from scipy.special import expit

    from crs_ml.evaluation.performance import performance

    rng = np.random.default_rng(0)
    lp = rng.normal(-3.0, 2.0, 100)
    y = (rng.random(100) < expit(2.5 * lp + 2)).astype(int)
    out = performance(y, expit(lp), np.arange(100), n_boot=400, seed=0)
    assert np.isfinite(out["calibration_slope"]) and out["n_events"] >= 10
    assert out["bootstrap"]["separated"] > 0.025 * 400
    assert np.isnan(out["calibration_slope_ci"]).all()
    assert np.isfinite(out["auroc_ci"]).all()
    # a few separated resamples count as the largest slopes: the interval stays, and its
    # upper end is at least that of the finite resamples alone
    rng = np.random.default_rng(2)
    lp = rng.normal(-2, 1, 100)
    y = (rng.random(100) < expit(3 * lp + 2)).astype(int)
    out = performance(y, expit(lp), np.arange(100), n_boot=1000, seed=0)
    assert 0 < out["bootstrap"]["separated"] < 25
    lo, hi = out["calibration_slope_ci"]
    assert np.isfinite([lo, hi]).all() and lo < out["calibration_slope"] < hi
