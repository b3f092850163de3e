"""IPCW metrics for censored, competing-risk outcomes against hand-computed values and the
reference implementations (scikit-survival, scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sksurv.nonparametric import cumulative_incidence_competing_risks, kaplan_meier_estimator

from crs_ml.errors import InputError
from crs_ml.evaluation.censored import (
    CENSORED_METRICS,
    aalen_johansen,
    calibration_by_risk_group,
    censored_metrics,
    cumulative_incidence,
    incidence_curves_by_band,
    ipcw_weights,
    observed_expected,
    reverse_kaplan_meier,
    time_dependent_auroc,
    time_dependent_brier,
    weighted_auroc,
)
from crs_ml.evaluation.metrics import auroc, brier

# six patients, horizon t = 10 h:
#   A grade 3 at 2, B censored at 4, C dies at 6 (competing), D grade 3 at 8,
#   E followed to 12 and F to 15 without either (event-free at 10)
TIME = np.array([2.0, 4.0, 6.0, 8.0, 12.0, 15.0])
CAUSE = np.array([1, 0, 2, 1, 0, 0])
RISK = np.array([0.9, 0.8, 0.3, 0.4, 0.5, 0.2])
T = 10.0


def test_weights_by_hand():
    # reverse Kaplan-Meier: censorings at 4 (5 at risk), 12 (2), 15 (1): G = 0.8, 0.4, 0
    # A: 1/G(2-) = 1; B: censored before t, 0; C, D: 1/G(6-), 1/G(8-) = 1.25;
    # E, F: event-free, 1/G(10-) = 1.25
    np.testing.assert_allclose(ipcw_weights(TIME, CAUSE, T), [1, 0, 1.25, 1.25, 1.25, 1.25])
    times, g = reverse_kaplan_meier(TIME, CAUSE)
    np.testing.assert_allclose(g[np.isin(times, [4.0, 12.0, 15.0])], [0.8, 0.4, 0.0])


def test_weights_at_tied_times_by_hand():
    # P censored at 3; Q grade 3 and R censored at 5 (tie); S followed exactly to t = 10 and
    # U dies at 10; V followed to 20. Reverse KM (events before censoring at a tie):
    # G(3) = 5/6, G(5) = 5/6 * 3/4 = 5/8 (Q leaves first), G(10) = 5/8 * 1/2 = 5/16.
    # Q: 1/G(5-) = 1.2; S: follow-up ending at t is followed through, 1/G(10-) = 1.6;
    # U: 1/G(10-) = 1.6; V: 1.6; P, R: censored before t, 0
    time = np.array([3.0, 5.0, 5.0, 10.0, 10.0, 20.0])
    cause = np.array([0, 1, 0, 0, 2, 0])
    np.testing.assert_allclose(ipcw_weights(time, cause, 10.0), [0, 1.2, 0, 1.6, 1.6, 1.6])
    risk = np.array([0.1, 0.6, 0.9, 0.7, 0.2, 0.5])
    # (1.2 * 0.4^2 + 1.6 * (0.7^2 + 0.2^2 + 0.5^2)) / 6 = 1.44 / 6
    assert time_dependent_brier(time, cause, risk, 10.0) == pytest.approx(0.24)


def test_auroc_brier_by_hand():
    # cases A (0.9, w 1), D (0.4, w 1.25); controls C (0.3), E (0.5), F (0.2), w 1.25 each.
    # concordant weight: A beats all 3 -> 3.75; D beats C and F -> 1.25 * 2.5 = 3.125;
    # AUROC = 6.875 / (2.25 * 3.75) = 22/27. The competing death C is a control.
    assert time_dependent_auroc(TIME, CAUSE, RISK, T) == pytest.approx(22 / 27)
    # Brier: (0.1^2 + 1.25 (0.3^2 + 0.6^2 + 0.5^2 + 0.2^2)) / 6 = 0.935 / 6
    assert time_dependent_brier(TIME, CAUSE, RISK, T) == pytest.approx(0.935 / 6)


def test_aalen_johansen_and_calibration_by_hand():
    # all 6: grade 3 at 2 (6 at risk) 1/6; death at 6 (4 at risk) S = 5/6 * 3/4;
    # grade 3 at 8 (3 at risk) 5/8 * 1/3: CIF(10) = 1/6 + 5/24 = 3/8
    assert aalen_johansen(TIME, CAUSE, T) == pytest.approx(3 / 8)
    obs, exp, oe = observed_expected(TIME, CAUSE, RISK, T, n_groups=1)
    assert (obs, exp, oe) == pytest.approx((3 / 8, 3.1 / 6, (3 / 8) / (3.1 / 6)))
    # two risk groups: {F, C, D}: death at 6 (3 at risk), grade 3 at 8 (2): 2/3 * 1/2 = 1/3;
    # {B, E, A}: grade 3 at 2 (3 at risk): 1/3. Observed = (3 * 1/3 + 3 * 1/3) / 6 = 1/3
    table = calibration_by_risk_group(TIME, CAUSE, RISK, T, n_groups=2)
    assert table["observed"].tolist() == pytest.approx([1 / 3, 1 / 3])
    assert table["expected"].tolist() == pytest.approx([0.3, 2.2 / 3])
    assert table["n_events"].tolist() == [1, 1] and table["n_censored"].tolist() == [0, 1]
    assert observed_expected(TIME, CAUSE, RISK, T, n_groups=2)[0] == pytest.approx(1 / 3)


def _random(n=400, seed=0, censor=True):
    rng = np.random.default_rng(seed)
    time = np.round(rng.uniform(0, 100, n))  # many ties
    cause = rng.choice([1, 2, 0] if censor else [1, 2], n)
    risk = np.round(rng.uniform(size=n), 2)
    return time, cause, risk


def test_no_censoring_equals_plain_metrics_with_deaths_as_non_events():
    time, cause, risk = _random(censor=False)
    time = np.where(rng_free := time > 60, 100.0, time)  # followed to 100 h
    cause = np.where(rng_free, 0, cause)
    for t in (20.0, 50.0):
        y = ((cause == 1) & (time <= t)).astype(int)  # competing deaths are non-events
        assert ipcw_weights(time, cause, t).tolist() == [1.0] * len(time)
        assert time_dependent_auroc(time, cause, risk, t) == pytest.approx(auroc(y, risk))
        assert time_dependent_brier(time, cause, risk, t) == pytest.approx(brier(y, risk))
        assert aalen_johansen(time, cause, t) == pytest.approx(y.mean())


def test_matches_scikit_survival_and_scikit_learn():
    time, cause, risk = _random(seed=1)
    times, g = reverse_kaplan_meier(time, cause)
    ref_t, ref_g = kaplan_meier_estimator(cause != 0, time, reverse=True)
    np.testing.assert_allclose(times, ref_t)
    np.testing.assert_allclose(g, ref_g)
    ref_t, cif = cumulative_incidence_competing_risks(cause, time)
    grid = np.r_[-1.0, ref_t, ref_t + 0.5]
    ref = np.r_[0.0, cif[1], cif[1]]
    np.testing.assert_allclose(cumulative_incidence(time, cause, grid), ref)
    for t in (5.0, 33.5, 80.0):
        i = np.searchsorted(ref_t, t, side="right") - 1
        assert aalen_johansen(time, cause, t) == pytest.approx(cif[1, i])
        w = ipcw_weights(time, cause, t)
        case = (cause == 1) & (time <= t)
        m = w > 0
        ref = roc_auc_score(case[m], risk[m], sample_weight=w[m])
        assert weighted_auroc(case, risk, w) == pytest.approx(ref)


def test_strata_weights_are_the_weights_of_each_stratum():
    time, cause, risk = _random(seed=2)
    site = np.where(np.arange(len(time)) % 3 == 0, "north", "south")
    w = ipcw_weights(time, cause, 40.0, strata=site)
    for s in ("north", "south"):
        m = site == s
        np.testing.assert_allclose(w[m], ipcw_weights(time[m], cause[m], 40.0))
    assert not np.allclose(w, ipcw_weights(time, cause, 40.0))


def test_bootstrap_intervals_by_person():
    time, cause, risk = _random(n=300, seed=3)
    persons = np.arange(300) // 2  # two rows per person
    a = censored_metrics(time, cause, risk, 50.0, persons, n_boot=100, seed=1)
    b = censored_metrics(time, cause, risk, 50.0, persons, n_boot=100, seed=1)
    assert a == b  # deterministic
    for k in CENSORED_METRICS:
        est, lo, hi = a[k]
        assert lo <= est <= hi and lo < hi, k
        assert a[k].n_used == 100
    assert a["n"] == 300 and a["n_events"] == int(((cause == 1) & (time <= 50)).sum())
    none = censored_metrics(time, cause, risk, 50.0, persons, n_boot=0)
    assert np.isnan(none["auroc"][1])


def test_bad_input_is_named():
    with pytest.raises(InputError, match="cause must be"):
        ipcw_weights([1.0, 2.0], [1, 3], 5.0)
    with pytest.raises(InputError, match="missing or infinite"):
        ipcw_weights([1.0, np.nan], [1, 0], 5.0)
    with pytest.raises(InputError, match="one label per row"):
        ipcw_weights([1.0, 2.0], [1, 0], 5.0, strata=["a"])
    # everyone censored before the horizon: nobody carries weight, AUROC undefined
    assert ipcw_weights([1.0, 2.0, 3.0], [0, 0, 0], 5.0).tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(time_dependent_auroc([1.0, 2.0, 3.0], [0, 0, 0], [0.1, 0.2, 0.3], 5.0))


def test_incidence_curves_by_band():
    time, cause, risk = _random(seed=4)
    bands = {"low": (0.0, 0.3), "high": (0.3, 1.1), "none": (2.0, 3.0)}
    curves = incidence_curves_by_band(time, cause, risk, bands, [0.0, 50.0, 100.0])
    assert set(curves) == {"low", "high"}  # a band without rows is left out
    for name, (lo, hi) in bands.items():
        if name in curves:
            m = (risk >= lo) & (risk < hi)
            c = curves[name]
            assert c["n"] == m.sum() and c["cumulative_incidence"][0] == 0.0
            assert c["cumulative_incidence"][1] == pytest.approx(
                aalen_johansen(time[m], cause[m], 50)
            )
            assert np.all(np.diff(c["cumulative_incidence"]) >= 0)


def test_too_few_events_get_no_interval():
    time, cause, risk = _random(n=300, seed=3)
    persons = np.arange(300)
    some = censored_metrics(time, cause, risk, 50.0, persons, n_boot=50, seed=1)
    assert not some["too_few_events"] and some["n_events"] >= 10
    # keep 9 events: every interval is left out, the estimates stay
    event_rows = np.flatnonzero((cause == 1) & (time <= 50))
    cause9 = cause.copy()
    cause9[event_rows[9:]] = 0
    few = censored_metrics(time, cause9, risk, 50.0, persons, n_boot=50, seed=1)
    assert few["too_few_events"] and few["n_events"] == 9
    for k in CENSORED_METRICS:
        est, lo, hi = few[k]
        assert np.isfinite(est) and np.isnan(lo) and np.isnan(hi), k
