"""The additive model and the stacked default (crs_ml.modeling.additive, crs_ml.modeling.stack):
exact SHAP, non-negative weights, fitting inside folds only, determinism, model folders
without pickle, and the save / load round trip through the bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from shared_bundle import LIGHT_STACK
from sklearn.utils.estimator_checks import parametrize_with_checks

from crs_ml.config import config_from_dict, load_config
from crs_ml.errors import ConfigError
from crs_ml.features.catalogue import feature_catalogue
from crs_ml.modeling.additive import AdditiveRiskModel, log_scale_features
from crs_ml.modeling.bundle import load_bundle, save_bundle
from crs_ml.modeling.estimators import feature_set_columns, make_model
from crs_ml.modeling.explain import explain
from crs_ml.modeling.stack import StackedRiskModel
from crs_ml.modeling.train import cross_validate

#: a small, fast stack: the three members of the default with light settings
STACK = LIGHT_STACK


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    folder = tmp_path_factory.mktemp("stack") / "cohort"
    write_cohort(simulate_cohort(400, seed=31), folder)
    cfg = load_config(None)
    X, y, meta = build_landmark_dataset(load_cohort(folder), [12.0, 24.0, 48.0], 336.0,
                                        cfg.features)  # fmt: skip
    catalogue = feature_catalogue(cfg.features)
    catalogue = catalogue[catalogue["name"].isin(X.columns)].reset_index(drop=True)
    return X, np.asarray(y, dtype=int), meta["person_id"].astype(str).to_numpy(), catalogue


def _member(stack, name):
    return {n: est for n, est, _ in stack.members_}[name]


def _stack(catalogue, seed=0):
    cfg = config_from_dict({"model": STACK})
    return make_model(cfg.model, catalogue, seed), cfg


@pytest.fixture(scope="module")
def fitted(data):
    X, y, groups, catalogue = data
    model, _ = _stack(catalogue)
    return model.fit(X, y, groups=groups)


def test_additive_shap_adds_up_to_the_logit_and_is_centred(data):
    X, y, groups, catalogue = data
    model = AdditiveRiskModel(log_features=log_scale_features(catalogue), C_grid=(0.003, 0.03))
    model.fit(X, y, groups=groups)
    contrib, base = model.explain_logit(X)
    risk = model.predict_proba(X)[:, 1]
    np.testing.assert_allclose(base + contrib.sum(axis=1), logit(risk), atol=1e-6)
    # each term minus its training mean: contributions average 0 over the training rows
    np.testing.assert_allclose(contrib.mean(axis=0), 0.0, atol=1e-9)
    # log scale declared by the catalogues: IL-6 levels yes, counts and change no
    logs = set(model.log_features)
    assert {"il6_max", "ldh_baseline", "measix_baseline"} <= logs
    assert not {"il6_n", "il6_change", "temperature_max_early", "il6_measured"} & logs
    assert any(t["knots"] for t in model.terms_) and model.C_ in (0.003, 0.03)
    assert len(model.get_feature_names_out()) == len(model.coef_)


def test_stack_shap_is_the_weighted_sum_of_exact_member_contributions(data, fitted):
    X, y, groups, catalogue = data
    contrib, base = fitted.explain_logit(X)
    risk = fitted.predict_proba(X)[:, 1]
    np.testing.assert_allclose(base + contrib.sum(axis=1), logit(risk), atol=1e-6)
    # the compact member reads only its feature set; features no member reads get 0
    assert fitted.weights_.min() >= 0 and np.isclose(fitted.weights_.sum(), 1.0)
    assert fitted.platt_slope_ > 0
    core = set(feature_set_columns(list(X.columns), "clinical_core"))
    compact = {n: c for n, _, c in fitted.members_}["compact"]
    assert set(compact) == core and "il6_pretoci_max" in core and "il6_n" not in core
    summary = fitted.summary()
    assert {"stack_weight_xgboost", "stack_inner_auroc_compact", "stack_inner_auroc_blend"} <= set(
        summary
    )


def test_blend_weights_are_non_negative_when_a_member_points_backwards():
    """A member score that an unconstrained stacker would give a negative coefficient gets 0."""
    from sklearn.linear_model import LogisticRegression

    from crs_ml.modeling.stack import fit_blend

    rng = np.random.default_rng(0)
    signal = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2 * signal - 2)))).astype(float)
    member_a = 2 * signal + rng.normal(0, 0.5, 4000)
    member_b = member_a - 1.5 * signal  # partly the signal, partly noise around -signal
    M = np.column_stack([member_a, member_b])
    free = LogisticRegression(C=np.inf).fit(M, y).coef_.ravel()
    assert free[1] < 0  # the unconstrained blend would subtract member b
    coef, _ = fit_blend(M, y)
    assert coef[0] > 0 and coef[1] == 0.0


def test_shrunk_rule_mixes_free_and_equal_weights_and_unknown_rules_fail_early(data):
    from crs_ml.modeling.stack import expand_rules, fit_blend, fit_rule

    rng = np.random.default_rng(1)
    signal = rng.normal(size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(1.5 * signal - 2)))).astype(float)
    M = np.column_stack([signal + rng.normal(0, s, 3000) for s in (0.3, 1.0, 3.0)])
    free, _ = fit_blend(M, y)
    free = free / free.sum()
    coef, _ = fit_rule("shrunk:0.25", M, y, ["a", "b", "c"])
    np.testing.assert_allclose(coef / coef.sum(), 0.25 * free + 0.75 / 3, atol=1e-9)
    assert not np.allclose(free, 1 / 3)  # the free weights differ from equal ones
    assert expand_rules(["equal", "shrunk", "single"], ["a", "b"]) == [
        "equal", "shrunk:0.25", "shrunk:0.5", "shrunk:0.75", "only:a", "only:b"
    ]  # fmt: skip
    X, y, groups, catalogue = data
    model, _ = _stack(catalogue)
    model.set_params(blend_rules=["equal", "median"])
    with pytest.raises(ValueError, match="unknown rule family 'median'"):
        model.fit(X.iloc[:0], y[:0], groups=groups[:0])  # before any data is looked at


def test_blend_replays_from_the_kept_inner_margins(fitted, data):
    """What bench_robustness replays: the blend refit from the kept out-of-fold margins and
    their folds equals the fitted blend (so a rule can be compared without refitting
    members)."""
    from crs_ml.modeling.stack import blend_from_margins

    X, y, groups, _ = data
    fold = fitted.inner_fold_
    folds = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(fold.max() + 1)]
    assert len(folds) == fitted.inner_folds and fitted.inner_margins_.shape == (len(y), 3)
    rule, _, coef, intercept = blend_from_margins(
        fitted.inner_margins_, y, folds, [n for n, _, _ in fitted.members_], fitted.blend_rules
    )
    assert rule == fitted.blend_rule_
    np.testing.assert_allclose(coef, fitted.coef_, rtol=1e-12)
    assert intercept == fitted.platt_intercept_


def test_outer_fold_outcomes_never_reach_the_fit(data, monkeypatch):
    """Fit inside folds: changing the held-out fold's outcomes changes no weight and no
    coefficient of the model fitted for that fold. (The person folds are stratified on the
    outcome, so they are pinned to those of the original outcomes.)"""
    from crs_ml.modeling import train

    X, y, groups, catalogue = data
    pinned = train.person_folds(groups, y, 2, 1, 0)
    monkeypatch.setattr(train, "person_folds", lambda *a, **k: pinned)
    seen = []

    def make():
        model, _ = _stack(catalogue)
        seen.append(model)
        return model

    cross_validate(X, y, groups, make, folds=2, repeats=1, seed=0)
    first = [(m.weights_.copy(), m.platt_intercept_, _member(m, "compact").coef_.copy())
             for m in seen]  # fmt: skip
    fold = pinned[0]
    y2 = y.copy()
    y2[fold == 0] = 1 - y2[fold == 0]  # flip every outcome of fold 0
    seen.clear()
    cross_validate(X, y2, groups, make, folds=2, repeats=1, seed=0)
    # the model of fold 0 (trained on fold 1) is unchanged; the model of fold 1 did change
    # (it trains on fold 0) - proof that the check can fail
    w0, b0, c0 = first[0]
    np.testing.assert_array_equal(seen[0].weights_, w0)
    assert seen[0].platt_intercept_ == b0
    np.testing.assert_array_equal(_member(seen[0], "compact").coef_, c0)
    assert not np.array_equal(_member(seen[1], "compact").coef_, first[1][2])


def test_stack_is_deterministic(data, fitted):
    X, y, groups, catalogue = data
    again, _ = _stack(catalogue)
    again.fit(X, y, groups=groups)
    np.testing.assert_array_equal(again.weights_, fitted.weights_)
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))


def _no_pickle(folder):
    for f in folder.iterdir():
        assert f.suffix not in (".pkl", ".pickle", ".joblib", ".skops"), f.name
        head = f.read_bytes()[:2]
        assert head != b"\x80\x04" and head != b"\x80\x05", f"{f.name} is a pickle"


@pytest.mark.parametrize("kind", ["stack", "additive"])
def test_bundle_round_trip_without_pickle(data, fitted, tmp_path, kind):
    X, y, groups, catalogue = data
    if kind == "stack":
        model, cfg = fitted, config_from_dict({"model": STACK})
    else:
        cfg = config_from_dict({"model": STACK["members"]["additive"]})
        model = make_model(cfg.model, catalogue, 0).fit(X, y, groups=groups)
    folder = save_bundle(model, tmp_path / kind, model_type=kind, feature_names=list(X.columns),
                         catalogue=catalogue, config=cfg.model_dump(mode="json"))  # fmt: skip
    _no_pickle(folder)
    bundle = load_bundle(folder)
    np.testing.assert_allclose(bundle.predict_logit(X), model.decision_function(X), atol=1e-12)
    ex = explain(bundle, X)
    contrib, base = model.explain_logit(X)
    np.testing.assert_allclose(ex.contributions, contrib, atol=1e-12)
    np.testing.assert_allclose(ex.base_value + ex.contributions.sum(axis=1),
                               logit(bundle.predict_risk(X)), atol=1e-6)  # fmt: skip
    assert ex.supported


def test_stack_config_is_checked_before_any_data():
    with pytest.raises(ConfigError, match="at least two members"):
        config_from_dict({"model": {"type": "stack", "members": {"a": {"type": "additive"}}}})
    with pytest.raises(ConfigError, match="unknown feature set 'tiny'"):
        config_from_dict({"model": {"type": "additive", "feature_set": "tiny"}})
    with pytest.raises(ConfigError, match="members is for type 'stack'"):
        config_from_dict({"model": {"type": "additive", "members": {"a": {}, "b": {}}}})
    for name in ("stack", "additive", "compact_logistic"):
        load_config(f"configs/{name}.yaml")


@parametrize_with_checks(
    [
        AdditiveRiskModel(C_grid=(0.1, 1.0), inner_folds=2),
        StackedRiskModel(
            members=[
                ("a", AdditiveRiskModel(C_grid=(1.0,)), None),
                ("b", AdditiveRiskModel(C_grid=(0.1,), spline_knots=0), None),
            ],
            inner_folds=2,
        ),  # fmt: skip
    ]
)
def test_sklearn_conventions(estimator, check):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def test_members_are_reported_beside_the_blend(tmp_path, data):
    """train_model logs each member on the blend's own outer folds, and the weights."""
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.train import train_model
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    write_cohort(simulate_cohort(300, seed=32), tmp_path / "c")
    cfg = config_from_dict(
        {"model": STACK, "task": {"landmarks_h": [12, 24, 48]},
         "cv": {"folds": 2, "repeats": 1, "bootstrap": 0, "report_landmarks_h": [24]}}
    )  # fmt: skip
    res = train_model(load_cohort(tmp_path / "c"), cfg)
    m = res.metrics
    for name in ("xgboost", "additive", "compact"):
        assert 0.5 < m[f"member.{name}.auroc_L24"] <= 1.0
        assert m[f"stack_weight_{name}"] >= 0
    assert abs(sum(m[f"stack_weight_{n}"] for n in ("xgboost", "additive", "compact")) - 1) < 1e-9
    assert "auroc_L24" in m and pd.notna(m["auroc_L24"])


