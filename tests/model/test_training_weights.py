"""Censoring weights in training (issue 18): every learned family takes ``row_weights``, and
the day-14 model trains on everyone at risk with inverse probability of censoring weights
(``task.training_weights: ipcw``) fitted inside each training fold, or as before (``none``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from shared_cohorts import outcome_cohort

from crs_ml.cohort import Cohort
from crs_ml.config import FeatureConfig, config_from_dict
from crs_ml.modeling.additive import AdditiveRiskModel
from crs_ml.modeling.baselines import FeverRuleModel, LogisticRiskModel, MEasixModel
from crs_ml.modeling.horizons import DAY14, HorizonData, horizon_data
from crs_ml.modeling.stack import StackedRiskModel, choose_rule, fit_blend
from crs_ml.modeling.train import CensoredRows, cross_validate, person_folds

H = 336.0


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "measix_landmark": np.exp(rng.normal(size=n)),
            "temperature_max_early": rng.normal(38.5, 0.6, size=n),
        }
    )
    eta = -1.0 + 1.2 * X["a"] + 0.8 * np.log(X["measix_landmark"])
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int).to_numpy()
    groups = np.repeat(np.arange(n // 2), 2).astype(str)  # two rows per person
    return X, y, groups


def _stack(**kw):
    members = [
        ("additive", AdditiveRiskModel(spline_knots=0, C_grid=(0.1, 1.0), inner_folds=2),
         ["a", "b"]),
        ("logistic", LogisticRiskModel(), ["a", "measix_landmark"]),
    ]  # fmt: skip
    return StackedRiskModel(members=members, inner_folds=3, **kw)


FAMILIES = {
    "additive": lambda: AdditiveRiskModel(
        spline_knots=4, min_distinct_for_spline=5, C_grid=(0.03, 0.3, 3.0), inner_folds=3
    ),  # fmt: skip
    "logistic": lambda: LogisticRiskModel(C=0.5),
    "measix": lambda: MEasixModel(),
    "fever_rule": lambda: FeverRuleModel(),
    "stack": lambda: _stack(blend_rules=("nnls", "equal", "single")),
}


def _risk(make, X, y, groups, w=None):
    kw = {} if w is None else {"row_weights": w}
    return make().fit(X, y, groups=groups, **kw).predict_proba(X)[:, 1]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_weights_of_one_give_the_unweighted_model(family):
    X, y, groups = _data()
    plain = _risk(FAMILIES[family], X, y, groups)
    ones = _risk(FAMILIES[family], X, y, groups, np.ones(len(y)))
    np.testing.assert_allclose(ones, plain, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_weights_change_the_model_the_way_they_point(family):
    X, y, groups = _data()
    plain = _risk(FAMILIES[family], X, y, groups)
    heavy = _risk(FAMILIES[family], X, y, groups, np.where(y == 1, 3.0, 1.0))
    assert heavy.mean() > plain.mean() + 0.03  # events weighted up: higher risks


def test_the_additive_penalty_search_weighs_like_duplicated_rows():
    """Inner folds are dealt by person, so a row k times (same person) lands in the same fold
    as the row with weight k: the held-out log-loss per C, the C chosen and the fit agree."""
    X, y, groups = _data(seed=2)
    w = np.random.default_rng(2).integers(1, 4, size=len(y)).astype(float)
    dup = np.repeat(np.arange(len(y)), w.astype(int))

    def make():
        return AdditiveRiskModel(spline_knots=0, C_grid=(0.003, 0.03, 0.3), inner_folds=3)

    weighted = make().fit(X, y, groups=groups, row_weights=w)
    duplicated = make().fit(X.iloc[dup], y[dup], groups=groups[dup])
    plain = make().fit(X, y, groups=groups)
    assert weighted.inner_log_loss_ == pytest.approx(duplicated.inner_log_loss_, abs=1e-6)
    assert weighted.inner_log_loss_ != pytest.approx(plain.inner_log_loss_, abs=1e-4)
    assert weighted.C_ == duplicated.C_
    np.testing.assert_allclose(weighted.predict_proba(X), duplicated.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_weights_must_be_positive_one_per_row(family):
    X, y, groups = _data()
    for bad in (np.ones(len(y) - 1), np.r_[0.0, np.ones(len(y) - 1)], np.full(len(y), np.nan)):
        with pytest.raises(ValueError, match="row_weights must be one finite value > 0"):
            FAMILIES[family]().fit(X, y, groups=groups, row_weights=bad)


def test_integer_weights_equal_duplicated_rows_in_the_blend():
    rng = np.random.default_rng(3)
    M = rng.normal(size=(300, 3))
    y = (rng.random(300) < 1 / (1 + np.exp(-(M[:, 0] + 0.5 * M[:, 1])))).astype(float)
    w = rng.integers(1, 4, size=300).astype(float)
    dup = np.repeat(np.arange(300), w.astype(int))
    coef_w, b_w = fit_blend(M, y, w)
    coef_d, b_d = fit_blend(M[dup], y[dup])
    np.testing.assert_allclose(coef_w, coef_d, atol=1e-6)
    assert b_w == pytest.approx(b_d, abs=1e-6)
    # the rule choice: held-out log-loss per rule, the duplicates in the same folds
    folds = [(np.flatnonzero(np.arange(300) % 3 != k), np.flatnonzero(np.arange(300) % 3 == k))
             for k in range(3)]  # fmt: skip
    pos = np.concatenate([[0], np.cumsum(w.astype(int))])
    folds_d = [(np.concatenate([np.arange(pos[i], pos[i + 1]) for i in tr]),
                np.concatenate([np.arange(pos[i], pos[i + 1]) for i in va])) for tr, va in folds]  # fmt: skip
    names = ["m0", "m1", "m2"]
    rule_w, loss_w = choose_rule(M, y, folds, names, ("nnls", "equal", "single"), w)
    rule_d, loss_d = choose_rule(M[dup], y[dup], folds_d, names, ("nnls", "equal", "single"))
    assert rule_w == rule_d
    assert loss_w == pytest.approx(loss_d, abs=1e-6)


@pytest.mark.parametrize("family", ["additive", "logistic", "measix", "fever_rule"])
def test_integer_weights_equal_duplicated_rows_with_a_fixed_penalty(family):
    """With C fixed (no inner search) and no missing values (the unweighted medians unused),
    weight k is the row k times."""
    make = {
        "additive": lambda: AdditiveRiskModel(spline_knots=0, C_grid=(0.3,)),
        "logistic": lambda: LogisticRiskModel(C=0.3),
        "measix": lambda: MEasixModel(),
        "fever_rule": lambda: FeverRuleModel(),
    }[family]
    X, y, groups = _data(seed=5)
    w = np.random.default_rng(5).integers(1, 4, size=len(y)).astype(float)
    dup = np.repeat(np.arange(len(y)), w.astype(int))
    weighted = make().fit(X, y, groups=groups, row_weights=w)
    duplicated = make().fit(X.iloc[dup], y[dup], groups=groups[dup])
    np.testing.assert_allclose(weighted.predict_proba(X), duplicated.predict_proba(X),
                               atol=1e-6)  # fmt: skip


def test_a_weighted_stack_is_exactly_additive():
    X, y, groups = _data()
    w = np.random.default_rng(1).uniform(0.3, 3.0, size=len(y))
    model = _stack().fit(X, y, groups=groups, row_weights=w)
    contrib, base = model.explain_logit(X)
    risk = model.predict_proba(X)[:, 1]
    np.testing.assert_allclose(base + contrib.sum(axis=1), logit(risk), atol=1e-6)
    unweighted = _stack().fit(X, y, groups=groups)
    assert not np.allclose(model.coef_, unweighted.coef_)  # the weights reached the blend


def test_the_stack_passes_the_weights_to_its_members():
    from crs_ml.modeling.inner_splits import group_codes, inner_group_folds

    X, y, groups = _data()
    w = np.where(y == 1, 3.0, 1.0)
    model = _stack().fit(X, y, groups=groups, row_weights=w)

    def additive():
        return AdditiveRiskModel(spline_knots=0, C_grid=(0.1, 1.0), inner_folds=2)

    _, final, cols = model.members_[0]
    alone = additive().fit(X[cols], y, groups=groups, row_weights=w)
    np.testing.assert_allclose(final.coef_, alone.coef_)  # the final refit
    for train, valid in inner_group_folds(y, group_codes(groups, len(y)), 3, 0):  # inner folds
        fold = additive().fit(X.iloc[train][cols], y[train], groups=groups[train],
                              row_weights=w[train])  # fmt: skip
        np.testing.assert_allclose(model.inner_margins_[valid, 0],
                                   fold.decision_function(X.iloc[valid][cols]))  # fmt: skip


# --------------------------------------------------------------------------- day 14
#: at landmark 24 h (grade3_hours, death_hours, followup_hours, crp)
PATIENTS = {
    "dies": (np.nan, 30.0, np.nan, 10.0),  # death at 30 h: competing, a non-event
    "lost_after_event": (50.0, np.nan, 60.0, 80.0),  # grade 3 at 50 h, then lost at 60 h
    "lost_early": (np.nan, np.nan, 100.0, 20.0),  # lost at 100 h alive: censored
    "event_late": (200.0, np.nan, np.nan, 60.0),  # grade 3 at 200 h
    "lost_late": (np.nan, np.nan, 250.0, 30.0),  # lost at 250 h alive: censored
    "quiet": (np.nan, np.nan, np.nan, 5.0),  # followed through day 14, event-free
}


def _cohort() -> Cohort:
    return outcome_cohort(
        {k: v[:3] for k, v in PATIENTS.items()}, [v[3] for v in PATIENTS.values()]
    )


def test_day14_weights_match_a_reverse_kaplan_meier_by_hand():
    data = horizon_data(_cohort(), [], [24], H, FeatureConfig(), day14=True)
    rows = CensoredRows(data, "none")
    ids = list(data.meta["patient_id"])
    assert ids == list(PATIENTS)  # everyone at risk at 24 h, the censored included
    assert dict(zip(ids, data.y[DAY14], strict=True)) == {
        "dies": 0, "lost_after_event": 1, "lost_early": 0, "event_late": 1, "lost_late": 0,
        "quiet": 0}  # fmt: skip
    w = dict(zip(ids, rows.weights(np.arange(len(ids))), strict=True))
    # reverse Kaplan-Meier on the 6 rows (events before censoring at tied times):
    # 30 h death, 50 h grade 3 (no censoring); 100 h 1 censored of 4 at risk: G = 3/4;
    # 200 h grade 3; 250 h 1 censored of 2 at risk: G = 3/8; 336 h followed through.
    # Weights 1/G(time-) for grade 3 or death, 1/G(336-) for event-free, 0 for the censored:
    # dies 1, lost_after_event 1, event_late 4/3, quiet 8/3; mean over the 4 kept 3/2.
    expected = {"dies": 2 / 3, "lost_after_event": 2 / 3, "lost_early": 0.0,
                "event_late": 8 / 9, "lost_late": 0.0, "quiet": 16 / 9}  # fmt: skip
    assert w == pytest.approx(expected)
    assert rows.summary() == {"day14_rows_at_risk": 6.0, "day14_censored_rows": 2.0,
                              "day14_weighted_rows": 4.0}  # fmt: skip


def test_a_patient_censored_before_day14_is_not_a_training_row():
    data = horizon_data(_cohort(), [], [24], H, FeatureConfig(), day14=True)
    model = CensoredRows(data, "none").fit(lambda: LogisticRiskModel(C=1.0))
    kept = ~data.censored[DAY14]
    assert list(data.meta["patient_id"][~kept]) == ["lost_early", "lost_late"]
    hand = np.array([2 / 3, 2 / 3, 8 / 9, 16 / 9])  # the kept rows' weights above
    alone = LogisticRiskModel(C=1.0).fit(data.X[kept], data.y[DAY14][kept], row_weights=hand)
    np.testing.assert_allclose(model.predict_proba(data.X), alone.predict_proba(data.X))


def _censored_cohort(n=300, seed=4):
    """Synthetic rows at landmarks 24 h and 48 h (one patient per person) with a day-14
    outcome and loss to follow-up for a quarter of the persons (the complete-case rows are
    the others')."""
    rng = np.random.default_rng(seed)
    persons = np.array([f"p{i}" for i in range(n)], dtype=object)
    x = rng.normal(size=n)
    event_h = np.where(rng.random(n) < 1 / (1 + np.exp(-(x - 1))), rng.uniform(50, 300, n), np.inf)
    lost_h = np.where(rng.random(n) < 0.25, rng.uniform(50, 320, n), np.inf)
    time = np.fmin(np.fmin(event_h, lost_h), H)
    cause = np.where(event_h <= np.fmin(lost_h, H), 1, 0)
    rows = []
    for L in (24.0, 48.0):
        rows.append(pd.DataFrame({"patient_id": persons, "person_id": persons, "landmark_h": L,
                                  "time_h": time, "cause": cause, "site": "A",
                                  "x": x + rng.normal(0, 0.1, n)}))  # fmt: skip
    meta = pd.concat(rows, ignore_index=True)
    X = meta[["x"]].assign(z=rng.normal(size=len(meta)))
    y = ((meta["cause"] == 1) & (meta["time_h"] <= H)).to_numpy(dtype=np.int64)
    censored = ((meta["cause"] == 0) & (meta["time_h"] < H)).to_numpy()
    data = HorizonData(X, meta.drop(columns="x"), {DAY14: y}, {DAY14: censored},
                       {DAY14: np.full(len(meta), H)})  # fmt: skip
    complete = ~np.isin(meta["person_id"], meta["person_id"][censored])  # never censored
    return data, complete


def test_censoring_weights_are_fit_inside_the_training_fold():
    """Changing the censoring times of one fold's persons leaves the model trained without
    them (its out-of-fold risks) unchanged, and changes the other folds' models."""
    data, complete = _censored_cohort()
    X, y = data.X[complete].reset_index(drop=True), data.y[DAY14][complete]
    persons = data.meta["person_id"].astype(str).to_numpy()[complete]

    def make():
        return LogisticRiskModel(C=1.0)

    def oof(d):
        return cross_validate(X, y, persons, make, 3, 1, 7, censored=CensoredRows(d, "none"))[0]

    rows = CensoredRows(data, "none")
    folds = rows.folds(person_folds(persons, y, 3, 1, 7), persons, 3, 7)[0]
    k = folds[~np.isin(rows.persons, persons)][0]  # a fold with persons lost to follow-up
    moved = data.meta.copy()
    lost_in_k = (folds == k) & data.censored[DAY14]
    assert lost_in_k.sum() >= 5
    moved.loc[lost_in_k, "time_h"] = np.minimum(moved.loc[lost_in_k, "time_h"] * 0.5 + 40, 330)
    changed = HorizonData(data.X, moved, data.y, data.censored, data.end_h)
    before, after = oof(data), oof(changed)
    test_k = np.isin(persons, rows.persons[folds == k])
    np.testing.assert_array_equal(before[test_k], after[test_k])
    assert not np.allclose(before[~test_k], after[~test_k])  # the times do reach training


def test_every_row_of_a_person_is_in_one_fold():
    data, complete = _censored_cohort()
    persons = data.meta["person_id"].astype(str).to_numpy()
    cc = persons[complete]
    fold_ids = person_folds(cc, data.y[DAY14][complete], 3, 2, 1)
    folds = CensoredRows(data, "none").folds(fold_ids, cc, 3, 1)
    for r in range(2):
        per_person = pd.Series(folds[r]).groupby(persons).nunique()
        assert (per_person == 1).all()
        np.testing.assert_array_equal(folds[r][complete], fold_ids[r])  # the same folds
        assert set(folds[r][~complete]) == {0, 1, 2}  # the lost are dealt to every fold


# --------------------------------------------------------------------------- train_model
TRAIN = ["cv.folds=2", "cv.repeats=1", "cv.bootstrap=0", "task.landmarks_h=[24, 48]",
         "cv.report_landmarks_h=[24, 48]", "task.windows_h=[]", "model.type=logistic"]  # fmt: skip


@pytest.fixture(scope="module")
def lossy_cohort(tmp_path_factory):
    """A simulated cohort with 15% of patients lost to follow-up at 40-200 h."""
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp("lossy")
    write_cohort(simulate_cohort(300, seed=23), out)
    cohort = load_cohort(out)
    o = cohort.outcomes.copy()
    rng = np.random.default_rng(23)
    lost = rng.random(len(o)) < 0.15
    c = rng.uniform(40, 200, len(o))
    death = o["death_hours"].to_numpy(dtype=float)
    lost &= ~(death <= c)
    o.loc[lost, "followup_hours"] = c[lost]
    for col in ("grade3_hours", "death_hours"):
        after = lost & (o[col].to_numpy(dtype=float) > c)
        o.loc[after, col] = np.nan
    cohort.outcomes = o
    return cohort


def test_training_weights_none_is_the_complete_case_model(lossy_cohort):
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.modeling.estimators import make_model
    from crs_ml.modeling.train import evaluate_predictions, train_model

    cfg = config_from_dict({}, [*TRAIN, "task.training_weights=none"])
    res = train_model(lossy_cohort, cfg)
    X, y, meta = build_landmark_dataset(lossy_cohort, [24, 48], H, res.config.features)
    persons = meta["person_id"].astype(str).to_numpy()

    def make():
        return make_model(res.config.model, res.catalogue, cfg.seed)

    oof = cross_validate(X, y, persons, make, 2, 1, cfg.seed)
    expected = evaluate_predictions(y, oof, meta, [24.0, 48.0], 0, cfg.seed)
    np.testing.assert_equal({k: res.metrics[k] for k in expected}, expected)  # NaN == NaN
    assert not any(k.startswith("day14_") for k in res.metrics)
    final = make().fit(X, y, groups=persons)
    np.testing.assert_array_equal(res.model.predict_proba(X), final.predict_proba(X))


def test_ipcw_training_is_deterministic_and_differs_from_the_complete_case(lossy_cohort):
    from crs_ml.modeling.train import train_model
    from crs_ml.tracking.runs import flat_params

    cfg = config_from_dict({}, TRAIN)
    assert (
        cfg.task.training_weights == "ipcw" and flat_params(cfg)["task.training_weights"] == "ipcw"
    )
    a, b = train_model(lossy_cohort, cfg), train_model(lossy_cohort, cfg)
    np.testing.assert_equal(a.metrics, b.metrics)
    none = train_model(lossy_cohort, config_from_dict({}, [*TRAIN, "task.training_weights=none"]))
    assert a.metrics["n_L24"] == none.metrics["n_L24"]  # scored on the same rows
    assert a.metrics["auroc_L24"] != none.metrics["auroc_L24"]
    assert a.metrics["day14_censored_rows"] > 0
    assert a.metrics["day14_rows_at_risk"] == (
        a.metrics["day14_censored_rows"] + a.metrics["day14_weighted_rows"]
    )
    # more training rows than the complete case: the events seen before loss to follow-up
    assert a.metrics["day14_weighted_rows"] > none.metrics["n_L24"] + none.metrics["n_L48"]
    np.testing.assert_array_equal(a.oof, b.oof)
    # the attrition table still counts the censored
    assert a.attrition["censored_before_horizon"].sum() > 0
    pd.testing.assert_frame_equal(a.attrition, none.attrition)


def test_ipcw_with_the_optimism_bootstrap_trains(lossy_cohort):
    from crs_ml.modeling.train import train_model

    res = train_model(lossy_cohort, config_from_dict({}, [*TRAIN, "cv.validation=optimism"]))
    assert 0.5 < res.metrics["auroc_all"] < 1.0
    assert res.metrics["day14_censored_rows"] > 0


def test_training_weights_setting_is_checked():
    from crs_ml.errors import ConfigError

    with pytest.raises(ConfigError, match="task.training_weights must be 'ipcw' or 'none'"):
        config_from_dict({}, ["task.training_weights=drop"])


# --------------------------------------------------------------------------- IPCW metrics
def test_the_day14_ipcw_metric_is_the_time_dependent_one_on_everyone_at_risk(lossy_cohort):
    """Per report landmark, the training run's IPCW AUROC and Brier score are
    time_dependent_auroc / _brier of its out-of-fold risks of everyone at risk (two CV
    repeats pooled, G within deciles of the pooled risk: task.censoring_by risk_decile)."""
    from crs_ml.evaluation.censored import risk_groups, time_dependent_auroc, time_dependent_brier
    from crs_ml.modeling.train import train_model

    cfg = config_from_dict({}, [*TRAIN, "cv.repeats=2"])
    assert cfg.task.censoring_by == "risk_decile"
    res = train_model(lossy_cohort, cfg)
    meta, risk = res.at_risk_meta, res.at_risk_oof
    assert risk.shape == (2, len(meta)) and np.isfinite(risk).all()
    # the complete-case rows keep their out-of-fold risks; the others are added
    key = meta["patient_id"].astype(str) + "@" + meta["landmark_h"].astype(str)
    cc_key = res.meta["patient_id"].astype(str) + "@" + res.meta["landmark_h"].astype(str)
    at = pd.Index(key).get_indexer(cc_key)
    assert (at >= 0).all() and len(meta) > len(res.meta)
    np.testing.assert_array_equal(risk[:, at], res.oof)
    for L in (24.0, 48.0):
        m = meta["landmark_h"].to_numpy() == L
        time = np.tile(meta["time_h"].to_numpy(dtype=float)[m], 2)
        cause = np.tile(meta["cause"].to_numpy()[m], 2)
        p = risk[:, m].ravel()
        strata = risk_groups(p, 10)
        name = f"ipcw_L{L:g}"
        assert res.metrics[f"auroc_{name}"] == pytest.approx(
            time_dependent_auroc(time, cause, p, H, strata), rel=1e-12)  # fmt: skip
        assert res.metrics[f"brier_{name}"] == pytest.approx(
            time_dependent_brier(time, cause, p, H, strata), rel=1e-12)  # fmt: skip
        assert res.metrics[f"n_{name}"] == m.sum() > res.metrics[f"n_L{L:g}"]
        censored = (meta["cause"].to_numpy()[m] == 0) & (meta["time_h"].to_numpy()[m] < H)
        assert res.metrics[f"censored_{name}"] == censored.sum() > 0
        assert res.metrics[f"events_{name}"] > res.metrics[f"events_L{L:g}"]  # lost after event


def test_the_day14_ipcw_metric_exists_in_both_settings_and_is_deterministic(lossy_cohort):
    from crs_ml.modeling.train import train_model

    runs = {}
    for weights in ("ipcw", "none"):
        cfg = config_from_dict({}, [*TRAIN, "cv.bootstrap=30", f"task.training_weights={weights}"])
        runs[weights] = a = train_model(lossy_cohort, cfg)
        b = train_model(lossy_cohort, cfg)
        ipcw = {k: v for k, v in a.metrics.items() if "_ipcw_" in k}
        np.testing.assert_equal(ipcw, {k: v for k, v in b.metrics.items() if "_ipcw_" in k})
        np.testing.assert_array_equal(a.at_risk_oof, b.at_risk_oof)
        assert {"auroc_lo_ipcw_L24", "brier_hi_ipcw_L48"} <= set(ipcw)
        lo, hi = a.metrics["auroc_lo_ipcw_L24"], a.metrics["auroc_hi_ipcw_L24"]
        assert lo < a.metrics["auroc_ipcw_L24"] < hi
    a, b = runs["ipcw"], runs["none"]
    pd.testing.assert_frame_equal(a.at_risk_meta, b.at_risk_meta)  # the same rows
    for k in ("n_ipcw_L24", "events_ipcw_L24", "censored_ipcw_L24", "competing_ipcw_L48"):
        assert a.metrics[k] == b.metrics[k]
    assert a.metrics["auroc_ipcw_L24"] != b.metrics["auroc_ipcw_L24"]


def test_without_censoring_the_ipcw_metric_is_the_complete_case_one(lossy_cohort):
    """Everyone followed through day 14: the rows at risk are the complete-case rows, every
    weight is 1, and the IPCW AUROC and Brier equal auroc_L24 and brier_L24 (repeats pooled)."""
    from crs_ml.modeling.train import train_model

    cohort = lossy_cohort.subset(lossy_cohort.patients["patient_id"])  # a copy
    o = cohort.outcomes.copy()
    o["followup_hours"] = np.nan  # followed through: nobody censored
    cohort.outcomes = o
    res = train_model(cohort, config_from_dict({}, [*TRAIN, "cv.repeats=2"]))
    m = res.metrics
    for L in ("L24", "L48"):
        assert m[f"censored_ipcw_{L}"] == 0 and m[f"n_ipcw_{L}"] == m[f"n_{L}"]
        assert m[f"events_ipcw_{L}"] == m[f"events_{L}"]
        assert m[f"auroc_ipcw_{L}"] == pytest.approx(m[f"auroc_{L}"], rel=1e-12)
        assert m[f"brier_ipcw_{L}"] == pytest.approx(m[f"brier_{L}"], rel=1e-12)
    assert m["day14_censored_rows"] == 0


class _RecordingLogistic(LogisticRiskModel):
    """A logistic model that records the persons it trained on and the rows it scored."""

    calls: list = []

    def fit(self, X, y, groups=None, row_weights=None):
        self.trained_on_ = set(np.asarray(groups).astype(str))
        return super().fit(X, y, groups=groups, row_weights=row_weights)

    def predict_proba(self, X):
        self.calls.append((self.trained_on_, X.index.to_numpy()))
        return super().predict_proba(X)


@pytest.mark.parametrize("weights", ["ipcw", "none"])
def test_no_risk_of_a_row_at_risk_comes_from_a_model_that_trained_on_its_person(weights):
    """The rows outside the complete cases: the censored, and (as a person with a second
    treatment could have) the 48 h rows of a fifth of the others, whose persons train the
    fold models through their 24 h rows (``none``) or both rows (``ipcw``)."""
    data, complete = _censored_cohort()
    rng = np.random.default_rng(11)
    mixed = np.isin(data.meta["person_id"], rng.choice(data.meta["person_id"].unique(), 60))
    complete &= ~(mixed & (data.meta["landmark_h"].to_numpy() == 48.0))
    offset = 10**6  # the rows at risk scored apart from X's rows: index >= offset
    data.X.index = data.X.index + offset
    X = data.X[complete].reset_index(drop=True)
    y = data.y[DAY14][complete]
    persons = data.meta["person_id"].astype(str).to_numpy()
    rows = CensoredRows(data, "none")
    censored = rows if weights == "ipcw" else None
    fill = np.where(complete, 0.0, np.nan)
    at_risk_oof = np.tile(fill, (2, 1))
    _RecordingLogistic.calls = []
    cross_validate(X, y, persons[complete], lambda: _RecordingLogistic(C=1.0), 3, 2, 7,
                   censored=censored, at_risk=rows, at_risk_oof=at_risk_oof)  # fmt: skip
    assert np.isfinite(at_risk_oof).all()  # every row outside the complete cases scored
    scored = 0
    for trained_on, index in _RecordingLogistic.calls:
        at = index[index >= offset] - offset
        scored += at.size
        assert not set(persons[at]) & trained_on
    assert scored == 2 * (~complete).sum()  # each outside row once per repeat
    trained = set().union(*(t for t, _ in _RecordingLogistic.calls))
    assert set(persons[~complete]) & trained  # outside persons do train (other folds)
