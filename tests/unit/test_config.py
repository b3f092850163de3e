from pathlib import Path

import pytest

from crs_ml.config import (
    DEFAULT_LANDMARKS_H,
    DEFAULT_MODEL,
    DEFAULT_REPORT_LANDMARKS_H,
    config_from_dict,
    load_config,
    parse_override,
)
from crs_ml.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("name", "model_type"),
    [("default", "stack"), ("xgboost", "xgboost"), ("xgb_monotone", "xgboost"),
     ("logistic", "logistic"), ("measix", "measix"), ("fever_rule", "fever_rule"),
     ("additive", "additive"), ("compact_logistic", "additive"), ("stack", "stack")],
)  # fmt: skip
def test_shipped_configs_validate(name, model_type):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.type == model_type
    assert cfg.overrides == []


def test_the_default_is_the_stack_and_xgboost_yaml_the_previous_default():
    """Issue 15: the default model is the stack of configs/stack.yaml (same model section);
    configs/xgboost.yaml is the previous default: every other setting of the default, with
    the xgboost pipeline (DEFAULT_XGBOOST_PARAMS) as its model."""
    default = load_config(CONFIGS / "default.yaml").model_dump()
    assert default["model"] == load_config(CONFIGS / "stack.yaml").model_dump()["model"]
    assert default["model"] == config_from_dict({"model": DEFAULT_MODEL}).model.model_dump()
    assert list(default["model"]["members"]) == ["xgboost", "additive", "compact"]
    xgb = load_config(CONFIGS / "xgboost.yaml").model_dump()
    assert xgb["model"] == config_from_dict({"model": {"type": "xgboost"}}).model.model_dump()
    assert {k: v for k, v in xgb.items() if k != "model"} == {
        k: v for k, v in default.items() if k != "model"
    }


def test_a_model_section_without_type_is_laid_over_the_default_stack():
    cfg = load_config(None, ["model.inner_folds=3", "model.members.xgboost.max_depth=3"])
    assert cfg.model.type == "stack" and cfg.model.params["inner_folds"] == 3
    assert cfg.model.params["blend_rules"] == ["nnls"]
    assert cfg.model.members["xgboost"].params["max_depth"] == 3
    assert cfg.model.members["xgboost"].params["inner_folds"] == 0  # the rest as the default
    assert cfg.model.members["compact"].feature_set == "clinical_core"


def test_monotone_config_differs_from_the_xgboost_pipeline_only_in_monotone():
    a = load_config(CONFIGS / "xgboost.yaml").model_dump()
    b = load_config(CONFIGS / "xgb_monotone.yaml").model_dump()
    assert a["model"]["monotone"] is False and b["model"]["monotone"] is True
    a["model"]["monotone"] = True
    assert a == b


def test_defaults_are_6_to_168_hourly():
    cfg = load_config()  # issue 14: the grid covers day 7
    assert cfg.task.landmarks_h == DEFAULT_LANDMARKS_H == [float(h) for h in range(6, 169, 6)]
    assert cfg.task.horizon_h == 336


@pytest.mark.parametrize("name", [None, "default", "xgboost", "xgb_monotone", "logistic"])
def test_reporting_covers_days_1_to_5(name):
    """Issue 14: 72 h and 120 h are reported beside 24 h and 48 h (late onsets of 4-1BB
    products), by the defaults and by the shipped configs."""
    cfg = load_config(None if name is None else CONFIGS / f"{name}.yaml")
    assert cfg.cv.report_landmarks_h == DEFAULT_REPORT_LANDMARKS_H == [24.0, 48.0, 72.0, 120.0]


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  typo_key: 1\n")
    with pytest.raises(ConfigError, match="typo_key"):
        load_config(path)


def test_overrides_are_applied_and_recorded():
    cfg = load_config(CONFIGS / "xgboost.yaml", ["model.max_depth=5", "cv.folds=2", "seed=7"])
    assert cfg.model.params["max_depth"] == 5
    assert cfg.cv.folds == 2 and cfg.seed == 7
    assert cfg.overrides == ["model.max_depth=5", "cv.folds=2", "seed=7"]


