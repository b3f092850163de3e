"""Exact SHAP in calibrated log-odds (crs_ml.modeling.explain) and the driver text (crs_ml.scoring.drivers)."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from crs_ml.config import Config
from crs_ml.features.catalogue import feature_catalogue
from crs_ml.modeling.bundle import Bundle, load_bundle, save_bundle
from crs_ml.modeling.estimators import FeverRuleModel, LogisticRiskModel, MEasixModel, XGBRiskModel
from crs_ml.modeling.explain import explain
from crs_ml.scoring.drivers import format_number, format_value, top_drivers


@pytest.fixture(scope="module")
def data():
    catalogue = feature_catalogue(Config().features)
    names = list(catalogue["name"])
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(500, len(names))), columns=names)
    X["measix_landmark"] = np.exp(rng.normal(1.0, 1.0, len(X)))
    X["measix_baseline"] = np.exp(rng.normal(0.5, 1.0, len(X)))
    X["temperature_max_early"] = rng.normal(38.3, 0.6, len(X))
    X.iloc[::5, 0] = np.nan
    X.loc[X.index[::4], "measix_landmark"] = np.nan
    eta = 1.5 * X["il6_last"].to_numpy() + 0.8 * np.log(X["measix_landmark"].fillna(1)) - 2
    y = (rng.random(len(X)) < expit(eta)).astype(int)
    groups = np.repeat(np.arange(250), 2)
    return catalogue, names, X, y, groups


def _bundle(model, names, model_type="other", calibration=None):
    manifest = {
        "model_type": model_type,
        "feature_names": names,
        "calibration": calibration or {"method": "none", "slope": 1.0, "intercept": 0.0},
    }
    return Bundle(manifest=manifest, estimator=model)


def test_xgboost_shap_adds_up_to_the_calibrated_logit(tmp_path, data):
    import xgboost as xgb

    catalogue, names, X, y, groups = data
    model = XGBRiskModel(n_estimators=40, max_depth=3, n_jobs=1, random_state=0)
    model.fit(X, y, groups=groups)
    cfg = Config()
    folder = save_bundle(model, tmp_path / "b", model_type="xgboost", feature_names=names,
                         catalogue=catalogue, config=cfg.model_dump(mode="json"))  # fmt: skip
    bundle = load_bundle(folder)
    ex = explain(bundle, X)
    assert ex.supported and ex.contributions.shape == (len(X), len(names))
    np.testing.assert_allclose(ex.base_value + ex.contributions.sum(axis=1), ex.logit, atol=1e-9)
    # the booster's own calibrated risk, up to xgboost's float32 accumulation
    np.testing.assert_allclose(ex.risk, bundle.predict_risk(X), atol=1e-5)
    np.testing.assert_allclose(logit(ex.risk), ex.logit, atol=1e-6)
    raw = bundle.booster.predict(
        xgb.DMatrix(X[names].to_numpy(), missing=np.nan, feature_names=names), pred_contribs=True
    )
    # computed in float64 from xgboost's float32 trees (crs_ml.modeling.treeshap): equal to
    # xgboost's float32 sums up to their rounding (~1e-7 absolute), not bit for bit
    np.testing.assert_allclose(ex.contributions, raw[:, :-1] * model.platt_slope_, rtol=1e-6,
                               atol=1e-6)  # fmt: skip
    assert np.ptp(ex.base_value) == 0
    importance = np.abs(ex.contributions).mean(axis=0)
    assert names[int(np.argmax(importance))] == "il6_last"


def test_logistic_shap_is_exact_and_centred_on_training_rows(data):
    _, names, X, y, _ = data
    model = LogisticRiskModel(C=0.5).fit(X, y)
    ex = explain(_bundle(model, names, "logistic"), X)
    assert ex.supported
    np.testing.assert_allclose(ex.base_value + ex.contributions.sum(axis=1),
                               model.decision_function(X), atol=1e-9)  # fmt: skip
    np.testing.assert_allclose(ex.risk, model.predict_proba(X)[:, 1], atol=1e-12)
    # linear SHAP with the training rows as background: every feature averages to zero there
    np.testing.assert_allclose(ex.contributions.mean(axis=0), 0, atol=1e-9)
    # a missing value is explained through its imputed value and its missing indicator, both
    # credited to the feature: one fixed contribution for every patient missing it
    missing = X["il6_baseline"].isna().to_numpy()
    assert np.ptp(ex.contributions[missing, 0]) < 1e-12
    assert np.ptp(ex.contributions[~missing, 0]) > 0.01


def test_measix_shap_goes_to_the_column_that_was_used(data):
    _, names, X, y, _ = data
    model = MEasixModel().fit(X, y)
    ex = explain(_bundle(model, names, "measix"), X)
    np.testing.assert_allclose(ex.risk, model.predict_proba(X)[:, 1], atol=1e-12)
    np.testing.assert_allclose(ex.base_value + ex.contributions.sum(axis=1), ex.logit, atol=1e-12)
    on_landmark = X["measix_landmark"].notna().to_numpy()
    lm = ex.contributions[:, names.index("measix_landmark")]
    bl = ex.contributions[:, names.index("measix_baseline")]
    assert np.all(bl[on_landmark] == 0) and np.all(lm[~on_landmark] == 0)
    assert np.any(lm != 0) and np.any(bl != 0)
    others = np.delete(ex.contributions, [names.index("measix_landmark"),
                                          names.index("measix_baseline")], axis=1)  # fmt: skip
    assert np.all(others == 0)


def test_fever_rule_shap_centres_on_the_training_rate(data):
    _, names, X, y, _ = data
    model = FeverRuleModel(threshold_c=38.5).fit(X, y)
    ex = explain(_bundle(model, names, "fever_rule"), X)
    np.testing.assert_allclose(ex.risk, model.predict_proba(X)[:, 1], atol=1e-12)
    j = names.index("temperature_max_early")
    np.testing.assert_allclose(ex.contributions[:, j].mean(), 0, atol=1e-12)
    assert np.count_nonzero(ex.contributions) == np.count_nonzero(ex.contributions[:, j])


def test_unknown_estimator_gives_no_shap_but_a_risk(data):
    from sklearn.dummy import DummyClassifier

    _, names, X, y, _ = data
    model = DummyClassifier(strategy="prior").fit(X, y)
    ex = explain(_bundle(model, names), X)
    assert not ex.supported and "no exact SHAP" in ex.note
    assert np.isnan(ex.contributions).all() and np.isnan(ex.base_value).all()
    np.testing.assert_allclose(ex.risk, y.mean(), atol=1e-12)


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (1240.0, "1,240"),
        (1240.4, "1,240"),
        (38.94, "38.9"),
        (40.0, "40"),
        (1.5, "1.5"),
        (1.234, "1.23"),
        (0.1234, "0.123"),
        (0.0, "0"),
        (-2.5, "-2.5"),
        (123456.7, "123,457"),
        (float("nan"), "not measured"),
    ],  # fmt: skip
)
def test_format_number(x, text):
    assert format_number(x) == text


def test_format_value_units_and_kinds():
    assert format_value("il6_max", 1240.0) == "1,240 pg/mL"
    assert format_value("temperature_last", 38.94) == "38.9 °C"
    assert format_value("il6_change", np.log(3.2)) == "x3.2"
    assert format_value("crp_slope_24h", 0.5) == "+0.5 mg/L/h"
    assert format_value("febrile_now", 1.0) == "yes"
    assert format_value("oxygen_level", 2.0) == "high flow"
    assert format_value("platelets_min", np.nan) == "not measured"


def test_top_drivers_order_values_and_shap():
    names = ["il6_max", "crp_last", "febrile_now", "age_years"]
    X = pd.DataFrame([[1240.0, 85.0, 1.0, 61.0], [3.0, np.nan, 0.0, 40.0]], columns=names)
    shap = np.array([[0.92, -0.31, 0.5, 0.0], [0.0, 0.0, -0.2, 0.0]])
    out = top_drivers(X, shap, names, np.array([24.0, 6.0]), n=3)
    assert out[0] == ("IL-6 max to 24h = 1,240 pg/mL (+0.92); febrile now = yes (+0.50); "
                      "CRP latest = 85 mg/L (-0.31)")  # fmt: skip
    # zero contributions are never listed
    assert out[1] == "febrile now = no (-0.20)"
    assert list(top_drivers(X, np.full((2, 4), np.nan), names, np.array([24.0, 6.0]))) == ["", ""]
