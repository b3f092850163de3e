"""The model bundle: native xgboost format, exact round trip, refusal of changed files."""

import json

import numpy as np
import pandas as pd
import pytest

from crs_ml.config import Config
from crs_ml.errors import ModelError
from crs_ml.features.catalogue import feature_catalogue
from crs_ml.modeling.bundle import BOOSTER_FILE, MANIFEST, load_bundle, save_bundle
from crs_ml.modeling.estimators import make_model


@pytest.fixture(scope="module")
def data():
    cfg = Config()
    catalogue = feature_catalogue(cfg.features)
    names = list(catalogue["name"])
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(600, len(names))), columns=names)
    X.iloc[::7, 3] = np.nan
    risk = 1 / (1 + np.exp(-(X.iloc[:, 0] * 1.5 - 2)))
    y = (rng.random(len(X)) < risk).astype(int)
    groups = np.repeat(np.arange(300), 2)
    return cfg, catalogue, X, y.to_numpy() if hasattr(y, "to_numpy") else y, groups


def _save(model, tmp_path, cfg, catalogue, X, model_type):
    return save_bundle(
        model,
        tmp_path / "bundle",
        model_type=model_type,
        feature_names=list(X.columns),
        catalogue=catalogue,
        config=cfg.model_dump(mode="json"),
        fingerprint={"n_patients": 300},
    )


def test_xgboost_round_trip_is_exact_and_not_pickled(tmp_path, data):
    cfg, catalogue, X, y, groups = data
    cfg.model.params = {"n_estimators": 40, "max_depth": 2}
    model = make_model(cfg.model, catalogue, 0).fit(X, y, groups=groups)
    folder = _save(model, tmp_path, cfg, catalogue, X, "xgboost")
    assert (folder / BOOSTER_FILE).is_file()
    assert not list(folder.glob("*.pkl")) and not list(folder.glob("*.skops"))
    bundle = load_bundle(folder)
    np.testing.assert_allclose(
        bundle.predict_risk(X), model.predict_proba(X)[:, 1], rtol=0, atol=1e-12
    )
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["calibration"]["method"] == "platt"
    assert manifest["feature_names"] == list(X.columns)


def test_logistic_round_trip(tmp_path, data):
    cfg, catalogue, X, y, groups = data
    cfg.model.type = "logistic"
    cfg.model.params = {"C": 0.5}
    model = make_model(cfg.model, catalogue, 0).fit(X, y, groups=groups)
    bundle = load_bundle(_save(model, tmp_path, cfg, catalogue, X, "logistic"))
    np.testing.assert_allclose(bundle.predict_risk(X), model.predict_proba(X)[:, 1], atol=1e-12)


@pytest.fixture
def xgb_folder(tmp_path, data):
    cfg, catalogue, X, y, groups = data
    cfg.model.type = "xgboost"
    cfg.model.params = {"n_estimators": 10, "max_depth": 2}
    model = make_model(cfg.model, catalogue, 0).fit(X, y, groups=groups)
    return _save(model, tmp_path, cfg, catalogue, X, "xgboost")


def test_changed_file_is_refused(xgb_folder):
    with open(xgb_folder / BOOSTER_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="SHA-256"):
        load_bundle(xgb_folder)


def test_other_xgboost_major_is_refused(xgb_folder):
    manifest = json.loads((xgb_folder / MANIFEST).read_text())
    manifest["versions"]["xgboost"] = "1.7.6"
    (xgb_folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="xgboost 1.7.6.*re-train"):
        load_bundle(xgb_folder)


def test_unknown_feature_schema_is_refused(xgb_folder):
    manifest = json.loads((xgb_folder / MANIFEST).read_text())
    manifest["feature_names"][0] = "il6_from_the_future"
    (xgb_folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="il6_from_the_future"):
        load_bundle(xgb_folder)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelError, match="not a crs_ml model folder"):
        load_bundle(tmp_path)