def test_override_with_bad_value_names_the_field():
    with pytest.raises(ConfigError, match="cv.folds"):
        load_config(None, ["cv.folds=1"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("model.max_depth")


def test_landmarks_sorted_unique_and_positive():
    cfg = load_config(None, ["task.landmarks_h=[48, 24, 24]"])
    assert cfg.task.landmarks_h == [24.0, 48.0]
    with pytest.raises(ConfigError, match="landmark"):
        load_config(None, ["task.landmarks_h=[0, 24]"])


def test_risk_bands_ordered():
    with pytest.raises(ConfigError, match="high_from"):
        load_config(None, ["scoring.low_below=0.5", "scoring.high_from=0.2"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_builtin_defaults_equal_configs_default_yaml():
    """`crs-ml train` without --config trains exactly what configs/default.yaml spells out."""
    assert load_config().model_dump() == load_config(CONFIGS / "default.yaml").model_dump()


def test_xgboost_params_are_laid_over_the_defaults():
    from crs_ml.config import DEFAULT_XGBOOST_PARAMS

    cfg = config_from_dict({"model": {"type": "xgboost"}}, ["model.max_depth=4"])
    assert cfg.model.params == {**DEFAULT_XGBOOST_PARAMS, "max_depth": 4}
    logistic = load_config(CONFIGS / "logistic.yaml")
    assert logistic.model.params == {"C": 0.1}  # other model types get no xgboost defaults


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.max_depth=abc", "--set model.max_depth=abc: model.params.max_depth must be a "
         "valid integer"),
        ("model.learning_rate=-1", "--set model.learning_rate=-1: model.params.learning_rate "
         "must be greater than 0"),
        ("model.params.subsample=1.5", "model.params.subsample must be less than or equal to 1"),
        ("model.inner_folds=-1", "model.params.inner_folds must be greater than or equal to 0"),
        ("cv.repeat=2", "--set cv.repeat=2: unknown setting; did you mean 'cv.repeats'?"),
        ("sed=3", "did you mean 'seed'?"),
        ("learning_rate=0.1", "did you mean 'model.learning_rate'?"),
        ("cv.validation=boot", "cv.validation must be 'cv' or 'optimism'"),
    ],
)  # fmt: skip
def test_bad_overrides_are_one_line_naming_key_value_and_what_is_allowed(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "xgboost.yaml", [override])
    message = str(err.value)
    assert expected in message and "\n" not in message


def test_hyperparameters_of_other_model_types_are_checked_too(tmp_path):
    with pytest.raises(ConfigError, match="model.params.C must be greater than 0"):
        load_config(CONFIGS / "logistic.yaml", ["model.C=0"])
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  type: fever_rule\n  params: {threshold_c: 99}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: model.params.threshold_c must be less than "
                       r"or equal to 43 \(got 99\)"):  # fmt: skip
        load_config(path)
    assert (
        load_config(CONFIGS / "xgboost.yaml", ["model.max_depth=4"]).model.params["max_depth"] == 4
    )


def test_variable_aliases_must_name_catalogue_variables():
    cfg = load_config(None, ["data.variable_aliases={'Ferritin, serum': ferritin}"])
    assert cfg.data.variable_aliases == {"Ferritin, serum": "ferritin"}
    with pytest.raises(ConfigError, match="not a catalogue variable; did you mean 'ferritin'"):
        load_config(None, ["data.variable_aliases={'Ferritin, serum': feritin}"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [("model.max_depth=3", "--set model.max_depth=3: model.params max_depth: not a parameter "
      "of model type 'stack'"),
     ("model.max_depth=3", "e.g. model.members.xgboost.params.max_depth"),
     ("model.members.xgboost.max_depth=abc", "--set model.members.xgboost.max_depth=abc: "
      "model.members.xgboost.params.max_depth must be a valid integer"),
     ("model.blend_rules=[best]", "model.params.blend_rules.0 must be 'equal', 'nnls', "
      "'single' or 'shrunk'")],
)  # fmt: skip
def test_bad_overrides_of_the_default_stack_name_the_member_to_set(override, expected):
    """An xgboost hyperparameter set on the default (a stack) is an error that says where a
    member's hyperparameters go, before any data is read."""
    for path in (None, CONFIGS / "default.yaml"):
        with pytest.raises(ConfigError) as err:
            load_config(path, [override])
        assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "uri",
    ["postgresql://crs:S3cretPW@db.example:5432/mlflow", "https://mlflow.example/?token=S3cretPW"],
)
def test_a_tracking_uri_with_a_password_is_refused_without_echoing_it(uri, tmp_path):
    from crs_ml.config import config_from_dict

    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_PASSWORD") as on_line:
        load_config(overrides=[f"mlflow.tracking_uri={uri}"])
    with pytest.raises(ConfigError, match="PGPASSWORD") as in_file:
        config_from_dict({"mlflow": {"tracking_uri": uri}}, source="site.yaml")
    for err in (on_line, in_file):
        assert "S3cretPW" not in str(err.value) and "tracking_uri" in str(err.value)
    ok = "postgresql://crs@db.example:5432/mlflow"  # password from PGPASSWORD or ~/.pgpass
    assert load_config(overrides=[f"mlflow.tracking_uri={ok}"]).mlflow.tracking_uri == ok


def test_a_password_from_the_environment_is_never_shown():
    from crs_ml.tracking.store import shown_uri

    assert shown_uri("postgresql://crs:S3cretPW@db:5432/m") == "postgresql://crs:***@db:5432/m"
    assert shown_uri("https://h/?access_token=S3&x=1") == "https://h/?access_token=***&x=1"
    assert shown_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    for uri in ("https://h/?api_key=S3", "https://h/?AccessToken=S3", "https://h/?sig=S3"):
        with pytest.raises(ConfigError):
            load_config(overrides=[f"mlflow.tracking_uri={uri}"])
