"""``crs-ml check`` and ``crs-ml score`` on bad input: documented exit codes, one clear line,
never a traceback (issue 7, part 1).

Exit codes (crs_ml/cli/data.py, crs_ml/cli/__init__.py): check 0 usable, 1 not usable (or, with
--strict, rows rejected), 2 usage or configuration error; score 0 done (one row per patient),
2 any project error. Most cases run in-process through ``crs_ml.cli.main``; two run as real
``python -m crs_ml`` processes so that stderr is exactly what a user sees.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest_scoring import new_patients, setup

import crs_ml.cli as cli

GOOD_PATIENTS = "patient_id,age_years,product\np1,60,axi-cel\np2,70,tisa-cel\np3,55,Yescarta\n"
GOOD_OBS = (
    "patient_id,hours,variable,value,unit\n"
    "p1,-2,il6,5,pg/mL\np1,10,temperature,38.4,degC\np1,20,crp,80,mg/L\n"
    "p2,-1,ferritin,900,ng/mL\np2,30,heart_rate,110,/min\n"
    "p3,4,temperature,37.1,degC\n"
)


def run(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        cli.main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def cohort(folder: Path, patients: str = GOOD_PATIENTS, observations: str = GOOD_OBS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "patients.csv").write_text(patients, encoding="utf-8")
    (folder / "observations.csv").write_text(observations, encoding="utf-8")
    return folder


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and 'File "' not in text, text[-1500:]


@pytest.fixture(scope="module")
def bundle_dir(session_dir) -> Path:
    return setup(session_dir).bundle_dir


# ---------------------------------------------------------------- check
@pytest.mark.parametrize(
    ("name", "patients", "observations", "strict", "code", "needle"),
    [
        ("usable", GOOD_PATIENTS, GOOD_OBS, False, 0, ""),
        ("unknown unit, lenient", GOOD_PATIENTS, GOOD_OBS + "p1,11,il6,7,furlongs\n", False,
         0, "unknown_unit"),
        ("unknown unit, strict", GOOD_PATIENTS, GOOD_OBS + "p1,11,il6,7,furlongs\n", True,
         1, "unknown_unit"),
        ("unknown patient", GOOD_PATIENTS, GOOD_OBS + "ghost,1,il6,7,pg/mL\n", False, 1,
         "patient"),
        ("duplicated patient", GOOD_PATIENTS + "p1,61,axi-cel\n", GOOD_OBS, False, 1,
         "duplicated patient_id"),
        ("no observation", GOOD_PATIENTS, "patient_id,hours,variable,value\n", False, 1,
         "observation"),
        ("garbage bytes", GOOD_PATIENTS, "\x00\x01\x02 ,,,\n\xff", False, 1, "observations"),
        ("no id column", "id,age\n1,2\n", GOOD_OBS, False, 1, "patient_id"),
        ("every cell garbage", GOOD_PATIENTS,
         "patient_id,hours,variable,value,unit\np1,NaN,il6,inf,??\np2,1e400,🔥,-inf,\n"
         "p3,-1e308,crp,1e309,mg/L\n", False, 1, "observation"),
    ],
)  # fmt: skip
def test_check_exit_codes_and_messages(
    tmp_path, capsys, name, patients, observations, strict, code, needle
):
    folder = cohort(tmp_path / "c", patients, observations)
    report = tmp_path / "report.json"
    args = ["check", "--data", str(folder), "--json", str(report)]
    got, out, err = run(args + (["--strict"] if strict else []), capsys)
    assert got == code, (name, out[-2000:], err[-2000:])
    no_traceback(out, err)
    assert report.is_file()  # the report is written whatever the verdict
    assert needle in out + report.read_text(), out[-2000:]


def test_check_on_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    got, out, err = run(["check", "--data", str(tmp_path / "nowhere")], capsys)
    assert got == 2
    assert err.startswith("error: ") and "does not exist" in err
    no_traceback(out, err)


# ---------------------------------------------------------------- score
def test_score_garbage_cells_still_gives_one_row_per_patient(bundle_dir, tmp_path, capsys):
    obs = GOOD_OBS + "p1,12,il6,Hemolyzed,pg/mL\np2,31,il6,7,furlongs\np3,5,crp,<1.5,mg/L\n"
    folder = cohort(tmp_path / "c", observations=obs)
    out = tmp_path / "scores.csv"
    got, stdout, err = run(["score", "--model", str(bundle_dir), "--data", str(folder),
                            "--out", str(out)], capsys)  # fmt: skip
    assert got == 0, err[-2000:]
    no_traceback(stdout, err)
    scores = pd.read_csv(out)
    assert list(scores["patient_id"]) == ["p1", "p2", "p3"]
    errors = pd.read_csv(tmp_path / "scores.errors.csv")
    assert list(errors.columns) == ["file", "row", "column", "reason"]
    assert (errors["file"] == "observations.csv").all() and "unknown unit" in " ".join(
        errors["reason"]
    )


@pytest.mark.parametrize(
    ("name", "mutate", "needle"),
    [
        ("missing folder", "nofolder", "does not exist"),
        ("empty patients", "empty_patients", "patients.csv"),
        ("duplicated patients", "dup", "duplicated patient_id"),
        ("bad out suffix", "suffix", "must end in .parquet or .csv"),
        ("not a model", "model", ""),
        ("as-of twice", "asof", "not both"),
    ],
)
def test_score_project_errors_exit_2_with_one_line(bundle_dir, tmp_path, capsys, name, mutate,
                                                   needle):  # fmt: skip
    folder = cohort(tmp_path / "c")
    out = tmp_path / "scores.parquet"
    model = str(bundle_dir)
    extra: list[str] = []
    if mutate == "nofolder":
        folder = tmp_path / "nowhere"
    elif mutate == "empty_patients":
        (folder / "patients.csv").write_text("")
    elif mutate == "dup":
        (folder / "patients.csv").write_text(GOOD_PATIENTS + "p2,1,axi-cel\n")
    elif mutate == "suffix":
        out = tmp_path / "scores.xlsx"
    elif mutate == "model":
        model = str(folder)  # a cohort folder is not a model
    else:
        extra = ["--as-of", "2024-01-01T00:00:00", "--as-of-hours", "12"]
    got, stdout, err = run(["score", "--model", model, "--data", str(folder), "--out", str(out),
                            *extra], capsys)  # fmt: skip
    assert got == 2, (name, stdout[-1000:], err[-1000:])
    assert err.startswith("error: ") and needle in err, err
    assert len(err.strip().splitlines()) == 1, err
    no_traceback(stdout, err)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------- real processes
def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crs_ml", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_real_process_check_and_score_report_without_traceback(bundle_dir, session_dir, tmp_path):
    good = new_patients(session_dir).data
    done = _cli(["check", "--data", str(good)])
    assert done.returncode == 0, done.stderr[-2000:]
    no_traceback(done.stdout, done.stderr)
    bad = cohort(tmp_path / "bad", patients="patient_id\n")  # header only
    done = _cli(["score", "--model", str(bundle_dir), "--data", str(bad),
                 "--out", str(tmp_path / "s.parquet")])  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "patients" in done.stderr
    no_traceback(done.stdout, done.stderr)


def test_real_process_check_on_undecodable_parquet_has_no_traceback(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "patients.csv").write_text("patient_id\np1\n")
    pq.write_table(pa.table({"patient_id": ["p1"], "hours": [1.0],
                             "variable": pa.array([b"\xff"], pa.binary()), "value": [2.0]}),
                   folder / "observations.parquet")  # fmt: skip
    done = _cli(["check", "--data", str(folder)])
    no_traceback(done.stdout, done.stderr)
    assert done.returncode in (1, 2)
