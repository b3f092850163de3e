"""``crs-ml validate`` and ``crs-ml recalibrate`` end to end on simulated cohorts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
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
    # the short horizons beside day 14 in the censored section
    for horizon in ("next 24 h", "next 72 h", "by day 14"):
        assert f"<td class=t>{horizon}</td>" in page, horizon
    patient_ids = (external / "patients.csv").read_text().splitlines()[1].split(",")[0]
    assert patient_ids not in page and patient_ids not in (out / "metrics.json").read_text()

    run = mlflow.get_run(metrics["mlflow_run_id"])
    assert run.data.tags["run_type"] == "validation"
    assert run.data.tags["dataset_digest"] == metrics["cohort"]["dataset_digest"]
    assert "val_auroc_L24" in run.data.metrics
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"metrics.json", "report.html"} <= logged
    # the verdict leads both the page and metrics.json
    assert next(iter(metrics)) == "verdict" and metrics["verdict"]["recommendations"]
    assert page.index("id='verdict'") < page.index("class='cards'")
    assert run.data.tags["verdict_level"] == metrics["verdict"]["level"]
    # per-patient predictions: written beside the report, never logged
    assert "predictions.parquet" not in logged
    _check_predictions(out, external, metrics, bundle_dir)
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=tmp_path / "a")
    )
    ids = set(pd.read_csv(external / "patients.csv")["patient_id"].astype(str))
    for path in (p for p in local.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("latin-1")
        assert not [i for i in ids if i in text], path.name


def _check_predictions(out: Path, external: Path, metrics: dict, bundle_dir: Path) -> None:
    """One row per patient x reported landmark; the report's rows, risks and metrics."""
    import numpy as np

    from crs_ml.evaluation import metrics as M
    from crs_ml.evaluation.validate import model_settings
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.bundle import load_bundle

    pred = pd.read_parquet(out / "predictions.parquet")
    patients = pd.read_csv(external / "patients.csv")["patient_id"].astype(str)
    assert len(pred) == 2 * len(patients)
    assert not pred.duplicated(["patient_id", "landmark_h"]).any()
    assert set(pred["patient_id"]) == set(patients) and set(pred["landmark_h"]) == {24.0, 48.0}
    assert pred.loc[~pred["at_risk"], "risk"].isna().all()
    assert pred.loc[~pred["at_risk"], "exclusion_reason"].notna().all()
    assert pred.loc[pred["at_risk"], "exclusion_reason"].isna().all()
    assert pred.loc[pred["exclusion_reason"].eq("already_grade3"), "y"].isna().all()
    bundle = load_bundle(bundle_dir)
    s = model_settings(bundle)
    X, y, meta = build_landmark_dataset(
        load_cohort(external), [24.0, 48.0], s["horizon_h"], s["features"]
    )
    expected = meta[["patient_id", "landmark_h"]].assign(risk_ref=bundle.predict_risk(X), y_ref=y)
    both = pred[pred["at_risk"]].merge(expected, on=["patient_id", "landmark_h"], validate="1:1")
    assert len(both) == int(pred["at_risk"].sum()) == len(expected)
    np.testing.assert_allclose(both["risk"], both["risk_ref"], rtol=0, atol=1e-12)
    assert (both["y"].astype(int) == both["y_ref"]).all()
    for key, entry in metrics["landmarks"].items():
        rows = pred[pred["at_risk"] & pred["landmark_h"].eq(float(key))]
        o = entry["overall"]
        assert (len(rows), int(rows["y"].sum())) == (o["n"], o["n_events"])
        assert M.auroc(rows["y"].astype(int), rows["risk"]) == pytest.approx(o["auroc"], abs=1e-12)
        assert rows["y"].sum() / rows["risk"].sum() == pytest.approx(o["observed_expected"])


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
    # 300 patients hold far fewer than 100 persons with an event: said everywhere
    few = [w for w in summary["warnings"] if "persons with an event" in w]
    assert len(few) == 1 and f"on {summary['fit']['n_event_persons']} persons" in few[0]
    assert "WARNING (recalibrate)" in result.output
    assert "persons with an event" in mv.tags["recalibration_warnings"]
    assert "Verdict" in page and "persons with an event" in page


def _interval_unless_too_few_events(b: dict) -> None:
    """A censored-view row has an interval around its AUROC, unless it has fewer than 10
    events (or rows without one) by its horizon: then none."""
    few = b["n_events"] < 10 or b["n"] - b["n_events"] < 10
    assert b["too_few_events"] is few
    if few:
        assert np.isnan(b["auroc_ci"]).all() and np.isnan(b["oe_ratio_ci"]).all()
    else:
        assert b["auroc_ci"][0] <= b["auroc"] <= b["auroc_ci"][1]