def test_stack_through_mlflow_pyfunc_matches_the_bundle(tmp_path, tracking_uri):
    """Train a stack, log it as the MLflow pyfunc (models from code), load it back and score:
    the same risks and SHAP as the bundle, the blend's SHAP adds up, no pickle in the folder;
    the run's params and metrics carry the members and the weights, and ``compare`` lists the
    members beside the blend."""
    import mlflow

    from crs_ml.ingest.load import load_cohort
    from crs_ml.ingest.records import cohort_to_records, records_to_cohort
    from crs_ml.modeling.train import train_model
    from crs_ml.scoring.score import score
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort
    from crs_ml.tracking.leaderboard import leaderboard
    from crs_ml.tracking.runs import log_training_run

    write_cohort(simulate_cohort(300, seed=33), tmp_path / "train")
    tables = simulate_cohort(15, seed=34)
    tables.pop("truth", None)
    tables.pop("outcomes", None)
    write_cohort(tables, tmp_path / "new")
    cohort = load_cohort(tmp_path / "train")
    cfg = config_from_dict(
        {"model": STACK, "task": {"landmarks_h": [12, 24, 48]}, "mlflow": {"experiment": "stack"},
         "cv": {"folds": 2, "repeats": 1, "bootstrap": 0, "report_landmarks_h": [24]}}
    )  # fmt: skip
    result = train_model(cohort, cfg)
    for name in ("xgboost", "additive", "compact"):
        assert 0.5 < result.metrics[f"member.{name}.auroc_L24"] <= 1.0
    info = log_training_run(result, cohort)
    run = mlflow.get_run(info.run_id)
    assert run.data.params["model.member.compact"] == "additive (clinical_core features)"
    weights = [run.data.metrics[f"stack_weight_{n}"] for n in ("xgboost", "additive", "compact")]
    assert min(weights) >= 0 and abs(sum(weights) - 1) < 1e-9
    assert "stack_inner_auroc_blend" in run.data.metrics

    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "m")))
    for f in local.rglob("*"):
        if f.is_file():
            assert f.suffix not in (".pkl", ".pickle", ".skops"), f
    model = mlflow.pyfunc.load_model(info.model_uri)
    new = load_cohort(tmp_path / "new")
    records = cohort_to_records(new, list(new.patients["patient_id"]))
    served = model.predict(records)
    from crs_ml.modeling.bundle import load_model_folder

    bundle = load_model_folder(local)
    assert bundle.model_type == "stack"
    expected = score(bundle, records_to_cohort(records))
    scored = served["status"] == "scored"
    assert scored.sum() >= 10
    # the served form has None where a number is missing (patients not scored)
    np.testing.assert_allclose(served["risk"].astype(float), expected["risk"], atol=1e-12)
    shap = [c for c in served.columns if c.startswith("shap_")]
    np.testing.assert_allclose(served[shap].astype(float), expected[shap], atol=1e-12)
    total = (served.loc[scored, "base_value"].astype(float)
             + served.loc[scored, shap].astype(float).sum(axis=1))  # fmt: skip
    np.testing.assert_allclose(total, logit(served.loc[scored, "risk"].astype(float)), atol=1e-6)
    assert served.loc[scored, "top_drivers"].str.len().gt(0).all()

    board = leaderboard("stack", 24.0, n_boot=50)
    assert list(board["model"]) == ["stack", "stack:additive", "stack:compact", "stack:xgboost"]
    assert board["not_paired"].iloc[1:].str.contains("stack member").all()


