"""The MLflow pyfunc model: logged from code with signature and synthetic example (no pickle
in the exported folder), registered, loaded in a fresh process from
models:/crs-severity@champion, strict about malformed input; an older-format model is refused
with a message that says how to re-export it."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest_scoring import MALFORMED, logged, malformed, new_patients, setup
from mlflow.exceptions import MlflowException

import crs_ml.cli as cli
from crs_ml.ingest.records import cohort_to_records, records_to_cohort, synthetic_example
from crs_ml.scoring.score import score

CHAMPION = "models:/crs-severity@champion"


@pytest.fixture(scope="module")
def info(session_dir):
    return logged(session_dir)


@pytest.fixture(scope="module")
def records(session_dir):
    new = new_patients(session_dir)
    ids = list(new.cohort.patients["patient_id"][:12])
    return cohort_to_records(new.cohort, ids)


@pytest.fixture(scope="module")
def model(info):
    return mlflow.pyfunc.load_model(CHAMPION)


def test_champion_in_a_fresh_process_matches_the_python_function(
    info, records, session_dir, tmp_path
):
    src = tmp_path / "records.parquet"
    dst = tmp_path / "scores.parquet"
    records.to_parquet(src, index=False)
    code = (
        "import sys, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({CHAMPION!r})\n"
        "m.predict(pd.read_parquet(sys.argv[1])).to_parquet(sys.argv[2], index=False)\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    done = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    served = pd.read_parquet(dst)
    expected = score(setup(session_dir).bundle, records_to_cohort(records))
    assert list(served["patient_id"]) == list(expected["patient_id"])
    assert list(served.columns) == list(expected.columns)
    assert (served["status"] == expected["status"]).all()
    np.testing.assert_allclose(served["risk"], expected["risk"], rtol=0, atol=1e-9)
    shap = [c for c in expected.columns if c.startswith("shap_")]
    np.testing.assert_allclose(served[shap], expected[shap], rtol=0, atol=1e-9)
    assert (served["top_drivers"] == expected["top_drivers"]).all()
    np.testing.assert_array_equal(served["completeness"], expected["completeness"])
    bands = served["completeness_band"].fillna("")  # the file round trip: None -> NaN
    assert list(bands) == list(expected["completeness_band"].fillna(""))
    assert served.loc[served["status"] == "scored", "completeness_band"].notna().all()
    assert served["as_of"].isna().all()


def test_logged_with_signature_and_a_synthetic_example(info, session_dir):
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(info.model_uri)
    meta = Model.load(local)
    inputs = meta.signature.inputs.input_names()
    assert inputs == ["record", "patient_id", "hours", "variable", "value", "unit", "end_hours"]
    outputs = meta.signature.outputs.input_names()
    assert outputs[:5] == ["patient_id", "as_of", "hours_since_infusion", "landmark_h", "status"]
    assert len([o for o in outputs if o.startswith("shap_")]) == len(
        setup(session_dir).bundle.feature_names
    )
    assert {p.name for p in meta.signature.params} == {"as_of_hours", "strict"}
    example = meta.load_input_example(local)
    pd.testing.assert_frame_equal(example.reset_index(drop=True).astype(object),
                                  synthetic_example().astype(object), check_dtype=False)  # fmt: skip
    training_ids = set(setup(session_dir).cohort.patients["patient_id"])
    assert not training_ids & set(example["patient_id"])


def test_params_as_of_hours_and_lenient_mode(model, records):
    at24 = model.predict(records, params={"as_of_hours": 24.0})
    assert (at24["landmark_h"].dropna() == 24).all()
    latest = model.predict(records)
    assert (latest["landmark_h"] >= 24).all()
    bad = records.copy()
    row = int(np.flatnonzero(bad["record"] == "observation")[0])
    bad.loc[row, "unit"] = "mg/furlong"
    with pytest.raises(MlflowException, match="mg/furlong"):
        model.predict(bad)
    out = model.predict(bad, params={"strict": False})
    pid = bad.loc[row, "patient_id"]
    assert (
        out.set_index("patient_id")
        .loc[pid, "message"]
        .endswith(
            "1 input row rejected (listed in the errors file of crs-ml score, or by crs-ml check)"
        )
    )


@pytest.mark.parametrize(("kind", "column", "reason"), MALFORMED)
def test_malformed_input_is_an_invalid_parameter_naming_column_and_reason(
    model, records, kind, column, reason
):
    with pytest.raises(MlflowException) as info:
        model.predict(malformed(records, kind))
    err = info.value
    assert err.error_code == "INVALID_PARAMETER_VALUE"
    assert column in err.message and reason in err.message


def test_bundle_folder_and_loaded_model_resolve_to_the_same_bundle(model, session_dir):
    from crs_ml.tracking.models import resolve_model

    bundle = resolve_model(model)
    assert bundle.feature_names == setup(session_dir).bundle.feature_names
    text = json.dumps(bundle.manifest, default=str)
    assert not any(pid in text for pid in setup(session_dir).cohort.patients["patient_id"][:50])


def looks_like_pickle(path) -> bool:
    """A .pkl / .pickle file, or one starting with the pickle PROTO opcode (0x80) and a protocol
    byte 2 to 5 (what pickle and cloudpickle write since Python 3)."""
    if path.suffix.lower() in {".pkl", ".pickle"}:
        return True
    head = path.read_bytes()[:2]
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def test_exported_model_is_logged_from_code_and_no_file_is_a_pickle(info, tmp_path):
    folder = tmp_path / "exported"
    try:
        cli.main(["export", "--model", CHAMPION, "--out", str(folder)])
    except SystemExit as exc:
        assert not exc.code, exc.code
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert any(p.name == "booster.ubj" for p in files) and len(files) >= 6
    assert [p.relative_to(folder) for p in files if looks_like_pickle(p)] == []

    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"  # models from code
    assert "python_model" not in flavor  # where a cloudpickled PythonModel would be named
    code = folder / Path(flavor["model_code_path"]).name
    assert code.is_file()
    # the code file runs where the model is served: it may import only mlflow and crs_ml
    imported = set()
    for node in ast.walk(ast.parse(code.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == {"mlflow", "crs_ml"}
    assert "set_model(" in code.read_text()
    assert flavor["artifacts"]["bundle"]["path"] == "artifacts/bundle"


def test_looks_like_pickle_spots_what_cloudpickle_writes(tmp_path):
    import cloudpickle

    from crs_ml.tracking.pyfunc import CrsSeverityModel

    path = tmp_path / "python_model"
    path.write_bytes(cloudpickle.dumps(CrsSeverityModel()))
    assert looks_like_pickle(path)
    path.write_text('{"format_version": 2}')
    assert not looks_like_pickle(path) and looks_like_pickle(path.with_suffix(".pkl"))


def test_a_model_saved_the_old_way_is_refused_with_how_to_re_export(session_dir, tmp_path):
    """Format 1: a cloudpickled PythonModel next to a bundle whose manifest says format 1."""
    from crs_ml.errors import ModelError
    from crs_ml.modeling.bundle import MANIFEST
    from crs_ml.tracking.models import resolve_model
    from crs_ml.tracking.pyfunc import CrsSeverityModel

    bundle = shutil.copytree(setup(session_dir).bundle_dir, tmp_path / "bundle")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["format_version"] = 1
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    old = tmp_path / "old_model"
    mlflow.pyfunc.save_model(
        path=str(old), python_model=CrsSeverityModel(), artifacts={"bundle": str(bundle)}
    )
    assert any(looks_like_pickle(p) for p in old.rglob("*") if p.is_file())
    wanted = "model format 1 is older than format 2"
    with pytest.raises(ModelError, match=wanted) as refused:
        resolve_model(old)
    assert "re-export" in str(refused.value) and "crs-ml train --register" in str(refused.value)
    with pytest.raises(Exception, match=wanted):
        mlflow.pyfunc.load_model(str(old))