def test_validate_reports_censored_patients_weighted_not_dropped(bundle_dir, external):
    """metrics.json's censored view holds everyone at risk at L with data, the censored too;
    with nobody censored its IPCW AUROC is the complete-case AUROC of the same rows."""
    from crs_ml.evaluation.validate import validate_cohort
    from crs_ml.features.landmarks import horizon_status
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.bundle import load_bundle

    bundle, cohort = load_bundle(bundle_dir), load_cohort(external)
    cohort.outcomes = cohort.outcomes.copy()
    g3 = cohort.outcomes["grade3_hours"]
    # lose 40 patients without an event at 30 h, so that some are censored at 24 h
    lost = cohort.outcomes.index[g3.isna() & cohort.outcomes["death_hours"].isna()][:40]
    cohort.outcomes.loc[lost, "followup_hours"] = 30.0
    m = validate_cohort(bundle, cohort, [24.0], n_boot=20, seed=1).metrics
    c = m["censored"]["24"]
    hs = horizon_status(cohort, [24.0], [], 336.0)
    inc = hs[hs["status"] == "included"]
    assert c["n"] == len(inc) and c["n_censored"] == (inc["outcome"] == "censored").sum() > 0
    assert c["n"] > m["landmarks"]["24"]["overall"]["n"]  # the complete case drops them
    _interval_unless_too_few_events(c)
    assert sum(r["n"] for r in c["calibration"]) == c["n"]
    curves = c["curves_by_band"]
    assert sum(b["n"] for b in curves.values()) == c["n"] and set(curves) <= {
        "low",
        "intermediate",
        "high",
    }
    for b in curves.values():
        assert b["hours"][0] == 24.0 and b["hours"][-1] == 336.0
        assert np.all(np.diff(b["cumulative_incidence"]) >= 0)

    cohort.outcomes["followup_hours"] = float("nan")  # followed to the horizon or death
    m = validate_cohort(bundle, cohort, [24.0], n_boot=0, seed=1).metrics
    c, plain = m["censored"]["24"], m["landmarks"]["24"]["overall"]
    assert c["n"] == plain["n"] and c["n_censored"] == 0
    assert c["auroc"] == pytest.approx(plain["auroc"])
    assert c["brier"] == pytest.approx(plain["brier"])


def test_validate_reports_short_horizons_censored_and_competing(bundle_dir, external):
    """A model with short horizons: per report landmark and window, the IPCW metrics of its
    window risk against grade >= 3 by L + w, the censored weighted; deaths first are
    non-events; with nobody censored they are the plain AUROC and Brier of the same rows."""
    from sklearn.metrics import roc_auc_score

    from crs_ml.evaluation.validate import model_settings, validate_cohort
    from crs_ml.features.builder import build_features
    from crs_ml.features.landmarks import horizon_status
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.bundle import load_bundle

    bundle, cohort = load_bundle(bundle_dir), load_cohort(external)
    assert [h.column for h, _ in bundle.horizons] == ["risk_24h", "risk_72h"]
    cohort.outcomes = cohort.outcomes.copy()
    g3 = cohort.outcomes["grade3_hours"]
    lost = cohort.outcomes.index[g3.isna() & cohort.outcomes["death_hours"].isna()][:40]
    cohort.outcomes.loc[lost, "followup_hours"] = 60.0  # censored before 24 + 72 h
    c = validate_cohort(bundle, cohort, [24.0], n_boot=20, seed=1).metrics["censored"]["24"]
    hs = horizon_status(cohort, [24.0], [24.0, 72.0], 336.0)
    hs = hs[hs["status"] == "included"]
    expected_means = []
    for key, label, end in (("24h", "next 24 h", 48.0), ("72h", "next 72 h", 96.0)):
        w = c["windows"][key]
        rows = hs[hs["horizon"] == label]
        assert w["horizon"] == label and w["horizon_h"] == end and w["n"] == c["n"] == len(rows)
        assert w["n_events"] == (rows["outcome"] == "event").sum()
        assert w["n_competing"] == (rows["outcome"] == "competing").sum()
        assert w["n_censored"] == (rows["outcome"] == "censored").sum()
        _interval_unless_too_few_events(w)
        assert sum(r["n"] for r in w["calibration"]) == w["n"]
        expected_means.append(w["expected"])
    assert c["windows"]["72h"]["n_censored"] > 0 == c["windows"]["24h"]["n_censored"]
    # risks capped by the longer horizon: mean risks never fall with the horizon
    assert expected_means[0] <= expected_means[1] <= c["expected"]

    cohort.outcomes["followup_hours"] = float("nan")  # followed to the horizon or death
    c = validate_cohort(bundle, cohort, [24.0], n_boot=0, seed=1).metrics["censored"]["24"]
    hs = horizon_status(cohort, [24.0], [24.0, 72.0], 336.0)
    rows = hs[(hs["status"] == "included") & (hs["horizon"] == "next 72 h")]
    X = build_features(cohort, rows[["patient_id", "landmark_h"]],
                       model_settings(bundle)["features"])  # fmt: skip
    risk72 = bundle.horizon_risks(X)["risk_72h"]
    o = cohort.outcomes.set_index("patient_id").loc[rows["patient_id"]]
    case = (o["grade3_hours"] <= 96.0).to_numpy()  # a death first (no grade 3) is a control
    w = c["windows"]["72h"]
    assert w["n_censored"] == 0 and w["n_events"] == case.sum()
    assert w["auroc"] == pytest.approx(roc_auc_score(case, risk72))
    assert w["brier"] == pytest.approx(np.mean((case - risk72) ** 2))