def test_spline_basis_is_scikit_learns():
    """The all-terms-at-once basis equals SplineTransformer's (linear extrapolation, no bias
    column), inside the knots, at them and beyond them."""
    from sklearn.preprocessing import SplineTransformer

    from crs_ml.modeling.additive import spline_basis

    rng = np.random.default_rng(0)
    for n_knots in (3, 5):
        knots = np.sort(rng.normal(size=(4, n_knots)), axis=1)
        x = rng.normal(scale=2.0, size=(300, 4))
        x[0], x[1] = knots[:, 0], knots[:, -1]
        ours = spline_basis(x, knots)
        for j in range(4):
            grid = knots[j][:, None]
            ref = SplineTransformer(knots=grid, degree=3, extrapolation="linear",
                                    include_bias=False).fit(grid).transform(x[:, [j]])  # fmt: skip
            np.testing.assert_allclose(ours[:, j], ref, atol=1e-12)


def test_risk_models_declare_their_sklearn_tags_once():
    """One base class (crs_ml.modeling.base) declares NaN input and binary outcome for every
    risk model; none repeats it."""
    from crs_ml.modeling.base import BinaryRiskClassifier
    from crs_ml.modeling.baselines import FeverRuleModel, LogisticRiskModel, MEasixModel
    from crs_ml.modeling.estimators import XGBRiskModel

    for cls in (XGBRiskModel, AdditiveRiskModel, StackedRiskModel, LogisticRiskModel,
                MEasixModel, FeverRuleModel):  # fmt: skip
        assert issubclass(cls, BinaryRiskClassifier)
        tags = cls().__sklearn_tags__()
        assert tags.input_tags.allow_nan and tags.classifier_tags.multi_class is False
        assert all("__sklearn_tags__" not in k.__dict__ for k in cls.__mro__[:-1]
                   if k is not BinaryRiskClassifier and k.__module__.startswith("crs_ml"))  # fmt: skip


