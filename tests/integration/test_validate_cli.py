"""``crs-ml validate`` and ``crs-ml recalibrate`` end to end on simulated cohorts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from shared_bundle import build_bundle
from typer.testing import CliRunner

MODEL_NAME = "crs-severity-validate-test"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    from crs_ml.cli import reporting

    app = typer.Typer()
    reporting.register(app)
    return app


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def external(tmp_path_factory) -> Path:
    """Another site (D) and another product mix than the training cohort."""
    from crs_ml.simulate.params import default_params, with_products, with_sites
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    params = with_products(with_sites(default_params(), D=1), axi_cel=0.5, cilta_cel=0.5)
    out = tmp_path_factory.mktemp("external")
    write_cohort(simulate_cohort(300, seed=303, params=params), out)
    return out


@pytest.fixture(scope="module")
def registered(bundle_dir) -> str:
    """The bundle logged as a pyfunc and registered with alias 'candidate'."""
    import mlflow

    from crs_ml.tracking import store as tracking
    from crs_ml.tracking.pyfunc import log_pyfunc_model
    from crs_ml.tracking.runs import register_model

    tracking.setup_tracking(None, "crs-ml")
    with mlflow.start_run(run_name="validate-test-model"):
        uri = log_pyfunc_model(bundle_dir).model_uri
    register_model(uri, MODEL_NAME, alias="candidate")
    return f"models:/{MODEL_NAME}@candidate"


def _invoke(app, args: list[str]):
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_validate_bundle_folder_writes_self_contained_report(app, bundle_dir, external, tmp_path):
    import mlflow

    out = tmp_path / "report"
    args = ["validate", "--model", str(bundle_dir), "--data", str(external), "--out", str(out)]
    result = _invoke(app, [*args, "--landmarks", "24,48", "--bootstrap", "40"])
    assert "report.html" in result.output and "External validation" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    block = metrics["landmarks"]["24"]["overall"]
    assert block["n"] > 0 and len(block["auroc_ci"]) == 2
    assert {"untreated", "treated", "baselines", "subgroups"} <= set(metrics["landmarks"]["24"])
    assert "m-EASIX" in metrics["landmarks"]["24"]["baselines"]
    assert metrics["landmarks"]["24"]["training_landmark"] is True
    assert metrics["alerts"]["landmarks_h"] == [12.0, 24.0, 36.0, 48.0]
    assert metrics["cohort"]["sites"] == {"D": 300}
    # the product mix differs from training: the product one-hots must be flagged
    assert "product_cilta_cel" in metrics["drift"]["flagged_features"]
    assert "condition" in metrics["intervals_condition_on"]
    assert metrics["attrition"] and metrics["model_card"]["limitations"]

    page = (out / "report.html").read_text()
    external_refs = re.findall(r"""(?:src|href)\s*=\s*['"]?\s*(?:https?:)?//""", page, re.I)
    assert not external_refs, external_refs
    assert "<script" not in page.lower() and "@import" not in page
    assert page.count("data:image/png;base64,") >= 5
    for section in ("Attrition", "Calibration", "Decision curve", "SHAP", "Drift", "Model card"):
        assert section.lower() in page.lower(), section
    patient_ids = (external / "patients.csv").read_text().splitlines()[1].split(",")[0]
    assert patient_ids not in page and patient_ids not in (out / "metrics.json").read_text()

    run = mlflow.get_run(metrics["mlflow_run_id"])
    assert run.data.tags["run_type"] == "validation"
    assert run.data.tags["dataset_digest"] == metrics["cohort"]["dataset_digest"]
    assert "val_auroc_L24" in run.data.metrics
    assert {"metrics.json", "report.html"} <= {
        a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)
    }


def test_validate_registered_model_tags_the_version(app, registered, external, tmp_path):
    from mlflow import MlflowClient

    out = tmp_path / "report"
    args = ["validate", "--model", registered, "--data", str(external), "--out", str(out)]
    _invoke(app, [*args, "--landmarks", "24", "--bootstrap", "20"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["model_name"] == MODEL_NAME
    client = MlflowClient()
    version = client.get_model_version_by_alias(MODEL_NAME, "candidate")
    assert version.tags["last_validation_run"] == metrics["mlflow_run_id"]
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.data.tags["model_version"] == str(version.version)
    assert run.data.tags["model_uri"] == registered


def test_recalibrate_register_creates_a_new_version(app, registered, external, tmp_path):
    from mlflow import MlflowClient

    from crs_ml.modeling.bundle import load_bundle

    client = MlflowClient()
    before = {v.version for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    out = tmp_path / "recal"
    args = ["recalibrate", "--model", registered, "--data", str(external), "--out", str(out)]
    result = _invoke(app, [*args, "--register", "--method", "intercept", "--bootstrap", "20"])
    assert "registered" in result.output
    after = {v.version for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    new = after - before
    assert len(new) == 1
    mv = client.get_model_version(MODEL_NAME, new.pop())
    assert mv.tags["recalibrated_from"] == registered
    assert mv.tags["recalibration_method"] == "intercept"
    summary = json.loads((out / "recalibration.json").read_text())
    assert summary["evaluation"]["all"]["after"]["n"] > 0
    bundle = load_bundle(out / "bundle")
    assert bundle.manifest["recalibration"]["method"] == "intercept"
    page = (out / "recalibration.html").read_text()
    assert "held-out" in page and "<script" not in page.lower()
