"""Metrics, utility and resampling: hand-computed values on small fixed inputs, and
simulation checks of the statistical properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

from crs_ml.errors import InputError
from crs_ml.evaluation import metrics as M
from crs_ml.evaluation.resampling import (
    GroupResampler,
    bootstrap_ci,
    optimism_corrected_bootstrap,
    paired_bootstrap_diff,
)
from crs_ml.evaluation.utility import (
    alerts_per_patient_day,
    lead_time_hours,
    net_benefit,
    number_needed_to_evaluate,
    threshold_table,
)


def simulate(n: int, seed: int, mean_lp: float = -1.5, sd_lp: float = 1.0):
    rng = np.random.default_rng(seed)
    lp = rng.normal(mean_lp, sd_lp, n)
    y = (rng.random(n) < expit(lp)).astype(int)
    return y, lp


# --- discrimination and Brier -------------------------------------------------------------


def test_auroc_with_ties_hand_computed():
    y = [0, 0, 1, 1, 0, 1]
    p = [0.1, 0.4, 0.4, 0.8, 0.8, 0.9]
    # positive 0.4 beats 0.1, ties 0.4: 1.5; 0.8 beats 0.1, 0.4, ties 0.8: 2.5; 0.9: 3
    assert M.auroc(y, p) == pytest.approx(7 / 9, abs=1e-12)
    assert M.auroc(1 - np.asarray(y), p) == pytest.approx(2 / 9, abs=1e-12)


def test_auprc_hand_computed_and_ties():
    y = [1, 0, 1, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.5]
    # recall steps: 0.5 at precision 1, then 0.5 at precision 2/3
    assert M.auprc(y, p) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)
    # tied scores form one threshold: at 0.5 both rows are flagged together
    assert M.auprc([1, 0, 1], [0.9, 0.5, 0.5]) == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_rank_metrics_agree_with_sklearn_on_tied_scores():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.round(rng.random(400), 1)
    assert M.auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert M.auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_brier_hand_computed():
    assert M.brier([1, 0, 1, 0], [0.8, 0.3, 0.6, 0.0]) == pytest.approx(
        (0.04 + 0.09 + 0.16 + 0.0) / 4, abs=1e-12
    )


@pytest.mark.parametrize("fn", [M.auroc, M.auprc])
def test_one_class_gives_nan_not_error(fn):
    assert math.isnan(fn([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(fn([1, 1], [0.1, 0.2]))
    assert all(math.isnan(v) for v in M.calibration_intercept_slope([1, 1], [0.2, 0.3]))


def test_brier_is_defined_with_one_outcome_class():
    assert M.brier([0, 0, 0], [0.1, 0.2, 0.3]) == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    assert M.brier([1, 1], [0.1, 0.5]) == pytest.approx((0.81 + 0.25) / 2)
    assert math.isnan(M.brier([], []))


def test_too_few_events_threshold():
    assert M.MIN_SLICE_EVENTS == 10
    assert not M.too_few_events(10, 20)  # 10 events, 10 non-events
    assert M.too_few_events(9, 100) and M.too_few_events(91, 100)
    assert M.too_few_events(0, 0)


Y6 = [0, 1, 0, 1, 0, 0]
NAN_P = [0.1, 0.9, np.nan, 0.5, np.inf, 0.2]
BIG_P = [0.1, 0.9, 1.2, 0.5, -0.1, 0.2]
PID6 = ["A", "A", "B", "B", "C", "C"]
LM6 = [6.0, 12.0, 6.0, 12.0, 6.0, 12.0]


def _lead(p):
    frame = pd.DataFrame({"patient_id": PID6, "landmark_h": LM6, "p": p})
    frame["outcome_hours"] = [20.0, 20.0, np.nan, np.nan, 30.0, 30.0]
    return lead_time_hours(frame, 0.3)


#: every metric entry point, called on (y, p); all share one check of the risks
ENTRY_POINTS = {
    "auroc": lambda p: M.auroc(Y6, p),
    "auprc": lambda p: M.auprc(Y6, p),
    "brier": lambda p: M.brier(Y6, p),
    "calibration": lambda p: M.calibration_intercept_slope(Y6, p),
    "calibration_curve": lambda p: M.calibration_curve_binned(Y6, p),
    "net_benefit": lambda p: net_benefit(Y6, p),
    "threshold_table": lambda p: threshold_table(Y6, p),
    "lead_time": _lead,
    "alerts_per_patient_day": lambda p: alerts_per_patient_day(PID6, LM6, p, 0.3),
    "nne": lambda p: number_needed_to_evaluate(PID6, Y6, p, 0.3),
    "bootstrap_ci": lambda p: bootstrap_ci(M.auroc, Y6, p, PID6, n_boot=5),
}
RANK_METRICS = {"auroc", "auprc", "bootstrap_ci"}  # any finite score, not only probabilities


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_nan_risk_is_the_same_error_naming_rows_everywhere(name):
    with pytest.raises(InputError, match=r"NaN or infinite in 2 of 6 rows \(rows 3, 5;"):
        ENTRY_POINTS[name](NAN_P)


@pytest.mark.parametrize("name", sorted(set(ENTRY_POINTS) - RANK_METRICS))
def test_probability_outside_0_1_is_rejected_everywhere(name):
    with pytest.raises(InputError, match=r"\[0, 1\]; 2 of 6 rows \(rows 3, 5;"):
        ENTRY_POINTS[name](BIG_P)
    ENTRY_POINTS[name](np.clip(BIG_P, 0, 1))  # the same rows within [0, 1] are fine


def test_rank_metrics_accept_scores_beyond_1():
    assert M.auroc(Y6, [1.0, 9.0, 2.0, 5.0, -1.0, 2.0]) == pytest.approx(1.0)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="length"):
        M.auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="0 and 1"):
        M.auroc([0, 2], [0.1, 0.2])
    with pytest.raises(InputError, match="NaN"):
        M.auroc([0, 1], [0.1, np.nan])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        M.brier([0, 1], [0.1, 1.2])


# --- calibration ------------------------------------------------------------------------------


def test_calibration_of_true_model_and_of_overconfident_model():
    y, lp = simulate(60_000, seed=1)
    intercept, slope = M.calibration_intercept_slope(y, expit(lp))
    assert abs(intercept) < 0.04
    assert slope == pytest.approx(1.0, abs=0.04)
    _, slope_bad = M.calibration_intercept_slope(y, expit(2 * lp))
    assert slope_bad == pytest.approx(0.5, abs=0.03)


def test_calibration_intercept_recovers_an_offset_shift_exactly():
    y, lp = simulate(5_000, seed=2)
    a0, b0 = M.calibration_intercept_slope(y, expit(lp))
    a1, b1 = M.calibration_intercept_slope(y, expit(lp - 0.7))
    assert a1 - a0 == pytest.approx(0.7, abs=1e-8)
    assert b1 == pytest.approx(b0, abs=1e-8)


def test_calibration_intercept_closed_form_for_constant_prediction():
    y = np.array([1, 0, 1, 0, 1, 0, 0, 0])  # observed rate 3/8
    p = np.full(8, 0.2)
    intercept, _ = M.calibration_intercept_slope(y, p)
    assert intercept == pytest.approx(math.log(3 / 5) - math.log(0.2 / 0.8), abs=1e-9)


def test_calibration_slope_matches_direct_scipy_optimisation():
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0])
    p = np.array([0.1, 0.2, 0.3, 0.25, 0.6, 0.45, 0.5, 0.9, 0.15, 0.35, 0.4, 0.7])
    lp = np.log(p / (1 - p))

    def nll(theta):
        eta = theta[0] + theta[1] * lp
        return np.sum(np.logaddexp(0, eta) - y * eta)

    def nll_offset(a):
        eta = a[0] + lp
        return np.sum(np.logaddexp(0, eta) - y * eta)

    ref_slope = minimize(nll, [0.0, 1.0], method="BFGS", options={"gtol": 1e-10}).x
    ref_intercept = minimize(nll_offset, [0.0], method="BFGS", options={"gtol": 1e-10}).x
    intercept, slope = M.calibration_intercept_slope(y, p)
    assert slope == pytest.approx(ref_slope[1], abs=1e-6)
    assert intercept == pytest.approx(ref_intercept[0], abs=1e-6)


def test_calibration_slope_is_nan_under_separation():
    intercept, slope = M.calibration_intercept_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert math.isnan(slope)
    assert math.isfinite(intercept)


def test_calibration_curve_binned_hand_computed():
    p = np.r_[np.full(5, 0.1), np.full(5, 0.3)]
    y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    bins = M.calibration_curve_binned(y, p, n_bins=2)
    assert bins["n"].tolist() == [5, 5]
    assert bins["observed"].tolist() == pytest.approx([0.2, 0.4])
    assert bins["mean_predicted"].tolist() == pytest.approx([0.1, 0.3])
    # Wilson 95% interval for 1/5 is (0.0362, 0.6245)
    assert bins.loc[0, "ci_lo"] == pytest.approx(0.0362, abs=1e-4)
    assert bins.loc[0, "ci_hi"] == pytest.approx(0.6245, abs=1e-4)
    uniform = M.calibration_curve_binned(y, p + 0.05, n_bins=10, strategy="uniform")
    assert uniform["bin"].tolist() == [1, 3]  # [0.1, 0.2) and [0.3, 0.4); empty bins dropped
    assert uniform["p_from"].tolist() == pytest.approx([0.1, 0.3])


def test_calibration_curve_smooth_follows_the_truth():
    y, lp = simulate(20_000, seed=4, mean_lp=-1.0, sd_lp=1.5)
    grid, smooth = M.calibration_curve_smooth(y, expit(lp))
    assert np.max(np.abs(smooth - grid)) < 0.05
    grid, smooth_bad = M.calibration_curve_smooth(y, expit(2 * lp), grid=[0.05, 0.9])
    assert smooth_bad[0] > 0.05 and smooth_bad[1] < 0.9  # too extreme predictions


# --- decision curve, threshold table ------------------------------------------------------------

Y10 = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
P10 = np.array([0.6, 0.3, 0.4, 0.1, 0.05, 0.2, 0.25, 0.02, 0.5, 0.15])


def test_net_benefit_hand_computed():
    nb = net_benefit(Y10, P10, thresholds=[0.2, 0.5]).set_index("threshold")
    # t=0.2: TP=3, FP=3 -> 0.3 - 0.3 * 0.25; treat all: 0.3 - 0.7 * 0.25
    assert nb.loc[0.2, "net_benefit_model"] == pytest.approx(0.225)
    assert nb.loc[0.2, "net_benefit_treat_all"] == pytest.approx(0.125)
    # t=0.5: TP=1, FP=1 -> 0.1 - 0.1; treat all 0.3 - 0.7
    assert nb.loc[0.5, "net_benefit_model"] == pytest.approx(0.0)
    assert nb.loc[0.5, "net_benefit_treat_all"] == pytest.approx(-0.4)
    assert (nb["net_benefit_treat_none"] == 0).all()
    default = net_benefit(Y10, P10)
    assert default["threshold"].tolist() == pytest.approx(np.arange(1, 11) * 0.05)


def test_threshold_table_hand_computed():
    tab = threshold_table(Y10, P10, thresholds=[0.2, 0.5]).set_index("threshold")
    row = tab.loc[0.2]
    assert (row["tp"], row["fp"], row["tn"], row["fn"], row["n_flagged"]) == (3, 3, 4, 0, 6)
    assert row["sensitivity"] == 1.0 and row["specificity"] == pytest.approx(4 / 7)
    assert row["ppv"] == 0.5 and row["npv"] == 1.0 and row["alerts_per_100"] == 60.0
    row = tab.loc[0.5]
    assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (1, 1, 6, 2)
    assert row["npv"] == pytest.approx(6 / 8) and row["sensitivity"] == pytest.approx(1 / 3)
    nobody = threshold_table(Y10, P10, thresholds=[0.95]).iloc[0]
    assert nobody["n_flagged"] == 0 and math.isnan(nobody["ppv"])
    with pytest.raises(InputError):
        threshold_table(Y10, P10, thresholds=[1.0])


# --- alert metrics -------------------------------------------------------------------------------


def test_lead_time_hand_made_patients():
    rows = [
        ("A", 6, 0.1, 30), ("A", 12, 0.4, 30), ("A", 18, 0.2, 30), ("A", 24, 0.5, 30),
        ("B", 6, 0.1, 20), ("B", 12, 0.1, 20), ("B", 18, 0.1, 20),
        ("C", 6, 0.9, np.nan), ("C", 12, 0.9, np.nan),
        ("D", 6, 0.35, 50), ("D", 12, 0.1, 50), ("D", 54, 0.99, 50),
        ("E", 6, 0.9, 400),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["patient_id", "landmark_h", "p", "outcome_hours"])
    per_patient, summary = lead_time_hours(frame.sample(frac=1, random_state=0), 0.3, horizon_h=336)
    lead = per_patient.set_index("patient_id")["lead_time_h"]
    assert sorted(per_patient["patient_id"]) == ["A", "B", "D"]
    assert lead["A"] == 18 and lead["D"] == 44 and math.isnan(lead["B"])
    assert summary["n_events"] == 3 and summary["n_alerted_events"] == 2
    assert summary["median"] == 31 and summary["q25"] == 24.5 and summary["q75"] == 37.5
    _, no_horizon = lead_time_hours(frame, 0.3)
    assert no_horizon["n_events"] == 4  # E counts without a horizon


def test_alerts_per_patient_day_and_new_alerts():
    pid = ["A", "A", "A", "A", "B", "B", "B"]
    lm = [6, 12, 18, 24, 6, 12, 18]
    p = [0.1, 0.5, 0.2, 0.6, 0.7, 0.8, 0.1]
    order = np.array([3, 6, 0, 5, 1, 4, 2])  # shuffled rows give the same answer
    out = alerts_per_patient_day(np.array(pid)[order], np.array(lm)[order], np.array(p)[order], 0.3)
    assert out["alerts"] == 4 and out["new_alerts"] == 3
    assert out["patient_days"] == pytest.approx(7 * 6 / 24)
    assert out["alerts_per_patient_day"] == pytest.approx(4 / 1.75)
    assert out["new_alerts_per_patient_day"] == pytest.approx(3 / 1.75)


def test_number_needed_to_evaluate_patient_level():
    pid = ["A", "A", "B", "B", "C", "D", "E", "E"]
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    p = [0.1, 0.6, 0.1, 0.2, 0.9, 0.5, 0.1, 0.2]
    out = number_needed_to_evaluate(pid, y, p, 0.3)
    assert out["n_alerted"] == 3 and out["n_alerted_with_event"] == 1
    assert out["nne"] == pytest.approx(3.0) and out["ppv_patient"] == pytest.approx(1 / 3)
    assert math.isnan(number_needed_to_evaluate(pid, y, p, 0.95)["nne"])
    assert number_needed_to_evaluate(pid, y, p, 0.8)["nne"] == math.inf


# --- sample size ---------------------------------------------------------------------------------


def test_riley_worked_example():
    # pmsampsize worked example (Riley et al. BMJ 2020): R2cs 0.288, 24 parameters, 17.4%
    out = M.riley_min_sample_size(0.174, 24, r2_cs=0.288)
    assert out["n_shrinkage"] == 623
    assert out["n_r2_optimism"] == 662
    assert out["n_intercept"] == 221
    assert out["min_n"] == 662
    assert out["min_epp"] == pytest.approx(4.80, abs=0.005)
    # criterion (iii) by hand: (1.96 / 0.05)^2 * 0.5 * 0.5 = 384.16
    assert M.riley_min_sample_size(0.5, 5, r2_cs=0.1)["n_intercept"] == 385
    assert M.max_r2_cs(0.5) == pytest.approx(0.75)


def test_riley_r2_defaults_and_c_statistic_conversion():
    default = M.riley_min_sample_size(0.1, 20)
    assert default["r2_cs"] == pytest.approx(0.15 * M.max_r2_cs(0.1))
    assert "default" in default["r2_source"]
    r2_low = M.r2_cs_from_c_statistic(0.7, 0.1)
    r2_high = M.r2_cs_from_c_statistic(0.85, 0.1)
    assert 0 < r2_low < r2_high < M.max_r2_cs(0.1)
    from_c = M.riley_min_sample_size(0.1, 20, c_statistic=0.85)
    assert from_c["r2_cs"] == pytest.approx(r2_high) and from_c["r2_source"].startswith("c_")
    with pytest.raises(InputError):
        M.riley_min_sample_size(0.0, 10)


def test_c_statistic_conversion_matches_riley_simulation():
    # Riley 2021: LP ~ N(mu, 1) in events, N(0, 1) in non-events, mu = sqrt(2) Phi^-1(C)
    from scipy.stats import norm

    c, prev, n = 0.8, 0.15, 200_000
    rng = np.random.default_rng(5)
    n1 = int(prev * n)
    mu = math.sqrt(2) * norm.ppf(c)
    lp = np.r_[rng.normal(mu, 1, n1), rng.normal(0, 1, n - n1)]
    y = np.r_[np.ones(n1), np.zeros(n - n1)]
    assert M.auroc(y, lp) == pytest.approx(c, abs=0.005)
    beta = M.fit_logistic(np.column_stack([np.ones(n), lp]), y)
    eta = beta[0] + beta[1] * lp
    ll_model = np.sum(y * eta - np.logaddexp(0, eta))
    ll_null = n1 * math.log(prev) + (n - n1) * math.log(1 - prev)
    r2_sim = 1 - math.exp(-2 * (ll_model - ll_null) / n)
    assert M.r2_cs_from_c_statistic(c, prev) == pytest.approx(r2_sim, abs=0.005)


def test_events_per_parameter():
    assert M.events_per_parameter(30, 10) == 3.0
    assert math.isnan(M.events_per_parameter(30, 0))


# --- person-level bootstrap ----------------------------------------------------------------------


def clustered(n_persons: int, rows_per_person: int, seed: int):
    rng = np.random.default_rng(seed)
    person_lp = rng.normal(-1.2, 1.2, n_persons)
    lp = np.repeat(person_lp, rows_per_person) + rng.normal(0, 0.3, n_persons * rows_per_person)
    y = (rng.random(lp.size) < expit(lp)).astype(int)
    return y, expit(lp), np.repeat(np.arange(n_persons), rows_per_person)


def test_group_resampler_returns_whole_groups():
    sizes = np.array([1, 2, 3, 4, 2, 5])
    groups = np.repeat(np.array(list("abcdef")), sizes)
    perm = np.random.default_rng(0).permutation(groups.size)
    groups = groups[perm]
    res = GroupResampler(groups, groups.size)
    draws = res.draw(np.random.default_rng(1), 50)
    for drawn in draws:
        idx = res.rows(drawn)
        got = pd.Series(groups[idx]).value_counts()
        expected = pd.Series(np.bincount(drawn, minlength=6) * np.bincount(res.codes))
        expected.index = pd.factorize(groups)[1]
        assert got.reindex(expected.index, fill_value=0).tolist() == expected.tolist()


def test_bootstrap_metric_sees_whole_persons():
    sizes = np.array([1, 3, 2, 4] * 10)
    person = np.repeat(np.arange(sizes.size), sizes)
    y = np.tile([0, 1], person.size // 2 + 1)[: person.size]
    seen_sizes = []

    def stub(yb, pb):  # pb carries the person id: every person must come with all its rows
        ids, counts = np.unique(pb, return_counts=True)
        seen_sizes.append(np.all(counts % sizes[ids.astype(int)] == 0))
        return 0.5

    bootstrap_ci({"stub": stub}, y, person.astype(float), person, n_boot=30, seed=0)
    assert len(seen_sizes) == 31 and all(seen_sizes)  # 30 replicates + the full estimate


def test_bootstrap_deterministic_and_estimate_is_full_data_metric():
    y, p, g = clustered(300, 3, seed=6)
    fns = {"auroc": M.auroc, "brier": M.brier}
    a = bootstrap_ci(fns, y, p, g, n_boot=200, seed=11)
    b = bootstrap_ci(fns, y, p, g, n_boot=200, seed=11)
    c = bootstrap_ci(fns, y, p, g, n_boot=200, seed=12)
    assert a == b and a != c
    est, lo, hi = a["auroc"]
    assert est == M.auroc(y, p) and lo < est < hi
    assert a["auroc"].n_used == 200 and a["auroc"].n_skipped == 0


def test_duplicated_rows_within_person_do_not_narrow_person_bootstrap():
    y, p, g = clustered(200, 2, seed=7)
    fns = {"auroc": M.auroc, "brier": M.brier}
    y2, p2, g2 = np.repeat(y, 2), np.repeat(p, 2), np.repeat(g, 2)
    person = bootstrap_ci(fns, y, p, g, n_boot=300, seed=1)
    person_dup = bootstrap_ci(fns, y2, p2, g2, n_boot=300, seed=1)
    for name in fns:  # same persons drawn, metrics unchanged by duplication -> same interval
        assert person_dup[name] == pytest.approx(person[name], abs=1e-12)
    rows = bootstrap_ci(fns, y, p, None, n_boot=300, seed=1)
    rows_dup = bootstrap_ci(fns, y2, p2, None, n_boot=300, seed=1)
    width = {k: v[2] - v[1] for k, v in rows.items()}
    width_dup = {k: v[2] - v[1] for k, v in rows_dup.items()}
    assert width_dup["auroc"] < 0.85 * width["auroc"]  # row resampling is fooled


def test_ci_width_shrinks_with_sample_size():
    widths = []
    for n in (150, 1500):
        y, p, g = clustered(n, 2, seed=8)
        _, lo, hi = bootstrap_ci({"auroc": M.auroc}, y, p, g, n_boot=200, seed=0)["auroc"]
        widths.append(hi - lo)
    assert widths[1] < 0.5 * widths[0]


def test_one_class_replicates_are_skipped_and_counted():
    y = np.zeros(30, dtype=int)
    y[0] = 1
    p = np.linspace(0.01, 0.5, 30)
    out = bootstrap_ci({"auroc": M.auroc}, y, p, np.arange(30), n_boot=200, seed=0)["auroc"]
    assert 0 < out.n_skipped < 200 and out.n_used + out.n_skipped == 200


def test_paired_bootstrap_diff():
    y, p, g = clustered(400, 2, seed=9)
    noise = np.random.default_rng(0).random(y.size)
    d, lo, hi, pval = paired_bootstrap_diff(y, p, noise, g, n_boot=300, seed=3)
    assert d == pytest.approx(M.auroc(y, p) - M.auroc(y, noise))
    assert 0 < lo < d < hi and pval < 0.01
    assert tuple(paired_bootstrap_diff(y, p, noise, g, n_boot=300, seed=3)) == (d, lo, hi, pval)
    same = paired_bootstrap_diff(y, p, p, g, n_boot=100, seed=3)
    assert tuple(same) == (0.0, 0.0, 0.0, 1.0)


def test_optimism_corrected_bootstrap_removes_overfitting():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(10)
    n_persons, rows = 100, 2
    X = rng.normal(size=(n_persons * rows, 20))  # pure noise: true AUROC 0.5
    y = rng.integers(0, 2, n_persons * rows)
    groups = np.repeat(np.arange(n_persons), rows)
    calls = []

    def fit_predict(train_idx, eval_idx_list):
        ids, counts = np.unique(groups[train_idx], return_counts=True)
        calls.append(np.all(counts % rows == 0))
        model = LogisticRegression(C=1e4, max_iter=2000).fit(X[train_idx], y[train_idx])
        return [model.predict_proba(X[idx])[:, 1] for idx in eval_idx_list]

    out = optimism_corrected_bootstrap(
        fit_predict, y, groups, {"auroc": M.auroc}, n_boot=25, seed=0
    )
    apparent, optimism, corrected = out["auroc"]
    assert all(calls) and len(calls) == 26
    assert apparent > 0.6 and optimism > 0.07
    assert corrected == pytest.approx(apparent - optimism)
    assert abs(corrected - 0.5) < 0.12


def test_metrics_module_reexports():
    assert M.bootstrap_ci is bootstrap_ci and M.net_benefit is net_benefit
    with pytest.raises(AttributeError):
        _ = M.no_such_metric


def test_optimism_bootstrap_slices_and_given_apparent_predictions():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(11)
    X = rng.normal(size=(160, 5))
    y = (rng.random(160) < 1 / (1 + np.exp(-X[:, 0]))).astype(int)
    groups = np.repeat(np.arange(80), 2)
    fits = []

    def fit_predict(train_idx, eval_idx_list):
        fits.append(len(train_idx))
        model = LogisticRegression().fit(X[train_idx], y[train_idx])
        return [model.predict_proba(X[idx])[:, 1] for idx in eval_idx_list]

    fns = {"auroc": M.auroc, "brier": M.brier}
    plain = optimism_corrected_bootstrap(fit_predict, y, groups, fns, n_boot=10, seed=3)
    assert len(fits) == 11  # apparent fit + one per replicate
    p_all = LogisticRegression().fit(X, y).predict_proba(X)[:, 1]
    half = np.arange(160) < 80
    sliced = optimism_corrected_bootstrap(
        fit_predict, y, groups, fns, n_boot=10, seed=3,
        slices={"all": np.ones(160, dtype=bool), "first_half": half}, p_apparent=p_all,
    )  # fmt: skip
    assert len(fits) == 21  # no apparent fit when its predictions are given
    for name in fns:
        assert tuple(sliced["all"][name]) == pytest.approx(tuple(plain[name]))
    assert sliced["first_half"]["auroc"][0] == pytest.approx(M.auroc(y[half], p_all[half]))
