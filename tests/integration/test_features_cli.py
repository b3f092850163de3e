"""``crs-ml label`` and ``crs-ml features`` on a small cohort folder read by load_cohort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from crs_ml.cli._common import parse_landmarks
from crs_ml.cli.features import register
from crs_ml.errors import InputError
from crs_ml.features.catalogue import feature_catalogue
from crs_ml.features.grading import LABEL_DEFINITION


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


def _write_cohort(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3", "p4"],
            "product": ["axi-cel", "tisa-cel", "ide-cel", "liso-cel"],
            "age_years": [60, 55, 70, 40],
            "sex": ["F", "M", "F", "M"],
            "disease": ["LBCL", "LBCL", "MM", "FL"],
            "site": ["A", "A", "B", "B"],
        }
    ).to_csv(folder / "patients.csv", index=False)
    obs = [
        # p1: fever at 10 h, vasopressor from 30 h: grade 3 at 30 h
        ("p1", -5, "il6", "4", "pg/mL"),
        ("p1", 10, "temperature", "38.6", "degC"),
        ("p1", 28, "temperature", "39.1", "degC"),
        ("p1", 20, "crp", "80", "mg/L"),
        # p2: fever only (in degF): grade 1
        ("p2", 5, "temperature", "101.3", "degF"),
        ("p2", 6, "il6", "<1.5", "pg/mL"),
        # p3: fever then high-flow oxygen at 8 h: grade 3 before the 24 h landmark
        ("p3", 7, "temperature", "38.2", "degC"),
        ("p3", 2, "crp", "12", "mg/L"),
        # p4: nothing febrile
        ("p4", 3, "temperature", "36.9", "degC"),
        ("p4", 12, "sbp", "85", "mmHg"),
    ]
    pd.DataFrame(obs, columns=["patient_id", "hours", "variable", "value", "unit"]).to_csv(
        folder / "observations.csv", index=False
    )
    ev = [
        ("p1", 30, 60, "vasopressor"),
        ("p3", 8, 20, "oxygen_high_flow"),
        ("p4", 12, 14, "vasopressor"),
    ]
    pd.DataFrame(ev, columns=["patient_id", "hours", "end_hours", "event"]).to_csv(
        folder / "events.csv", index=False
    )
    return folder


def test_label_then_features(tmp_path):
    data = _write_cohort(tmp_path / "cohort")
    runner = CliRunner()
    res = runner.invoke(_app(), ["label", "--data", str(data)])
    assert res.exit_code == 0, res.output
    assert "grade" in res.output and "outcomes.csv" in res.output
    out = pd.read_csv(data / "outcomes.csv").set_index("patient_id")
    assert out["crs_max_grade"].to_dict() == {"p1": 3, "p2": 1, "p3": 3, "p4": 0}
    assert out.loc["p1", "grade3_hours"] == 30 and out.loc["p3", "grade3_hours"] == 8
    assert (out["label_definition"] == LABEL_DEFINITION).all()

    # an existing outcomes.csv is never replaced silently
    res = runner.invoke(_app(), ["label", "--data", str(data)])
    assert res.exit_code != 0 and isinstance(res.exception, InputError)
    assert "--force" in str(res.exception)
    res = runner.invoke(_app(), ["label", "--data", str(data), "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 0 and (tmp_path / "o.csv").exists()
    res = runner.invoke(_app(), ["label", "--data", str(data), "--force", "--horizon-h", "20"])
    assert res.exit_code == 0
    assert (
        pd.read_csv(data / "outcomes.csv").set_index("patient_id").loc["p1", "crs_max_grade"] == 1
    )
    runner.invoke(_app(), ["label", "--data", str(data), "--force"])

    target = tmp_path / "features.parquet"
    res = runner.invoke(
        _app(), ["features", "--data", str(data), "--landmarks", "24,12", "--out", str(target)]
    )
    assert res.exit_code == 0, res.output
    assert "grade>=3" in res.output and "at risk" in res.output  # the attrition table
    table = pd.read_parquet(target)
    names = feature_catalogue()["name"].tolist()
    assert table.columns.tolist() == ["patient_id", *names, "y"]
    rows = set(zip(table.patient_id, table.landmark_h, table.y, strict=True))
    # p3 reached grade 3 at 8 h: gone at both landmarks; p1 is an event at both
    assert rows == {
        ("p1", 12.0, 1),
        ("p2", 12.0, 0),
        ("p4", 12.0, 0),
        ("p1", 24.0, 1),
        ("p2", 24.0, 0),
        ("p4", 24.0, 0),
    }
    p2 = table[(table.patient_id == "p2") & (table.landmark_h == 24.0)].iloc[0]
    assert p2.temperature_max == pytest.approx((101.3 - 32) * 5 / 9)
    assert p2.il6_last == pytest.approx(0.75)  # "<1.5" under the default half-limit policy

    csv = tmp_path / "features.csv"
    res = runner.invoke(
        _app(), ["features", "--data", str(data), "--landmarks", "24", "--out", str(csv)]
    )
    assert res.exit_code == 0, res.output
    as_csv = pd.read_csv(csv)
    assert len(as_csv) == 3 and np.isclose(as_csv.landmark_h, 24.0).all()


def test_features_needs_outcomes_and_valid_options(tmp_path):
    data = _write_cohort(tmp_path / "cohort")
    runner = CliRunner()
    res = runner.invoke(_app(), ["features", "--data", str(data), "--out", str(tmp_path / "f.csv")])
    assert res.exit_code != 0 and "crs-ml label" in str(res.exception)
    res = runner.invoke(
        _app(), ["features", "--data", str(data), "--out", str(tmp_path / "f.xlsx")]
    )
    assert isinstance(res.exception, InputError) and ".parquet or .csv" in str(res.exception)
    with pytest.raises(InputError, match="not a number"):
        parse_landmarks("24,abc")
    with pytest.raises(InputError, match="> 0"):
        parse_landmarks("0,24")
    assert parse_landmarks("48, 24,24") == [24.0, 48.0]


def test_label_force_replaces_a_broken_outcomes_file(tmp_path):
    data = _write_cohort(tmp_path / "cohort")
    (data / "outcomes.csv").write_text("patient_id,crs_max_grade\n")
    runner = CliRunner()
    res = runner.invoke(_app(), ["label", "--data", str(data), "--force"])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(data / "outcomes.csv")
    assert len(out) == 4 and out["crs_max_grade"].max() == 3


def test_label_reads_the_label_settings_of_the_config(tmp_path):
    data = _write_cohort(tmp_path / "cohort")
    cfg = tmp_path / "label.yaml"
    cfg.write_text("label:\n  fever_window_h: 1\n")
    runner = CliRunner()
    out = tmp_path / "o.csv"
    res = runner.invoke(
        _app(), ["label", "--data", str(data), "--config", str(cfg), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out).set_index("patient_id")
    # p1's vasopressor starts 2 h after its last fever: outside a 1 h window
    assert got["crs_max_grade"].to_dict() == {"p1": 1, "p2": 1, "p3": 3, "p4": 0}
    assert (got["label_definition"] != LABEL_DEFINITION).all()
    assert got["label_definition"].str.contains("fever window 1 h").all()
    # --fever-window-h overrides the config
    args = ["label", "--data", str(data), "--config", str(cfg), "--out", str(out), "--force"]
    res = runner.invoke(_app(), [*args, "--fever-window-h", "24"])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out).set_index("patient_id").loc["p1", "crs_max_grade"] == 3


def test_label_grades_over_the_horizon_of_the_config(tmp_path):
    data = _write_cohort(tmp_path / "cohort")
    obs = pd.read_csv(data / "observations.csv")
    late = pd.DataFrame([("p2", 380, "temperature", "38.9", "degC")], columns=obs.columns)
    pd.concat([obs, late]).to_csv(data / "observations.csv", index=False)
    ev = pd.read_csv(data / "events.csv")
    late = pd.DataFrame([("p2", 390, 400, "vasopressor")], columns=ev.columns)
    pd.concat([ev, late]).to_csv(data / "events.csv", index=False)
    cfg = tmp_path / "late.yaml"
    cfg.write_text("task:\n  horizon_h: 504\n")
    runner = CliRunner()
    out = tmp_path / "o.csv"
    args = ["label", "--data", str(data), "--config", str(cfg), "--out", str(out)]
    res = runner.invoke(_app(), args)
    assert res.exit_code == 0, res.output
    assert "[0, 504]" in res.output
    # p2's vasopressor at 390 h is inside a 504 h horizon (outside the default 336 h)
    assert pd.read_csv(out).set_index("patient_id").loc["p2", "grade3_hours"] == 390
    res = runner.invoke(_app(), [*args, "--force", "--horizon-h", "336"])
    assert res.exit_code == 0, res.output
    assert np.isnan(pd.read_csv(out).set_index("patient_id").loc["p2", "grade3_hours"])
