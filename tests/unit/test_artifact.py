"""The model bundle: native xgboost format, exact round trip, refusal of changed files and of
other format versions, no pickle in any file."""

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from crs_ml.config import Config
from crs_ml.errors import ModelError
from crs_ml.features.catalogue import feature_catalogue
from crs_ml.modeling.bundle import (
    BOOSTER_FILE,
    ESTIMATOR_FILE,
    FORMAT_CHANGES,
    FORMAT_VERSION,
    MANIFEST,
    load_bundle,
    save_bundle,
)
from crs_ml.modeling.estimators import make_model


@pytest.fixture(scope="module")
def data():
    cfg = Config(model={"type": "xgboost"})  # the xgboost pipeline (configs/xgboost.yaml)
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


def test_model_saved_before_feature_variables_reads_the_twelve_it_used(tmp_path):
    """A format-2 model saved before ``features.variables`` existed used the 12 core
    variables; loading it must not switch it to every catalogue variable."""
    from crs_ml.variables import CORE_VARIABLES, VARIABLES

    cfg = Config(model={"type": "xgboost"})  # the xgboost pipeline (configs/xgboost.yaml)
    cfg.features.variables = list(CORE_VARIABLES)
    catalogue = feature_catalogue(cfg.features)
    names = list(catalogue["name"])
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(200, len(names))), columns=names)
    y = (X.iloc[:, 0] + rng.normal(size=200) > 1).astype(int).to_numpy()
    cfg.model.params = {"n_estimators": 5, "max_depth": 2}
    model = make_model(cfg.model, catalogue, 0).fit(X, y, groups=np.arange(200))
    folder = _save(model, tmp_path, cfg, catalogue, X, "xgboost")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["config"]["features"].pop("variables")
    (folder / MANIFEST).write_text(json.dumps(manifest))
    bundle = load_bundle(folder)
    assert bundle.manifest["config"]["features"]["variables"] == list(CORE_VARIABLES)
    assert len(CORE_VARIABLES) == 12 < len(VARIABLES)
    np.testing.assert_allclose(bundle.predict_risk(X), model.predict_proba(X)[:, 1], atol=1e-12)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelError, match="not a crs_ml model folder"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("found", [1, None, "1"])
def test_older_format_is_refused_with_what_changed_and_how_to_re_export(xgb_folder, found):
    manifest = json.loads((xgb_folder / MANIFEST).read_text())
    if found is None:
        del manifest["format_version"]
    else:
        manifest["format_version"] = found
    (xgb_folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError) as info:
        load_bundle(xgb_folder)
    text = str(info.value)
    assert f"model format {found} is older than format {FORMAT_VERSION}" in text
    assert FORMAT_CHANGES[FORMAT_VERSION] in text  # what changed: no pickled Python object
    assert "re-export" in text and "crs-ml train --register" in text and "crs-ml export" in text


def test_newer_format_is_refused_asking_for_the_training_version(xgb_folder):
    manifest = json.loads((xgb_folder / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (xgb_folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=f"format {FORMAT_VERSION + 1} is newer.*install"):
        load_bundle(xgb_folder)


def test_saved_bundles_are_the_current_format_and_hold_no_pickle(tmp_path, data):
    """Every file of an xgboost and a logistic bundle, and every member of the skops zip,
    is free of a pickle header; the skops arrays are not object arrays (which need pickle)."""
    cfg, catalogue, X, y, groups = data
    for model_type, params in (("xgboost", {"n_estimators": 10, "max_depth": 2}),
                               ("logistic", {"C": 0.5})):  # fmt: skip
        cfg.model.type = model_type
        cfg.model.params = params
        model = make_model(cfg.model, catalogue, 0).fit(X, y, groups=groups)
        folder = _save(model, tmp_path / model_type, cfg, catalogue, X, model_type)
        manifest = json.loads((folder / MANIFEST).read_text())
        assert manifest["format_version"] == FORMAT_VERSION
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        assert {p.name for p in files} == {MANIFEST, BOOSTER_FILE if model_type == "xgboost"
                                           else ESTIMATOR_FILE}  # fmt: skip
        for path in files:
            assert not looks_like_pickle(path.read_bytes()), path.name
        if model_type == "logistic":
            with zipfile.ZipFile(folder / ESTIMATOR_FILE) as archive:
                for member in archive.namelist():
                    data_bytes = archive.read(member)
                    assert not looks_like_pickle(data_bytes), member
                    if member.endswith(".npy"):
                        array = np.load(io.BytesIO(data_bytes), allow_pickle=False)
                        assert array.dtype != object, member


def looks_like_pickle(data: bytes) -> bool:
    """A pickle of protocol 2 to 5 starts with the PROTO opcode 0x80 and its protocol byte."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def test_looks_like_pickle_spots_real_pickles():
    import pickle

    for protocol in range(2, 6):
        assert looks_like_pickle(pickle.dumps({"a": [1, 2]}, protocol=protocol))
    assert not looks_like_pickle(b'{"format_version": 2}')


@pytest.mark.parametrize(
    ("model_type", "params"),
    [("logistic", {"C": 0.5}), ("additive", {"C_grid": [0.1], "spline_knots": 0})],
)
def test_a_site_map_applies_to_families_without_a_platt_map(tmp_path, data, model_type, params):
    """Issue 15: every family is a margin and a calibration map; the logistic and additive
    models carry the identity map of their own log-odds until a site recalibrates it, and
    then their risk and exact SHAP follow the new map (base + sum(shap) = logit(risk))."""
    from scipy.special import logit

    from crs_ml.modeling.bundle import write_recalibrated_bundle
    from crs_ml.modeling.explain import explain

    cfg, catalogue, X, y, groups = data
    cfg = cfg.model_copy(deep=True)
    cfg.model.type = model_type
    cfg.model.params = params
    model = make_model(cfg.model, catalogue, 0).fit(X, y, groups=groups)
    folder = _save(model, tmp_path / model_type, cfg, catalogue, X, model_type)
    original = load_bundle(folder)
    margin = original.predict_margin(X)
    np.testing.assert_array_equal(original.predict_logit(X), margin)  # the identity map
    new_dir = write_recalibrated_bundle(folder, tmp_path / "recal", 0.5, 0.3, {"method": "x"})
    new = load_bundle(new_dir)
    assert new.manifest["calibration"]["method"] == "site_x"
    np.testing.assert_array_equal(new.predict_margin(X), margin)
    np.testing.assert_allclose(new.predict_logit(X), 0.5 * margin + 0.3, atol=1e-12)
    ex, old = explain(new, X), explain(original, X)
    assert ex.supported
    np.testing.assert_allclose(ex.logit, logit(new.predict_risk(X)), atol=1e-6)
    np.testing.assert_allclose(ex.base_value + ex.contributions.sum(axis=1), ex.logit, atol=1e-9)
    np.testing.assert_allclose(ex.contributions, 0.5 * old.contributions, atol=1e-12)
