"""Risk models: sklearn conformance, Platt calibration on the inner split, determinism,
early stopping, person-level inner split, baselines and make_model."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

from crs_ml.config import ModelConfig
from crs_ml.errors import ConfigError, InputError
from crs_ml.evaluation.metrics import auroc, calibration_intercept_slope
from crs_ml.modeling.estimators import (
    FeverRuleModel,
    LogisticRiskModel,
    MEasixModel,
    XGBRiskModel,
    _MarginClassifier,
    make_model,
)

SMALL_XGB = {"n_estimators": 40, "max_depth": 2, "early_stopping_rounds": 10, "n_jobs": 1}


def landmark_like(n_persons: int, rows: int, seed: int, n_noise: int = 3):
    """Stacked rows per person with a person-level signal, NaNs and noise columns."""
    rng = np.random.default_rng(seed)
    person = np.repeat(np.arange(n_persons), rows)
    latent = np.repeat(rng.normal(size=n_persons), rows)
    X = pd.DataFrame(
        {
            "il6_pretoci_max": latent + rng.normal(0, 0.5, person.size),
            "platelets_min": -0.5 * latent + rng.normal(0, 1, person.size),
            **{f"noise_{i}": rng.normal(size=person.size) for i in range(n_noise)},
        }
    )
    X.loc[rng.random(person.size) < 0.1, "platelets_min"] = np.nan
    y = (rng.random(person.size) < expit(-1.5 + 1.5 * latent)).astype(int)
    return X, y, person.astype(str)


# --- generic sklearn conformance -------------------------------------------------------------
# MEasixModel and FeverRuleModel read fixed column names (measix_landmark,
# temperature_max_early): the generic checks feed unnamed arrays of arbitrary width, so
# they are covered by the named-column tests below instead. No check is expected to fail
# for the two estimators below, so no expected_failed_checks are declared.


@parametrize_with_checks(
    [
        XGBRiskModel(n_estimators=15, early_stopping_rounds=5, n_jobs=1),
        XGBRiskModel(n_estimators=15, early_stopping_rounds=5, inner_folds=3, n_jobs=1),
        LogisticRiskModel(),
    ]
)
def test_sklearn_conformance(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny check data: Platt warnings
        check(estimator)


# --- XGBRiskModel ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    X, y, person = landmark_like(400, 3, seed=1)
    model = XGBRiskModel(**SMALL_XGB).fit(X, y, groups=person)
    return model, X, y, person


def test_platt_parameters_equal_calibrated_classifier_cv(fitted):
    model, X, y, _ = fitted
    valid = model.inner_valid_index_
    assert model.calibration_fitted_ and valid.size > 0
    reference = CalibratedClassifierCV(
        FrozenEstimator(_MarginClassifier(model.booster_).fit()), method="sigmoid"
    ).fit(X.to_numpy()[valid], y[valid])
    expected = reference.predict_proba(X.to_numpy())[:, 1]
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], expected, rtol=0, atol=1e-12)
    margin = model.predict_margin(X)
    np.testing.assert_allclose(
        model.calibrated_logit(X), model.platt_slope_ * margin + model.platt_intercept_
    )
    # the same calibration fitted on the inner-TRAIN rows gives other numbers, so the
    # equality above pins the calibration to the inner-validation rows
    train = model.inner_train_index_
    on_train = CalibratedClassifierCV(
        FrozenEstimator(_MarginClassifier(model.booster_).fit()), method="sigmoid"
    ).fit(X.to_numpy()[train], y[train])
    assert np.max(np.abs(on_train.predict_proba(X.to_numpy())[:, 1] - expected)) > 1e-3


def test_margin_is_the_booster_margin_up_to_best_iteration(fitted):
    import xgboost as xgb

    model, X, _, _ = fitted
    assert model.booster_.num_boosted_rounds() == model.best_iteration_ + 1
    assert model.booster_.feature_names == list(X.columns)
    dm = xgb.DMatrix(X.to_numpy(), missing=np.nan, feature_names=list(X.columns))
    np.testing.assert_allclose(
        model.predict_margin(X), model.booster_.predict(dm, output_margin=True), atol=1e-6
    )
    assert list(model.feature_names_in_) == list(X.columns) and model.n_features_in_ == 5


def test_inner_split_respects_persons(fitted):
    model, _, y, person = fitted
    train, valid = model.inner_train_index_, model.inner_valid_index_
    assert not set(person[train]) & set(person[valid])
    assert np.array_equal(np.sort(np.r_[train, valid]), np.arange(y.size))
    assert len(set(person[valid])) == pytest.approx(0.25 * 400, abs=2)
    assert set(y[train]) == set(y[valid]) == {0, 1}
    event_persons = pd.Series(y).groupby(person).max()
    share = event_persons[list(set(person[valid]))].mean()
    assert share == pytest.approx(event_persons.mean(), abs=0.03)  # stratified by person


def test_no_groups_means_one_group_per_row():
    X, y, _ = landmark_like(100, 2, seed=2)
    model = XGBRiskModel(**SMALL_XGB).fit(X.to_numpy(), y)
    assert model.inner_valid_index_.size == pytest.approx(0.25 * y.size, abs=2)
    assert not hasattr(model, "feature_names_in_")


def test_determinism_same_seed_same_predictions():
    X, y, person = landmark_like(200, 3, seed=3)
    a = XGBRiskModel(**SMALL_XGB, random_state=5).fit(X, y, groups=person).predict_proba(X)
    b = XGBRiskModel(**SMALL_XGB, random_state=5).fit(X, y, groups=person).predict_proba(X)
    c = XGBRiskModel(**SMALL_XGB, random_state=6).fit(X, y, groups=person).predict_proba(X)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_early_stopping_keeps_few_trees_on_noise():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 6))
    y = rng.integers(0, 2, 600)
    model = XGBRiskModel(n_estimators=200, learning_rate=0.3, early_stopping_rounds=10).fit(X, y)
    assert model.best_iteration_ + 1 < 100
    assert model.booster_.num_boosted_rounds() == model.best_iteration_ + 1


def test_platt_on_held_out_rows_corrects_an_overfitted_booster():
    X, y, person = landmark_like(1000, 3, seed=5)
    X_test, y_test, _ = landmark_like(1000, 3, seed=6)
    params = {"n_estimators": 150, "max_depth": 6, "learning_rate": 0.3, "n_jobs": 1}
    params["early_stopping_rounds"] = None  # deliberately overfit
    raw = XGBRiskModel(**params, calibration="none").fit(X, y, groups=person)
    platt = XGBRiskModel(**params, calibration="platt").fit(X, y, groups=person)
    assert (raw.platt_slope_, raw.platt_intercept_) == (1.0, 0.0)
    np.testing.assert_allclose(raw.predict_proba(X_test)[:, 1], expit(raw.predict_margin(X_test)))
    _, slope_raw = calibration_intercept_slope(y_test, raw.predict_proba(X_test)[:, 1])
    _, slope_platt = calibration_intercept_slope(y_test, platt.predict_proba(X_test)[:, 1])
    assert slope_raw < 0.5  # the raw booster is far too extreme on new data
    assert abs(slope_platt - 1.0) < 0.5  # Platt on held-out persons pulls it back near 1


def test_crossfitted_calibration_uses_every_row_and_out_of_fold_margins():
    from crs_ml.modeling.estimators import booster_margin, inner_group_folds

    X, y, person = landmark_like(600, 3, seed=7)
    model = XGBRiskModel(**SMALL_XGB, inner_folds=4).fit(X, y, groups=person)
    assert len(model.inner_best_iterations_) == 4
    assert model.booster_.num_boosted_rounds() == model.best_iteration_ + 1
    # Platt was fit on out-of-fold margins of the inner boosters: recompute them and refit
    codes = pd.factorize(person)[0]
    folds = inner_group_folds(y, codes, 4, model.random_state)
    for train, valid in folds:
        assert not set(person[train]) & set(person[valid])
    oof = np.full(len(y), np.nan)
    for (train, valid), best in zip(folds, model.inner_best_iterations_, strict=True):
        inner = XGBRiskModel(**{**SMALL_XGB, "early_stopping_rounds": None}, calibration="none")
        inner.set_params(n_estimators=int(best) + 1)
        inner.fit(X.iloc[train], y[train], groups=person[train])
        oof[valid] = booster_margin(inner.booster_, X.iloc[valid].to_numpy(dtype=float))
    assert np.isfinite(oof).all()
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6).fit(oof[:, None], y)
    assert model.platt_slope_ == pytest.approx(lr.coef_[0, 0], rel=0.1)
    # deterministic and better calibrated on new persons than the raw booster margins
    again = XGBRiskModel(**SMALL_XGB, inner_folds=4).fit(X, y, groups=person)
    assert np.array_equal(again.predict_proba(X), model.predict_proba(X))


def test_crossfitting_without_early_stopping_keeps_every_tree():
    X, y, person = landmark_like(200, 2, seed=9)
    params = {**SMALL_XGB, "early_stopping_rounds": None, "n_estimators": 12}
    model = XGBRiskModel(**params, inner_folds=3).fit(X, y, groups=person)
    assert list(model.inner_best_iterations_) == [11, 11, 11]
    assert model.booster_.num_boosted_rounds() == 12


def test_crossfitting_falls_back_to_one_split_when_events_are_too_few():
    X, y, person = landmark_like(40, 2, seed=8)
    y[:] = 0
    y[[0, 2, 4]] = 1  # three events: six folds cannot all hold one
    with pytest.warns(UserWarning, match="inner folds"):
        model = XGBRiskModel(**SMALL_XGB, inner_folds=6).fit(X, y, groups=person)
    assert not hasattr(model, "inner_best_iterations_")


def test_too_few_persons_fall_back_with_a_warning():
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0] * 9 + [1])
    with pytest.warns(UserWarning, match="too few persons"):
        model = XGBRiskModel(n_estimators=5).fit(X, y)
    assert not model.calibration_fitted_ and model.booster_.num_boosted_rounds() == 5


def test_monotone_constraint_names_are_checked():
    X, y, person = landmark_like(60, 2, seed=7)
    with pytest.raises(ConfigError, match="il6_max_typo"):
        XGBRiskModel(**SMALL_XGB, monotone_constraints={"il6_max_typo": 1}).fit(X, y)
    with pytest.raises(ConfigError, match="-1, 0 or"):
        XGBRiskModel(**SMALL_XGB, monotone_constraints={"platelets_min": 2}).fit(X, y)
    with pytest.raises(ConfigError, match="calibration"):
        XGBRiskModel(calibration="isotonic").fit(X, y)


# --- baselines ---------------------------------------------------------------------------------


def test_logistic_handles_all_nan_column_and_imputes_in_fold():
    X, y, _ = landmark_like(150, 2, seed=8)
    X["empty"] = np.nan
    model = LogisticRiskModel().fit(X, y)
    X_new = X.assign(empty=1.0)
    p = model.predict_proba(X_new)[:, 1]
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, model.predict_proba(X)[:, 1])  # dropped column ignored
    imputer = model.pipeline_[0]
    assert imputer.statistics_[1] == pytest.approx(np.nanmedian(X["platelets_min"]))
    names = model.get_feature_names_out()
    assert len(names) == model.coef_.size and "missingindicator_platelets_min" in names
    assert "empty" not in names
    assert auroc(y, p) > 0.7
    for penalty in ("l1", "none"):
        LogisticRiskModel(penalty=penalty).fit(X, y)
    with pytest.raises(ValueError, match="penalty"):
        LogisticRiskModel(penalty="elastic").fit(X, y)


def measix_frame(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    log_measix = rng.normal(0, 1, n)
    y = (rng.random(n) < expit(-1.5 + 1.2 * log_measix)).astype(int)
    X = pd.DataFrame(
        {
            "measix_baseline": np.exp(log_measix + rng.normal(0, 0.3, n)),
            "measix_landmark": np.exp(log_measix),
            "other": rng.normal(size=n),
        }
    )
    X.loc[: n // 4, "measix_landmark"] = np.nan
    return X, y


def test_measix_falls_back_to_baseline_and_ranks_by_measix():
    X, y = measix_frame(9)
    model = MEasixModel().fit(X, y)
    assert model.logistic_.coef_[0, 0] > 0
    filled = X["measix_landmark"].fillna(X["measix_baseline"])
    p = model.predict_proba(X)[:, 1]
    assert auroc(y, p) == pytest.approx(auroc(y, filled), abs=1e-12)
    row = X.iloc[[0]].assign(measix_landmark=X["measix_baseline"].iloc[0])
    assert model.predict_proba(row)[0, 1] == pytest.approx(p[0])
    both_missing = X.iloc[[0]].assign(measix_landmark=np.nan, measix_baseline=np.nan)
    imputed = model.predict_proba(both_missing)[0, 1]
    expected = model.logistic_.predict_proba([[model.impute_value_]])[0, 1]
    assert imputed == pytest.approx(expected)


def test_measix_needs_names_for_arrays():
    X, y = measix_frame(10)
    with pytest.raises(InputError, match="feature_names"):
        MEasixModel().fit(X.to_numpy(), y)
    named = MEasixModel(feature_names=list(X.columns)).fit(X.to_numpy(), y)
    np.testing.assert_allclose(
        named.predict_proba(X.to_numpy()), MEasixModel().fit(X, y).predict_proba(X)
    )
    with pytest.raises(InputError, match="measix_landmark"):
        MEasixModel().fit(X[["other"]], y)


def test_fever_rule_rates_and_auroc():
    X = pd.DataFrame({"temperature_max_early": [39.0, 38.5, np.nan, 39.5, 38.0, 38.9]})
    y = np.array([1, 0, 0, 1, 1, 0])
    model = FeverRuleModel().fit(X, y)
    assert model.rate_positive_ == pytest.approx(2 / 3)
    assert model.rate_negative_ == pytest.approx(1 / 3)
    np.testing.assert_allclose(
        model.predict_proba(X)[:, 1], [2 / 3, 1 / 3, 1 / 3, 2 / 3, 1 / 3, 2 / 3]
    )
    assert FeverRuleModel(threshold_c=39.2).fit(X, y).rule(X).tolist() == [
        False, False, False, True, False, False,
    ]  # fmt: skip
    rng = np.random.default_rng(11)
    temp = rng.normal(38.5, 0.6, 500)
    y = (rng.random(500) < expit(-2 + 2 * (temp > 38.9))).astype(int)
    frame = pd.DataFrame({"temperature_max_early": temp})
    p = FeverRuleModel().fit(frame, y).predict_proba(frame)[:, 1]
    assert auroc(y, p) == pytest.approx(auroc(y, (temp >= 38.9).astype(float)), abs=1e-12)
    with pytest.raises(InputError, match="temperature_max_early"):
        FeverRuleModel().fit(pd.DataFrame({"x": temp}), y)


# --- make_model ----------------------------------------------------------------------------------


def test_make_model_builds_each_type():
    xgb = make_model(ModelConfig(type="xgboost", params={"n_estimators": 10}), None, seed=7)
    assert isinstance(xgb, XGBRiskModel)
    assert (xgb.n_estimators, xgb.random_state, xgb.calibration) == (10, 7, "platt")
    none = make_model(ModelConfig(type="xgboost", calibration="none"), None, seed=0)
    assert none.calibration == "none" and none.monotone_constraints is None
    logistic = make_model(ModelConfig(type="logistic", params={"C": 0.5}), None, seed=3)
    assert isinstance(logistic, LogisticRiskModel) and (logistic.C, logistic.random_state) == (
        0.5,
        3,
    )
    assert isinstance(make_model(ModelConfig(type="measix"), None, seed=0), MEasixModel)
    rule = make_model(ModelConfig(type="fever_rule", params={"threshold_c": 39.0}), None, 0)
    assert isinstance(rule, FeverRuleModel) and rule.threshold_c == 39.0


def test_make_model_monotone_from_catalogue():
    catalogue = pd.DataFrame(
        {
            "name": ["il6_pretoci_max", "platelets_min", "noise_0"],
            "monotone": [1, -1, 0],
        }
    )
    model = make_model(ModelConfig(type="xgboost", monotone=True), catalogue, seed=0)
    assert model.monotone_constraints == {"il6_pretoci_max": 1, "platelets_min": -1}
    with pytest.raises(ConfigError, match="catalogue"):
        make_model(ModelConfig(type="xgboost", monotone=True), None, seed=0)


def test_make_model_errors_name_the_parameter_and_list_valid_ones():
    with pytest.raises(ConfigError, match="max_dept") as err:
        make_model(ModelConfig(type="xgboost", params={"max_dept": 3}), None, seed=0)
    assert "max_depth" in str(err.value) and "learning_rate" in str(err.value)
    with pytest.raises(ConfigError, match="model.calibration"):
        make_model(ModelConfig(type="xgboost", params={"calibration": "none"}), None, seed=0)
    with pytest.raises(ConfigError, match="threshold_c"):
        make_model(ModelConfig(type="measix", params={"threshold_c": 39}), None, seed=0)
    bogus = ModelConfig.model_construct(type="svm", params={}, monotone=False, calibration="platt")
    with pytest.raises(ConfigError, match="svm"):
        make_model(bogus, None, seed=0)
