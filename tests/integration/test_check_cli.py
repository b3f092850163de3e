"""``crs-ml check``: report on the terminal, JSON file, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from crs_ml.cli import data as data_cli
from crs_ml.errors import InputError


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.callback()
    def _root() -> None:  # a callback keeps 'check' a subcommand
        """crs-ml (test app)."""

    data_cli.register(app)
    return app


def _cohort(folder: Path, observations: str, patients: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "patients.csv").write_text(
        patients or "patient_id,infusion_time,product\n007,2024-03-01T08:00:00,Yescarta\n"
    )
    (folder / "observations.csv").write_text(observations)
    return folder


GOOD = "patient_id,hours,variable,value,unit\n007,1,CRP,12,mg/L\n007,2,Temp,101.3,degF\n"


def run(*args: str):
    return CliRunner().invoke(_app(), ["check", *args])


def test_usable_cohort_exits_0_and_writes_json(tmp_path):
    folder = _cohort(tmp_path / "c", GOOD)
    out = tmp_path / "out" / "report.json"
    result = run("--data", str(folder), "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "usable" in result.output and "observations.csv" in result.output
    report = json.loads(out.read_text())
    assert report["usable"] is True
    assert report["tables"]["observations"]["rows_used"] == 2


def test_unknown_patient_makes_the_cohort_unusable(tmp_path):
    folder = _cohort(tmp_path / "c", GOOD + "999,1,CRP,3,mg/L\n")
    result = run("--data", str(folder))
    assert result.exit_code == 1
    assert "unknown_patient_id" in result.output and "NOT usable" in result.output


def test_missing_required_column_exits_1_with_a_report(tmp_path):
    folder = _cohort(tmp_path / "c", "patient_id,hours,value,unit\n007,1,12,mg/L\n")
    out = tmp_path / "r.json"
    result = run("--data", str(folder), "--json", str(out))
    assert result.exit_code == 1
    problem = json.loads(out.read_text())["problems"][0]
    assert problem["severity"] == "fatal"
    assert problem["examples"][0] == {"file": "observations.csv", "row": None, "column": "variable"}


def test_rejected_rows_fail_only_under_strict(tmp_path):
    folder = _cohort(tmp_path / "c", GOOD + "007,3,CRP,4,mmol/parsec\n")
    lenient = run("--data", str(folder))
    assert lenient.exit_code == 0
    assert "unknown_unit" in lenient.output and "mmol/parsec" in lenient.output
    assert run("--data", str(folder), "--strict").exit_code == 1


def test_rows_rejected_by_a_warning_fail_under_strict_too(tmp_path):
    # a lab name that looks like a catalogue variable: a warning, but the row is left out
    folder = _cohort(tmp_path / "c", GOOD + '007,3,"Ferritin, serum",400,ng/mL\n')
    out = tmp_path / "r.json"
    lenient = run("--data", str(folder), "--json", str(out))
    assert lenient.exit_code == 0
    assert "1 rows rejected (0 by errors)" in " ".join(lenient.output.split())
    assert json.loads(out.read_text())["n_rejected"] == 1
    assert run("--data", str(folder), "--strict").exit_code == 1


def test_config_data_section_is_used(tmp_path):
    folder = _cohort(
        tmp_path / "c",
        "ID,hours,variable,value,unit\n007,1,CRP,12,\n",
        patients="ID\n007\n",
    )
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "path": str(folder),
                    "strict_units": True,
                    "column_mapping": {
                        "patients": {"ID": "patient_id"},
                        "observations": {"ID": "patient_id"},
                    },
                }
            }
        )
    )
    out = tmp_path / "r.json"
    result = run("--config", str(config), "--json", str(out))
    report = json.loads(out.read_text())
    assert report["options"]["strict_units"] is True
    codes = {p["code"]: p for p in report["problems"]}
    assert codes["missing_unit"]["severity"] == "error"
    assert "no_observations" in codes  # the only row had no unit
    assert result.exit_code == 1


def test_missing_folder_is_a_usage_error(tmp_path):
    result = run("--data", str(tmp_path / "nowhere"))
    assert isinstance(result.exception, InputError)  # crs_ml.cli.main turns this into exit 2
    assert "does not exist" in str(result.exception)


@pytest.mark.parametrize("flag", ["--help"])
def test_help_lists_the_options(flag):
    result = run(flag)
    assert result.exit_code == 0
    for option in ("--data", "--config", "--json", "--strict"):
        assert option in result.output


def test_renamed_columns_and_lab_names_are_warnings_not_silence(tmp_path):
    """`Product Name`, `Age` and `Ferritin, serum` would be dropped: warnings, with the
    config that uses them; the message of each problem is printed once."""
    folder = _cohort(
        tmp_path / "c",
        GOOD + '007,3,"Ferritin, serum",900,ng/mL\n',
        patients="patient_id,infusion_time,Product Name,Age\n007,2024-03-01T08:00:00,Yescarta,54\n",
    )
    out = tmp_path / "r.json"
    result = run("--data", str(folder), "--json", str(out))
    assert result.exit_code == 0, result.output
    codes = {p["code"]: p for p in json.loads(out.read_text())["problems"]}
    assert codes["unmapped_column"]["severity"] == "warning"
    assert "{'Product Name': product, Age: age_years}" in codes["unmapped_column"]["message"]
    assert codes["variable_like_catalogue"]["details"] == {"Ferritin, serum -> ferritin": 1}
    assert "unused_columns" not in codes
    assert "3 warnings" in result.output


def test_a_fatal_message_is_printed_once(tmp_path):
    folder = _cohort(
        tmp_path / "c", GOOD, patients="PatientID,infusion_time\n007,2024-03-01T08:00:00\n"
    )
    result = run("--data", str(folder))
    assert result.exit_code == 1
    flat = " ".join(result.output.split())  # the table wraps long messages
    assert flat.count("missing required column 'patient_id'") == 1
    assert "{patients: {PatientID: patient_id}}" in flat.replace("│ │", "")


def test_an_excel_table_is_named_with_how_to_convert_it(tmp_path):
    folder = _cohort(tmp_path / "c", GOOD)
    (folder / "patients.csv").rename(folder / "patients.xlsx")
    result = run("--data", str(folder))
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert flat.count("patients.xlsx is the patients table") == 1
