"""Site recalibration: only the calibration map moves, and it fixes held-out calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logit
from shared_bundle import build_bundle, build_stack_bundle

from crs_ml.evaluation.recalibration import fit_recalibration, recalibrate_cohort, split_persons
from crs_ml.modeling.bundle import write_recalibrated_bundle


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def site_cohort(tmp_path_factory):
    """The same population as training (so the bundle itself is roughly calibrated)."""
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.params import default_params, with_sites
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp("site_cohort")
    params = with_sites(default_params(), A=0.4, B=0.3, C=0.3)
    write_cohort(simulate_cohort(500, seed=202, params=params), out)
    return load_cohort(out)


def _contribs(bundle, X) -> np.ndarray:
    import xgboost as xgb

    dm = xgb.DMatrix(bundle.matrix(X), missing=np.nan, feature_names=bundle.feature_names)
    return bundle.booster.predict(dm, pred_contribs=True)


def test_recalibration_fixes_held_out_intercept(bundle_dir, site_cohort, tmp_path):
    from crs_ml.evaluation.validate import model_settings
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.modeling.bundle import load_bundle

    original = load_bundle(bundle_dir)
    shifted_dir = write_recalibrated_bundle(
        bundle_dir,
        tmp_path / "shifted",
        original.platt_slope,
        original.platt_intercept + 1.0,
        {"method": "deliberate_shift"},
    )
    shifted = load_bundle(shifted_dir)
    result = recalibrate_cohort(shifted, site_cohort, "auto", holdout=0.5, seed=0, n_boot=200)
    held = result.evaluation["all"]
    before = held["before"]["calibration_intercept_ci"]
    after = held["after"]["calibration_intercept_ci"]
    assert before[1] < 0, f"the +1.0 shift should show as over-prediction, got {before}"
    assert after[0] <= 0 <= after[1], f"held-out intercept CI after recalibration: {after}"
    assert result.fit.method in ("intercept", "logistic")
    summary = result.summary
    assert (summary["fit"]["n_persons"] + summary["holdout"]["n_persons"]
            + summary["censoring"]["persons_censored_only"]) == summary["n_persons"]  # fmt: skip

    new_dir = write_recalibrated_bundle(
        shifted_dir, tmp_path / "recal", result.fit.slope, result.fit.intercept, {"method": "x"}
    )
    new = load_bundle(new_dir)  # hashes rewritten: loads without a tampering error
    s = model_settings(original)
    X, _, _ = build_landmark_dataset(site_cohort, s["landmarks_h"], s["horizon_h"], s["features"])
    X = X.iloc[:400]
    assert (new_dir / "booster.ubj").read_bytes() == (bundle_dir / "booster.ubj").read_bytes()
    np.testing.assert_array_equal(new.predict_margin(X), original.predict_margin(X))
    np.testing.assert_array_equal(_contribs(new, X), _contribs(original, X))
    assert not np.allclose(new.predict_risk(X), shifted.predict_risk(X))
    # the short horizons keep their training calibration, and the summary says so
    assert [h.label for h, _ in new.horizons] == summary["short_horizons"]["horizons"]
    assert summary["short_horizons"]["recalibrated"] is False
    assert any("keep their training calibration" in w for w in summary["warnings"])
    for (_, hb_new), (_, hb_old) in zip(new.horizons, original.horizons, strict=True):
        np.testing.assert_array_equal(hb_new.predict_risk(X), hb_old.predict_risk(X))
    manifest = json.loads((new_dir / "bundle.json").read_text())
    assert manifest["calibration"]["previous"]["intercept"] == pytest.approx(
        original.platt_intercept + 1.0
    )


def _synthetic(n: int, a: float, b: float, seed: int):
    rng = np.random.default_rng(seed)
    margin = rng.normal(-2.0, 1.5, n)
    y = (rng.random(n) < expit(a + b * margin)).astype(int)
    return margin, y, np.arange(n)


@pytest.mark.parametrize(
    "a,b,expected", [(0.0, 1.0, "none"), (1.0, 1.0, "intercept"), (0.0, 0.4, "logistic")]
)
def test_closed_test_picks_the_needed_update(a, b, expected):
    margin, y, groups = _synthetic(3000, a, b, seed=4)
    fit = fit_recalibration(margin, y, groups, slope=1.0, intercept=0.0, method="auto")
    assert fit.method == expected
    if expected == "intercept":
        assert fit.slope == 1.0 and fit.intercept == pytest.approx(1.0, abs=0.2)
    if expected == "logistic":
        assert fit.slope == pytest.approx(0.4, abs=0.1)


def test_few_events_never_update_the_slope():
    margin, y, groups = _synthetic(400, -3.0, 0.4, seed=5)
    assert 0 < y.sum() < 20
    fit = fit_recalibration(margin, y, groups, slope=1.0, intercept=0.0, method="auto")
    assert fit.method in ("none", "intercept")
    assert fit.tests["logistic_vs_original"] is None


def test_design_effect_deflates_repeated_rows():
    margin, y, _ = _synthetic(300, 0.5, 1.0, seed=6)
    rows = fit_recalibration(margin, y, np.arange(300), 1.0, 0.0, method="intercept")
    repeated = fit_recalibration(
        np.repeat(margin, 5), np.repeat(y, 5), np.repeat(np.arange(300), 5), 1.0, 0.0, "intercept"
    )
    stat = lambda f: f.tests["intercept_vs_original"]["statistic"]  # noqa: E731
    assert stat(repeated) == pytest.approx(stat(rows), rel=1e-6)
    assert repeated.intercept == pytest.approx(rows.intercept, abs=1e-8)


def test_split_keeps_persons_whole_and_event_rate():
    persons = np.repeat(np.arange(200), 3)
    y = np.repeat((np.arange(200) % 5 == 0).astype(int), 3)
    held = split_persons(persons, y, 0.5, seed=1)
    for p in np.unique(persons):
        assert len(set(held[persons == p])) == 1
    assert held.mean() == pytest.approx(0.5, abs=0.01)
    assert y[held].mean() == pytest.approx(y.mean(), abs=0.01)
    np.testing.assert_array_equal(held, split_persons(persons, y, 0.5, seed=1))


# --------------------------------------------------------------------------- the stack
@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory) -> Path:
    return build_stack_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def policy_site(tmp_path_factory) -> Path:
    """A site whose event rate differs from training: tocilizumab only at grade 3 (the
    robustness benchmark's conservative_policy world, about 23% events against 12%), so the
    same early course ends in severe CRS more often and the trained risks are too low."""
    from dataclasses import replace

    from crs_ml.simulate.params import default_params
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    params = default_params()
    params = replace(params, sites=tuple(
        replace(s, toci_fever_per_h=0.0, toci_grade2_per_h=0.0, steroid_grade2_per_h=0.0,
                steroid_at_grade3=False)
        for s in params.sites
    ))  # fmt: skip
    out = tmp_path_factory.mktemp("policy_site")
    write_cohort(simulate_cohort(600, seed=204, params=params), out)
    return out


def test_recalibrating_a_stack_refits_the_blend_map_and_keeps_exact_shap(
    stack_dir, policy_site, tmp_path
):
    """Issue 15: the map a site refits for a stack is the Platt map of its blend
    ``sum_m w_m logit_m``; the members and weights stay, held-out calibration improves, and
    ``base + sum(shap) = logit(risk)`` still holds after the update."""
    from crs_ml.evaluation.validate import model_settings
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.modeling.explain import explain
    from crs_ml.modeling.stack import STACK_FILE

    original = load_bundle(stack_dir)
    assert original.model_type == "stack" and original.booster is None
    cohort = load_cohort(policy_site)
    result = recalibrate_cohort(original, cohort, "auto", holdout=0.5, seed=0, n_boot=200)
    held = result.evaluation["all"]
    before, after = held["before"], held["after"]
    assert before["calibration_intercept_ci"][0] > 0, f"should under-predict: {before}"
    lo, hi = after["calibration_intercept_ci"]
    assert lo <= 0 <= hi, f"held-out intercept CI after recalibration: {(lo, hi)}"
    assert abs(after["calibration_intercept"]) < abs(before["calibration_intercept"])
    assert result.fit.method in ("intercept", "logistic")
    assert result.summary["margin"] == "the stack's blend of its members' calibrated log-odds"
    fit = result.fit

    new_dir = write_recalibrated_bundle(
        stack_dir, tmp_path / "recal", fit.slope, fit.intercept, {"method": fit.method}
    )
    members = sorted(p.name for p in stack_dir.glob("member_*.ubj"))
    assert members  # the xgboost member's booster, copied byte for byte
    for name in members:
        assert (new_dir / name).read_bytes() == (stack_dir / name).read_bytes()
    old_state = json.loads((stack_dir / STACK_FILE).read_text())
    new_state = json.loads((new_dir / STACK_FILE).read_text())
    assert new_state["weights"] == old_state["weights"]
    assert new_state["members"] == old_state["members"]
    assert (new_state["platt_slope"], new_state["platt_intercept"]) == (fit.slope, fit.intercept)
    manifest = json.loads((new_dir / "bundle.json").read_text())
    assert manifest["calibration"]["method"] == f"stack+platt+site_{fit.method}"
    assert manifest["calibration"]["previous"]["slope"] == original.platt_slope

    new = load_bundle(new_dir)  # a fresh load: hashes rewritten, the map read back
    s = model_settings(original)
    X, _, _ = build_landmark_dataset(cohort, s["landmarks_h"], s["horizon_h"], s["features"])
    X = X.iloc[:300]
    margin = original.predict_margin(X)
    np.testing.assert_array_equal(new.predict_margin(X), margin)
    np.testing.assert_allclose(
        original.predict_logit(X),
        original.platt_slope * margin + original.platt_intercept,
        atol=1e-9,
    )
    np.testing.assert_allclose(new.predict_logit(X), fit.slope * margin + fit.intercept, atol=1e-9)
    assert not np.allclose(new.predict_risk(X), original.predict_risk(X))
    ex, old_ex = explain(new, X), explain(original, X)
    np.testing.assert_allclose(
        ex.base_value + ex.contributions.sum(axis=1), logit(new.predict_risk(X)), atol=1e-6
    )
    ratio = fit.slope / original.platt_slope  # each member's contribution scales with the map
    np.testing.assert_allclose(ex.contributions, ratio * old_ex.contributions, atol=1e-9)
    # the short horizon (a stack of its own) keeps its training calibration
    assert [h.label for h, _ in new.horizons] == result.summary["short_horizons"]["horizons"]
    for (_, hb_new), (_, hb_old) in zip(new.horizons, original.horizons, strict=True):
        assert hb_new.model_type == "stack"
        np.testing.assert_array_equal(hb_new.predict_risk(X), hb_old.predict_risk(X))


def test_a_recalibrated_stack_scores_in_a_fresh_process(stack_dir, policy_site, tmp_path):
    """`crs-ml recalibrate` on a stack writes a bundle that `crs-ml score` loads in a new
    process: one row per patient, exact SHAP, the recalibrated risks."""
    import subprocess
    import sys

    import pandas as pd

    from crs_ml.cli import main
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.scoring.score import score

    out = tmp_path / "recal"
    main(["recalibrate", "--model", str(stack_dir), "--data", str(policy_site), "--out",
          str(out), "--method", "intercept", "--bootstrap", "50"])  # fmt: skip
    summary = json.loads((out / "recalibration.json").read_text())
    assert summary["method"] == "intercept"
    assert summary["calibration_after"]["intercept"] != summary["calibration_before"]["intercept"]
    assert "blend of its members" in (out / "recalibration.html").read_text()
    scores = tmp_path / "scores.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "crs_ml", "score", "--model", str(out / "bundle"), "--data",
         str(policy_site), "--as-of-hours", "24", "--out", str(scores)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    served = pd.read_parquet(scores).sort_values("patient_id").reset_index(drop=True)
    cohort = load_cohort(policy_site)
    assert len(served) == len(cohort.patients)
    scored = served["status"] == "scored"
    assert scored.sum() > 0.9 * len(served)
    shap = [c for c in served.columns if c.startswith("shap_")]
    total = served.loc[scored, "base_value"] + served.loc[scored, shap].sum(axis=1)
    np.testing.assert_allclose(total, logit(served.loc[scored, "risk"]), atol=1e-6)
    recalibrated = load_bundle(out / "bundle")
    expected = score(recalibrated, cohort, as_of_hours=24)
    expected = expected.sort_values("patient_id").reset_index(drop=True)
    np.testing.assert_allclose(served["risk"], expected["risk"], atol=1e-12)
    before = score(load_bundle(stack_dir), cohort, as_of_hours=24)
    before = before.sort_values("patient_id").reset_index(drop=True)
    shift = summary["calibration_after"]["intercept"] - summary["calibration_before"]["intercept"]
    np.testing.assert_allclose(  # intercept update: every day-14 log-odds moves by the shift
        logit(served.loc[scored, "risk"]) - logit(before.loc[scored, "risk"]), shift, atol=1e-9
    )


def test_weights_enter_the_fit_as_repeated_rows():
    from crs_ml.evaluation.recalibration import fit_recalibration

    rng = np.random.default_rng(3)
    margin = rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(0.5 + 1.3 * margin)))).astype(int)
    persons = np.arange(400).astype(str)
    w = rng.integers(0, 3, size=400).astype(float)  # 0: left out, 2: counted twice
    rows = np.repeat(np.arange(400), w.astype(int))
    weighted = fit_recalibration(margin, y, persons, 1.0, 0.0, "logistic", weights=w)
    repeated = fit_recalibration(margin[rows], y[rows], persons[rows], 1.0, 0.0, "logistic")
    assert weighted.slope == pytest.approx(repeated.slope, rel=1e-9)
    assert weighted.intercept == pytest.approx(repeated.intercept, rel=1e-9)
    assert weighted.n_persons == int((w > 0).sum())


def test_patients_lost_to_follow_up_count_through_censoring_weights(bundle_dir, site_cohort):
    """Events seen before a loss count and the censored are weighted for, not dropped: a
    complete-case map loses the events of patients lost after them and is biased when loss
    depends on risk (README, "Site recalibration")."""
    from crs_ml.cohort import Cohort
    from crs_ml.evaluation.validate import model_settings
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.modeling.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    oc = site_cohort.outcomes.copy()
    g3 = oc["grade3_hours"]
    lost_after = g3.notna() & (g3 < 60)  # lost at 100 h, after their event
    lost_before = g3.isna() & (np.arange(len(oc)) % 3 == 0)  # lost at 60 h, no event seen
    oc.loc[lost_after, "followup_hours"] = 100.0
    oc.loc[lost_before, "followup_hours"] = 60.0
    lossy = Cohort(site_cohort.patients, site_cohort.observations, site_cohort.events,
                   outcomes=oc)  # fmt: skip
    result = recalibrate_cohort(bundle, lossy, "intercept", holdout=0.0, n_boot=0)
    s = model_settings(bundle)
    _, y, meta = build_landmark_dataset(lossy, s["landmarks_h"], s["horizon_h"], s["features"])
    complete_case = meta["person_id"][np.asarray(y) == 1].nunique()
    assert result.fit.n_event_persons > complete_case
    assert result.summary["censoring"]["rows_censored"] > 0
    assert result.summary["censoring"]["persons_censored_only"] > 0
