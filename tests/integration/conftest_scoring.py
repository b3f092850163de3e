"""Shared set-up of the scoring tests: one small simulated cohort and one trained model.

Imported by tests/model/test_score.py and tests/integration/test_{score_cli,pyfunc,serving,
spark}.py. Everything is built once per test process (module-level cache) under the
session's temporary folder and MLflow store (tests/conftest.py), never in the working tree:

* ``setup(session_dir)``: 300 simulated training patients (seed fixed) written as CSV,
  loaded, an XGBRiskModel (the xgboost pipeline of configs/xgboost.yaml with 40 trees, no
  early stopping, so the model is never degenerate) trained with light CV and saved as a
  bundle;
* ``logged(session_dir)``: that training run logged to MLflow and registered as
  crs-severity with alias champion (``point_champion`` re-points the alias to it, in case
  another test of the session registered its own version);
* ``new_patients(session_dir)``: 40 other simulated patients (another seed, so other ids).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

TRAIN_PATIENTS = 300
TRAIN_SEED = 12
NEW_PATIENTS = 40
NEW_SEED = 4343
OVERRIDES = [
    "cv.folds=2",
    "cv.repeats=1",
    "cv.bootstrap=0",
    "model.n_estimators=40",
    "model.early_stopping_rounds=null",
    "model.max_depth=2",
    "model.learning_rate=0.1",
    "model.n_jobs=1",
    "mlflow.experiment=scoring-tests",
]
#: the xgboost pipeline (the default before issue 15): the scoring tests read its booster
XGBOOST_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "xgboost.yaml"
_CACHE: dict[str, object] = {}


def setup(session_dir: Path) -> SimpleNamespace:
    """Training cohort, fitted result and saved bundle (built once)."""
    if "setup" not in _CACHE:
        from crs_ml.config import load_config
        from crs_ml.ingest.load import load_cohort
        from crs_ml.modeling.bundle import load_bundle
        from crs_ml.modeling.train import train_model
        from crs_ml.simulate.simulator import simulate_cohort, write_cohort

        root = Path(session_dir) / "scoring"
        data = root / "train"
        write_cohort(simulate_cohort(TRAIN_PATIENTS, TRAIN_SEED), data)
        cohort = load_cohort(data)
        cfg = load_config(XGBOOST_CONFIG, OVERRIDES)
        result = train_model(cohort, cfg)
        folder = result.save(root / "bundle")
        _CACHE["setup"] = SimpleNamespace(
            root=root,
            data=data,
            cohort=cohort,
            result=result,
            config=cfg,
            bundle_dir=folder,
            bundle=load_bundle(folder),
        )
    return _CACHE["setup"]


def logged(session_dir: Path):
    """The training run logged to the session's MLflow store and registered (champion)."""
    if "logged" not in _CACHE:
        from crs_ml.tracking.runs import log_training_run

        s = setup(session_dir)
        _CACHE["logged"] = log_training_run(s.result, s.cohort, register=True, alias="champion")
    info = _CACHE["logged"]
    point_champion(info)
    return info


def point_champion(info) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias("crs-severity", "champion", info.registered_version)


def new_patients(session_dir: Path) -> SimpleNamespace:
    """Another simulated cohort (new ids), as CSV files and loaded."""
    if "new" not in _CACHE:
        from crs_ml.ingest.load import load_cohort
        from crs_ml.simulate.simulator import simulate_cohort, write_cohort

        folder = Path(session_dir) / "scoring" / "new"
        tables = simulate_cohort(NEW_PATIENTS, NEW_SEED)
        tables.pop("truth", None)
        tables.pop("outcomes", None)
        write_cohort(tables, folder)
        _CACHE["new"] = SimpleNamespace(data=folder, cohort=load_cohort(folder))
    return _CACHE["new"]


def with_bad_units(new: SimpleNamespace, folder: Path, row: int, n_rows: int) -> str:
    """``new``'s CSV files copied to ``folder``, with ``n_rows`` more observation rows of the
    patient of observation ``row`` in an unknown unit (mg/furlong); returns that patient."""
    import shutil

    import pandas as pd

    shutil.copytree(new.data, folder)
    obs = pd.read_csv(folder / "observations.csv", dtype=str, keep_default_na=False)
    pid = obs["patient_id"].iloc[row]
    bad = obs[obs["patient_id"] == pid].head(n_rows).assign(unit="mg/furlong")
    pd.concat([obs, bad], ignore_index=True).to_csv(folder / "observations.csv", index=False)
    return pid


#: malformed one-table inputs: (kind, the column the message must name, the reason it must give)
MALFORMED = [
    ("missing column", "variable", "missing inputs"),
    ("unknown unit", "unit", "unknown unit 'furlongs'"),
    ("unparseable hours", "hours", "convert column hours"),
    ("unknown record type", "record", "unknown record type 'vital_sign'"),
]


def malformed(records, kind: str):
    """``records`` (the one-table model input) broken in the way ``kind`` of MALFORMED says."""
    import numpy as np

    bad = records.copy()
    obs = int(np.flatnonzero(bad["record"] == "observation")[2])
    if kind == "missing column":
        return bad.drop(columns="variable")
    if kind == "unknown unit":
        bad.loc[obs, "unit"] = "furlongs"
    elif kind == "unparseable hours":
        bad["hours"] = bad["hours"].astype(object)
        bad.loc[obs, "hours"] = "yesterday"
    elif kind == "unknown record type":
        bad.loc[obs, "record"] = "vital_sign"
    return bad
