"""No patient identifier or raw value reaches the MLflow store (database or artifacts)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crs_ml.cli import main

MARK_VALUE = "98765.4321"  # one IL-6 result nobody else has


@pytest.fixture(scope="module")
def marked_cohort(tmp_path_factory):
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp("marked")
    tables = simulate_cohort(300, seed=41)
    ids = {pid: f"MRN-ZQX{i:05d}" for i, pid in enumerate(tables["patients"]["patient_id"])}
    for name, table in tables.items():
        if table is not None and "patient_id" in table:
            table["patient_id"] = table["patient_id"].map(ids)
        if name == "patients" and "person_id" in table:
            table["person_id"] = table["patient_id"].str.replace("MRN", "PERSON")
    obs = tables["observations"]
    row = obs.index[obs["variable"].astype(str).eq("il6")][0]
    obs.loc[row, "value"] = MARK_VALUE
    write_cohort(tables, out)
    return out, sorted(ids.values())


def _strings_in_parquet(path) -> str:
    frame = pd.read_parquet(path)
    return " ".join(frame.astype(str).to_numpy().ravel()) + " " + " ".join(frame.columns)


def test_store_holds_no_identifier_or_raw_value(marked_cohort, tmp_path, monkeypatch):
    cohort_dir, ids = marked_cohort
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    out = tmp_path / "run.json"
    main(
        [
            "train",
            "--data",
            str(cohort_dir),
            "--experiment",
            "privacy",
            "--alias",
            "champion",
            # the xgboost pipeline (the default before issue 15), which the 20 trees shrink
            "--config",
            "configs/xgboost.yaml",
            "--set",
            "cv.folds=2",
            "--set",
            "cv.repeats=1",
            "--set",
            "cv.bootstrap=20",
            "--set",
            "model.n_estimators=20",
            "--set",
            "task.landmarks_h=[24]",
            "--set",
            "cv.report_landmarks_h=[24]",
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["run_id"]

    files = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".png" for p in files)
    assert any(p.name == "bundle.json" for p in files)
    scanned = 0
    for path in files:
        text = path.read_bytes().decode("latin-1")
        if path.suffix == ".parquet":
            text += _strings_in_parquet(path)  # compressed pages hide plain bytes
        for pid in ids:
            assert pid not in text, f"patient id {pid} found in {path.relative_to(store)}"
        assert "MRN-ZQX" not in text and "PERSON-ZQX" not in text, path
        assert MARK_VALUE not in text and "98765.43" not in text, path
        scanned += 1
    assert scanned >= 10
