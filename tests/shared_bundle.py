"""A small trained model bundle shared by the validation and recalibration tests.

Built once per test session under pytest's base temporary folder (never the working tree);
whichever test module needs it first builds it.
"""

from __future__ import annotations

from pathlib import Path

#: the xgboost pipeline (the default before issue 15): the tests read its booster
XGBOOST_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "xgboost.yaml"

OVERRIDES = [
    "cv.folds=2",
    "cv.repeats=1",
    "cv.bootstrap=0",
    "task.landmarks_h=[12, 24, 36, 48]",
    "cv.report_landmarks_h=[24]",
    "model.n_estimators=60",
    "model.early_stopping_rounds=10",
]


def build_bundle(base: Path) -> Path:
    """A small trained xgboost bundle (sites A-C), built once per test session."""
    folder = base / "crs_validate_bundle"
    if (folder / "bundle.json").is_file():
        return folder
    from crs_ml import fingerprints
    from crs_ml.config import load_config
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.train import train_model
    from crs_ml.simulate.params import default_params, with_sites
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    params = with_sites(default_params(), A=0.4, B=0.3, C=0.3)
    write_cohort(simulate_cohort(400, seed=101, params=params), base / "train_cohort")
    cohort = load_cohort(base / "train_cohort")
    cfg = load_config(XGBOOST_CONFIG, OVERRIDES)
    res = train_model(cohort, cfg)
    fp = fingerprints.data_fingerprint(cohort, res.y, res.meta)
    res.save(
        folder,
        fingerprint={**fp, "features": fingerprints.feature_fingerprint(res.X)},
        extra={"metrics": res.metrics, "dataset_digest": fingerprints.dataset_digest(fp)},
    )
    return folder


#: a small, fast default stack: the members of configs/default.yaml with light settings
LIGHT_STACK = {
    "type": "stack",
    "params": {"inner_folds": 3},
    "members": {
        "xgboost": {
            "type": "xgboost",
            "params": {"n_estimators": 30, "inner_folds": 0, "early_stopping_rounds": None,
                       "n_jobs": 1},
        },
        "additive": {"type": "additive", "params": {"spline_knots": 3, "C_grid": [0.003, 0.03],
                                                    "inner_folds": 3}},
        "compact": {"type": "additive", "feature_set": "clinical_core",
                    "params": {"spline_knots": 0, "C_grid": [0.01, 0.1], "inner_folds": 3}},
    },
}  # fmt: skip
STACK_OVERRIDES = [
    "cv.folds=2",
    "cv.repeats=1",
    "cv.bootstrap=0",
    "task.landmarks_h=[12, 24, 48]",
    "cv.report_landmarks_h=[24]",
    "task.windows_h=[24]",  # one short horizon: a stack per window, kept by recalibration
]


def build_stack_bundle(base: Path) -> Path:
    """A small trained stack bundle (the default family, light members), built once per
    test session."""
    folder = base / "crs_stack_bundle"
    if (folder / "bundle.json").is_file():
        return folder
    from crs_ml.config import config_from_dict
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.train import train_model
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    write_cohort(simulate_cohort(400, seed=103), base / "stack_train_cohort")
    cohort = load_cohort(base / "stack_train_cohort")
    res = train_model(cohort, config_from_dict({"model": LIGHT_STACK}, STACK_OVERRIDES))
    res.save(folder)
    return folder