def _few_events_stack(catalogue, below, members=("additive", "compact")):
    model, _ = _stack(catalogue)
    return model.set_params(few_events_below=below, few_events_members=list(members))


def test_few_events_give_equal_weights_to_the_declared_members(data, fitted, tmp_path):
    """Below ``few_events_below`` persons with an event the blend fits no weights: equal
    weights over ``few_events_members``, the others 0, and a Platt map; at the threshold the
    free weights as before. Persons are counted, not rows."""
    from crs_ml.modeling.stack import blend_from_margins, load_stack, save_stack

    X, y, groups, catalogue = data
    persons = len(np.unique(groups[y == 1]))
    assert fitted.event_persons_ == persons and y.sum() > persons + 1  # rows > persons
    few = _few_events_stack(catalogue, persons + 1).fit(X, y, groups=groups)
    assert few.blend_rule_ == "few_events:additive,compact" and few.rule_log_loss_ == {}
    np.testing.assert_allclose(few.weights_, [0.0, 0.5, 0.5], atol=1e-12)
    assert few.platt_slope_ > 0
    assert few.summary()["stack_few_events"] == 1.0 and fitted.summary()["stack_few_events"] == 0
    assert few.summary()["stack_event_persons"] == persons
    # the members are fit as before (the xgboost one too, for the run log and replays)
    np.testing.assert_array_equal(few.inner_margins_, fitted.inner_margins_)
    assert set(few.member_logits(X)) == {"xgboost", "additive", "compact"}
    # the Platt map is the logistic fit of the equal blend of the kept out-of-fold margins
    rule, _, coef, b = blend_from_margins(few.inner_margins_, y, [], ["xgboost", "additive",
                                          "compact"], few_events=["additive", "compact"])  # fmt: skip
    assert rule == few.blend_rule_ and b == few.platt_intercept_
    np.testing.assert_allclose(coef, few.coef_, rtol=1e-12)
    # exact SHAP still adds up; the xgboost member contributes nothing
    contrib, base = few.explain_logit(X)
    np.testing.assert_allclose(base + contrib.sum(axis=1), few.decision_function(X), atol=1e-6)
    xgb_only = [c for c in _member(few, "xgboost").feature_names_in_
                if c not in set(X.columns[np.abs(contrib).sum(axis=0) > 0])]  # fmt: skip
    assert xgb_only, "some feature only the xgboost member reads"
    # at the threshold: the free weights, exactly as without the rule
    enough = _few_events_stack(catalogue, persons).fit(X, y, groups=groups)
    assert enough.blend_rule_ == fitted.blend_rule_
    np.testing.assert_array_equal(enough.coef_, fitted.coef_)
    # the setting travels with a saved model
    save_stack(few, tmp_path)
    loaded = load_stack(tmp_path)
    assert (loaded.few_events_below, loaded.few_events_members) == (
        persons + 1,
        ["additive", "compact"],
    )
    np.testing.assert_array_equal(loaded.predict_proba(X), few.predict_proba(X))


