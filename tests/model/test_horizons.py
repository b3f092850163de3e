"""Short horizons (issue 18): risk of grade >= 3 CRS in the next 24 h and 72 h beside day 14,
one model per window with censoring weights, monotone in the horizon, additive per horizon."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from shared_cohorts import outcome_cohort

from crs_ml.cohort import Cohort
from crs_ml.config import FeatureConfig, load_config
from crs_ml.errors import ModelError
from crs_ml.modeling.explain import Explanation
from crs_ml.modeling.horizons import (
    horizon_data,
    horizons_of,
    monotone,
    training_weights,
)
from crs_ml.scoring.score import FIXED_COLUMNS, horizon_column_names, score

H = 336.0
#: the xgboost pipeline (the default before issue 15): its windows take censoring weights
XGBOOST_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "xgboost.yaml"
OVERRIDES = [
    "cv.folds=2",
    "cv.repeats=1",
    "cv.bootstrap=0",
    "task.landmarks_h=[12, 24, 36, 48]",
    "model.n_estimators=40",
    "model.early_stopping_rounds=null",
    "model.max_depth=2",
    "model.learning_rate=0.1",
    "model.n_jobs=1",
]
N_TRAIN, SEED = 300, 31
#: (day-14 cap, capped window risks) of each CV repeat, as training scored them
CAPPED: list = []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import crs_ml.modeling.train as training
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.modeling.train import train_model
    from crs_ml.simulate.simulator import horizon_truth, simulate_cohort, write_cohort

    root = tmp_path_factory.mktemp("horizons")
    write_cohort(simulate_cohort(N_TRAIN, SEED), root / "train")
    truth = horizon_truth(N_TRAIN, SEED, [12, 24, 36, 48], [24, 72])
    real = training.capped_risks

    def spy(longest, shorter):  # records what the training metrics of the windows score
        out = real(longest, shorter)
        CAPPED.append((np.array(longest), [np.array(r) for r in out]))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "capped_risks", spy)
        result = train_model(load_cohort(root / "train"), load_config(XGBOOST_CONFIG, OVERRIDES),
                             horizon_truth=truth)  # fmt: skip
    folder = result.save(root / "bundle")
    write_cohort(simulate_cohort(40, 977), root / "new")
    return result, load_bundle(folder), folder, load_cohort(root / "new")


def test_training_caps_the_windows_out_of_fold_risks_on_every_row_at_risk(trained):
    """As scoring caps them: by the day-14 model's out-of-fold risk of the same row, also
    for rows outside the complete cases (censored before day 14, lost after an event)."""
    result = trained[0]
    day14 = result.at_risk_oof[0]
    assert CAPPED and np.isfinite(day14).all()
    longest, windows = CAPPED[0]
    np.testing.assert_array_equal(longest, day14)
    for risk in windows:
        assert (risk <= day14 + 1e-12).all()


def test_training_reports_auroc_and_oracle_ratio_per_horizon(trained):
    result, bundle, _, _ = trained
    m = result.metrics
    assert m["horizon_models"] == 2.0 and m["horizon_weighted"] == 1.0
    aurocs = []
    for tag in ("next24h", "next72h"):
        for L in ("L24", "L48"):
            auroc, ratio = m[f"auroc_{tag}_{L}"], m[f"oracle_ratio_{tag}_{L}"]
            assert 0.0 <= auroc <= 1.0, (tag, L, auroc)
            aurocs.append(auroc)
            assert ratio == pytest.approx(auroc / m[f"oracle_auroc_{tag}_{L}"])
            assert 0.0 <= m[f"brier_{tag}_{L}"] < 0.25
            assert m[f"events_{tag}_{L}"] >= 1
    assert np.mean(aurocs) > 0.6  # few events per window at 300 patients: noisy one by one
    # more events within 72 h than within 24 h of the same landmark
    assert m["events_next72h_L24"] > m["events_next24h_L24"]
    assert [h.column for h, _ in bundle.horizons] == ["risk_24h", "risk_72h"]


def test_training_reports_the_day14_ipcw_metrics_with_their_oracle_ratio(trained):
    """The day-14 IPCW AUROC on everyone at risk, and the oracle's on the same rows and
    weights from the per-horizon truth (truth.csv lacks the censored)."""
    m = trained[0].metrics
    for L in ("L24", "L48"):
        auroc, oracle = m[f"auroc_ipcw_{L}"], m[f"oracle_auroc_ipcw_{L}"]
        assert 0.5 < auroc < oracle <= 1.0
        assert m[f"oracle_ratio_ipcw_{L}"] == pytest.approx(auroc / oracle)
        assert m[f"n_ipcw_{L}"] >= m[f"n_{L}"]


@pytest.mark.parametrize("as_of_hours", [20, 40, 60])
def test_monotone_in_horizon_and_additive_per_horizon(trained, as_of_hours):
    _, bundle, _, new = trained
    out = score(bundle, new, as_of_hours=as_of_hours)
    scored = out[out["status"] == "scored"]
    assert len(scored) >= 20
    assert (scored["risk_24h"] <= scored["risk_72h"]).all()
    assert (scored["risk_72h"] <= scored["risk"]).all()
    assert scored["risk_24h"].nunique() > 5
    for x in ("24h", "72h"):
        cols = [f"shap{x}_{n}" for n in bundle.feature_names]
        total = scored[f"base_value_{x}"] + scored[cols].sum(axis=1)
        np.testing.assert_allclose(total, logit(scored[f"risk_{x}"]), atol=1e-6)
        assert scored[f"top_drivers_{x}"].str.len().gt(0).all()
    unscored = out[out["status"] != "scored"]
    assert unscored[["risk_24h", "risk_72h"]].isna().all().all()


def _explanation(logit_values, base, contrib):
    contrib = np.asarray(contrib, dtype=float)
    base = np.asarray(base, dtype=float)
    return Explanation(contrib, base, base + contrib.sum(axis=1))


def test_a_window_above_the_longer_horizon_takes_its_value_and_explanation():
    day14 = _explanation(None, [-1.0, -2.0], [[0.5, 0.0], [0.2, 0.1]])  # logits -0.5, -1.7
    h72 = _explanation(None, [-1.5, -1.0], [[0.1, 0.1], [0.0, 0.5]])  # -1.3 (ok), -0.5 (over)
    h24 = _explanation(None, [0.0, -3.0], [[0.0, 0.0], [0.1, 0.1]])  # 0.0 (over), -2.8 (ok)
    c72, c24 = monotone(day14, [h72, h24])
    np.testing.assert_allclose(c72.logit, [-1.3, -1.7])
    np.testing.assert_allclose(c24.logit, [-1.3, -2.8])
    np.testing.assert_allclose(c72.contributions[1], day14.contributions[1])
    np.testing.assert_allclose(c24.contributions[0], h72.contributions[0])
    for ex in (c72, c24):  # additive after capping
        np.testing.assert_allclose(ex.base_value + ex.contributions.sum(axis=1), ex.logit)
    assert (c24.logit <= c72.logit).all() and (c72.logit <= day14.logit).all()


def test_a_window_without_a_risk_does_not_lift_the_cap_of_the_shorter_ones():
    from crs_ml.modeling.horizons import capped_risks

    day14 = _explanation(None, [-2.0, -1.0], [[0.0, 0.0], [0.0, 0.0]])
    h72 = _explanation(None, [np.nan, -1.5], [[np.nan, np.nan], [0.0, 0.0]])  # no 72 h risk
    h24 = _explanation(None, [0.0, -3.0], [[0.5, 0.0], [0.0, 0.0]])  # 0.5 > day 14's -2.0
    c72, c24 = monotone(day14, [h72, h24])
    np.testing.assert_allclose(c24.logit, [-2.0, -3.0])  # capped by day 14 through the gap
    np.testing.assert_allclose(c24.contributions[0], day14.contributions[0])
    assert np.isnan(c72.logit[0])
    r72, r24 = capped_risks([0.2, 0.2], [[np.nan, 0.5], [0.9, 0.1]])
    np.testing.assert_allclose(r24, [0.2, 0.1])
    np.testing.assert_allclose(r72[1], 0.2)


def test_post_landmark_data_change_no_horizons_risk(trained):
    _, bundle, _, new = trained
    before = score(bundle, new, as_of_hours=40)
    obs = new.observations.copy()
    late = obs["hours"] > 36  # the landmark of as_of 40 is 36 h
    assert late.any()
    obs.loc[late, "value"] = obs.loc[late, "value"] * 3 + 1
    ev = new.events.copy()
    ev.loc[ev["hours"] > 36, "hours"] = 36.5
    after = score(bundle, Cohort(new.patients, obs, ev, rejected=new.rejected), as_of_hours=40)
    # events moved to 36.5 h can make a patient grade >= 3 (or dead) by the as-of time: no
    # longer at risk, by design; every other row keeps its risks exactly
    moved = (before["status"] != after["status"]).to_numpy()
    assert (after.loc[moved, "status"] == "not_at_risk").all()
    assert after.loc[moved, "message"].str.contains("after the 36 h landmark").all()
    assert (~moved).sum() >= len(before) - 5
    cols = ["risk", "risk_24h", "risk_72h", *[f"shap24h_{n}" for n in bundle.feature_names]]
    pd.testing.assert_frame_equal(before.loc[~moved, cols], after.loc[~moved, cols])


def test_a_model_without_horizons_scores_as_before(trained, tmp_path):
    from crs_ml.modeling.bundle import MANIFEST, load_bundle

    _, bundle, folder, new = trained
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    manifest = json.loads((old / MANIFEST).read_text())
    for h in manifest.pop("horizons"):
        shutil.rmtree(old / h["folder"])
        manifest["files_sha256"].pop(f"{h['folder']}/bundle.json")
    (old / MANIFEST).write_text(json.dumps(manifest))
    old_bundle = load_bundle(old)
    assert old_bundle.horizons == []
    got = score(old_bundle, new, as_of_hours=40)
    names = bundle.feature_names
    assert list(got.columns) == [*FIXED_COLUMNS, *[f"shap_{n}" for n in names], "message"]
    full = score(bundle, new, as_of_hours=40)
    pd.testing.assert_frame_equal(got, full[list(got.columns)])
    assert horizon_column_names([], names) == []


def test_a_changed_horizon_model_is_refused(trained, tmp_path):
    from crs_ml.modeling.bundle import load_bundle

    _, _, folder, _ = trained
    copy = tmp_path / "changed"
    shutil.copytree(folder, copy)
    sub = copy / "horizon_24h" / "bundle.json"
    sub.write_text(sub.read_text().replace('"horizon"', '"horizon" ', 1))
    with pytest.raises(ModelError, match="horizon_24h/bundle.json"):
        load_bundle(copy)


# --------------------------------------------------------------------------- labels, weights
#: at landmark 24 with the 24 h window (end 48 h): (grade3_hours, death_hours, followup_hours)
PATIENTS = {
    "dies": (np.nan, 30.0, np.nan),  # death before grade >= 3: competing, a non-event
    "dies_fu": (np.nan, 30.0, 30.0),  # the same with follow-up ending at the death
    "lost": (np.nan, np.nan, 30.0),  # follow-up ended alive before 48 h: censored
    "event": (40.0, np.nan, np.nan),  # grade >= 3 at 40 h
    "quiet": (np.nan, np.nan, np.nan),  # followed through, event-free
}


def _cohort() -> Cohort:
    return outcome_cohort(PATIENTS, 5.0)


def test_competing_deaths_are_non_events_and_the_censored_get_no_weight():
    hz = horizons_of([24], H)
    data = horizon_data(_cohort(), hz, [24], H, FeatureConfig())
    ids = list(data.meta["patient_id"])
    assert ids == list(PATIENTS)  # everyone at risk at 24 h, the censored included
    col = hz[0].column
    y = dict(zip(ids, data.y[col], strict=True))
    censored = dict(zip(ids, data.censored[col], strict=True))
    assert y == {"dies": 0, "dies_fu": 0, "lost": 0, "event": 1, "quiet": 0}
    assert censored == {"dies": False, "dies_fu": False, "lost": True, "event": False,
                        "quiet": False}  # fmt: skip
    w = dict(zip(ids, training_weights(data.meta, data.end_h[col], "none"), strict=True))
    # reverse Kaplan-Meier at 24 h: at 30 h 5 at risk, 2 deaths, 1 censored (events first):
    # G(30) = 1 - 1/3 = 2/3. Deaths at 30 h: 1/G(30-) = 1; grade 3 at 40 h: 1/G(40-) = 3/2;
    # event-free through 48 h: 1/G(48-) = 3/2; censored: 0. Scaled to mean 1: / 1.25
    assert w == pytest.approx({"dies": 0.8, "dies_fu": 0.8, "lost": 0.0, "event": 1.2,
                               "quiet": 1.2})  # fmt: skip


def test_xgboost_row_weights_are_used():
    from crs_ml.modeling.estimators import XGBRiskModel

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (rng.random(400) < 1 / (1 + np.exp(-2 * X["a"]))).astype(int)
    kw = dict(n_estimators=30, early_stopping_rounds=None, inner_folds=2, n_jobs=1)
    plain = XGBRiskModel(**kw).fit(X, y).predict_proba(X)[:, 1]
    ones = XGBRiskModel(**kw).fit(X, y, row_weights=np.ones(400)).predict_proba(X)[:, 1]
    np.testing.assert_allclose(plain, ones, rtol=1e-6)
    w = np.where(y == 1, 4.0, 1.0)
    heavy = XGBRiskModel(**kw).fit(X, y, row_weights=w).predict_proba(X)[:, 1]
    assert heavy.mean() > plain.mean() + 0.05  # events weighted up: higher risks


def test_a_horizon_entry_naming_another_folder_is_refused(trained, tmp_path):
    from crs_ml.modeling.bundle import MANIFEST, load_bundle

    _, _, folder, _ = trained
    copy = tmp_path / "moved"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["horizons"][0]["folder"] = "../elsewhere"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="horizons entry .* differs from the one its window"):
        load_bundle(copy)
    manifest["horizons"][0] = {"window": 24}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="is not a short horizon"):
        load_bundle(copy)


def test_a_capped_window_quotes_the_inputs_of_the_explanation_it_took(trained):
    """Where a window takes a longer horizon's explanation, its driver text is that
    horizon's (the same SHAP values on the same filled inputs), not one built from its own
    filled inputs."""
    _, bundle, _, new = trained
    taken = 0
    for as_of in (24, 36, 48):
        out = score(bundle, new, as_of_hours=as_of)
        s = out[out["status"] == "scored"]
        by_14 = np.isclose(s["risk_72h"], s["risk"], rtol=0, atol=0)
        by_72 = ~by_14 & np.isclose(s["risk_24h"], s["risk_72h"], rtol=0, atol=0)
        for took, longer in ((by_14, ""), (by_72, "_72h")):
            rows = s[took]
            taken += len(rows)
            assert (rows["top_drivers_72h" if longer == "" else "top_drivers_24h"]
                    == rows[f"top_drivers{longer}"]).all()  # fmt: skip
    assert taken > 0  # the check is not vacuous: some windows were capped