def test_too_few_events_for_inner_folds_fall_back_to_the_few_events_members(data):
    """With too few persons with an event for the inner folds, equal weights over the
    few-events members and no Platt map (before: over every member, the xgboost one too)."""
    X, y, groups, catalogue = data
    event_persons = np.unique(groups[y == 1])
    keep = ~np.isin(groups, event_persons[2:])  # two persons with an event, 3 inner folds
    with pytest.warns(UserWarning, match="equal weights over additive, compact"):
        model = _few_events_stack(catalogue, 50).fit(X[keep], y[keep], groups=groups[keep])
    np.testing.assert_allclose(model.weights_, [0.0, 0.5, 0.5])
    assert (model.platt_slope_, model.platt_intercept_) == (1.0, 0.0)


def test_few_events_settings_are_checked_and_the_default_uses_them():
    with pytest.raises(ConfigError, match="few_events_members: extra not among model.members"):
        config_from_dict({"model": {**STACK, "params": {"few_events_members": ["extra"]}}})
    with pytest.raises(ConfigError, match="few_events_below"):
        config_from_dict({"model": {**STACK, "params": {"few_events_below": -1}}})
    for cfg in (load_config(None), load_config("configs/default.yaml"),
                load_config("configs/stack.yaml")):  # fmt: skip
        params = cfg.model.params
        assert params["few_events_below"] == 50
        assert params["few_events_members"] == ["additive", "compact"]
