"""crs-ml score and crs-ml export, through crs_ml.cli.main."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest_scoring import logged, new_patients, setup, with_bad_units

import crs_ml.cli as cli
from crs_ml.scoring.score import STATUSES, score


def same_scores(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal tables; text columns compared as text (a file round trip may retype them)."""

    def norm(df):
        out = df.copy()
        for col in (
            "patient_id",
            "status",
            "risk_band",
            "completeness_band",
            "missing_inputs",
            "top_drivers",
            "message",
            *(c for c in out.columns if c.startswith("top_drivers_")),  # short horizons
        ):
            text = out[col].astype(object)
            out[col] = text.where(text.notna(), None).astype(object)
        return out

    pd.testing.assert_frame_equal(norm(got), norm(expected))


def run(args: list[str]) -> int:
    try:
        cli.main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def trained(session_dir):
    return setup(session_dir)


@pytest.fixture(scope="module")
def new(session_dir):
    return new_patients(session_dir)


def test_score_writes_parquet_atomically_with_a_summary(trained, new, tmp_path, capsys):
    out = tmp_path / "out" / "scores.parquet"
    summary = tmp_path / "summary.json"
    code = run(["score", "--model", str(trained.bundle_dir), "--data", str(new.data),
                "--as-of-hours", "30", "--out", str(out), "--chunk-size", "9",
                "--json", str(summary)])  # fmt: skip
    assert code == 0
    scores = pd.read_parquet(out)
    same_scores(scores, score(trained.bundle, new.cohort, as_of_hours=30))
    assert [p.name for p in out.parent.iterdir()] == ["scores.parquet"]  # no temp file left
    printed = capsys.readouterr().out.strip().splitlines()
    line = printed[-1]
    counts = json.loads(summary.read_text())["status"]
    bands = json.loads(summary.read_text())["completeness"]
    assert bands == {b: int((scores["completeness_band"] == b).sum())
                     for b in ("full", "partial", "sparse")}  # fmt: skip
    assert sum(bands.values()) == counts["scored"]
    assert printed[-2] == "key inputs measured, scored patients: " + ", ".join(
        f"{b} {n}" for b, n in bands.items()
    )
    assert sum(counts.values()) == len(new.cohort.patients) == len(scores)
    assert line.startswith(f"{len(scores)} patients: ")
    for status in STATUSES:
        assert f"{status} {counts[status]}" in line
    assert counts["scored"] == int((scores["status"] == "scored").sum())


def test_score_streams_shuffled_parquet_by_chunks_like_one_whole_load(trained, new, tmp_path):
    """Parquet rows in random order, bad rows included, scored 6 patients at a time (the
    rows are spilled per chunk): the same table as scoring the whole cohort at once."""
    from crs_ml.ingest.load import load_cohort

    data = tmp_path / "cohort"
    data.mkdir()
    rng = np.random.default_rng(3)
    for name in ("patients", "observations", "events"):
        t = pd.read_csv(new.data / f"{name}.csv", dtype=str, keep_default_na=False)
        if name == "observations":
            bad = t.sample(4, random_state=1).assign(unit="mg/furlong")
            t = pd.concat([t, bad], ignore_index=True)
        if name != "patients":
            t = t.iloc[rng.permutation(len(t))]
        t.to_parquet(data / f"{name}.parquet", index=False)
    out, errors = tmp_path / "scores.parquet", tmp_path / "errors.csv"
    code = run(["score", "--model", str(trained.bundle_dir), "--data", str(data),
                "--out", str(out), "--errors", str(errors), "--chunk-size", "6"])  # fmt: skip
    assert code == 0
    whole = load_cohort(data)
    same_scores(pd.read_parquet(out), score(trained.bundle, whole))
    err = pd.read_csv(errors)
    assert len(err) == 4 and err["reason"].str.contains("mg/furlong").all()
    assert list(err["row"]) == list(whole.rejected["row"])


def test_score_csv_with_rejected_rows_and_errors_file(trained, new, tmp_path, capsys):
    data = tmp_path / "cohort"
    pid = with_bad_units(new, data, row=5, n_rows=3)
    n_obs = len(pd.read_csv(new.data / "observations.csv", dtype=str, keep_default_na=False))
    out, errors = tmp_path / "scores.csv", tmp_path / "errors.csv"
    code = run(["score", "--model", str(trained.bundle_dir), "--data", str(data),
                "--out", str(out), "--errors", str(errors)])  # fmt: skip
    assert code == 0
    scores = pd.read_csv(out)
    assert len(scores) == len(new.cohort.patients)
    row = scores.set_index("patient_id").loc[pid]
    assert row["status"] == "scored" and "3 input rows rejected" in row["message"]
    err = pd.read_csv(errors)
    assert list(err.columns) == ["file", "row", "column", "reason"]
    assert len(err) == 3 and (err["column"] == "unit").all()
    assert err["reason"].str.contains("mg/furlong").all()
    assert sorted(err["row"]) == list(range(n_obs + 1, n_obs + 4))
    assert "3 rejected input rows" in capsys.readouterr().out


def test_score_refuses_what_it_cannot_do(trained, new, tmp_path, capsys):
    assert run(["score", "--model", str(trained.bundle_dir), "--data", str(new.data),
                "--out", str(tmp_path / "scores.xlsx")]) == 2  # fmt: skip
    assert "parquet or .csv" in capsys.readouterr().err
    assert run(["score", "--model", str(tmp_path / "nothing"), "--data", str(new.data),
                "--out", str(tmp_path / "s.csv")]) == 2  # fmt: skip
    assert "neither" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_export_then_score_and_load_without_a_tracking_store(session_dir, new, tmp_path):
    info = logged(session_dir)
    folder = tmp_path / "models" / "crs-severity-test"
    assert run(["export", "--model", "models:/crs-severity@champion", "--out", str(folder)]) == 0
    assert (folder / "MLmodel").is_file()
    assert run(["export", "--model", "models:/crs-severity@champion", "--out", str(folder)]) == 2
    empty_store = f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": empty_store}
    out = tmp_path / "scores.parquet"
    # one fresh process: `crs-ml score --model FOLDER`, then mlflow.pyfunc.load_model(FOLDER)
    code = (
        "import sys, json, mlflow, crs_ml.cli as c\n"
        "from crs_ml.ingest.records import synthetic_example\n"
        "try:\n"
        "    c.main(['score', '--model', sys.argv[1], '--data', sys.argv[2],\n"
        "            '--as-of-hours', '24', '--out', sys.argv[3]])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "risk = mlflow.pyfunc.load_model(sys.argv[1]).predict(synthetic_example())['risk']\n"
        "print(json.dumps(risk.tolist()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(folder), str(new.data), str(out)],
                          env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    expected = score(setup(session_dir).bundle, new.cohort, as_of_hours=24)
    same_scores(pd.read_parquet(out), expected)
    risks = json.loads(done.stdout.strip().splitlines()[-1])
    from crs_ml.ingest.records import records_to_cohort, synthetic_example

    ref = score(setup(session_dir).bundle, records_to_cohort(synthetic_example()))["risk"]
    np.testing.assert_allclose(risks, ref, rtol=0, atol=1e-12)
    assert mlflow.get_tracking_uri() != empty_store and info.registered_version


def test_missing_tracking_store_is_a_clear_error(new, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"}
    env.pop("MLFLOW_TRACKING_URI")
    done = subprocess.run(
        [sys.executable, "-m", "crs_ml", "score", "--data", str(new.data),
         "--out", str(tmp_path / "s.parquet")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no MLflow tracking store" in done.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "s.parquet").exists()


@pytest.mark.parametrize("chosen", [None, "jemalloc"])
def test_the_command_line_gives_arrow_the_system_allocator_unless_one_is_chosen(chosen):
    # a fresh process, as `crs-ml` starts: pyarrow not imported before main() runs
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    code = (
        "import crs_ml.cli as c\n"
        "try:\n"
        "    c.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import pyarrow as pa, pandas as pd\n"
        "pd.Series(['a', 'b'], dtype='str')\n"
        "print(pa.default_memory_pool().backend_name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == (chosen or "system")


def _copy(new, folder, **edits):
    """``new``'s CSV tables in ``folder``, each edited by ``edits[name](frame)``."""
    folder.mkdir()
    for name in ("patients", "observations", "events"):
        t = pd.read_csv(new.data / f"{name}.csv", dtype=str, keep_default_na=False)
        t = edits.get(name, lambda f: f)(t)
        t.to_csv(folder / f"{name}.csv", index=False)
    return folder


def test_score_counts_rows_of_a_lab_name_the_catalogue_lacks(trained, new, tmp_path, capsys):
    """Ferritin sent as `Ferritin, serum`: its rows are rejected input rows in the summary,
    the errors file and the patients' messages, not silently dropped."""

    def rename(obs):
        ferritin = obs["variable"] == "ferritin"
        obs.loc[ferritin, "variable"] = "Ferritin, serum"
        extra = obs.head(2).assign(variable="sodium", value="140", unit="mmol/L")
        return pd.concat([obs, extra], ignore_index=True)

    data = _copy(new, tmp_path / "cohort", observations=rename)
    n_ferritin = int((new.cohort.observations["variable"] == "ferritin").sum())
    assert n_ferritin > 0
    out, errors = tmp_path / "scores.csv", tmp_path / "errors.csv"
    code = run(["score", "--model", str(trained.bundle_dir), "--data", str(data),
                "--out", str(out), "--errors", str(errors), "--as-of-hours", "48"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert f"{n_ferritin} rejected input rows -> {errors}" in printed
    assert "2 input rows of variables not in the catalogue left out (sodium 2;" in printed
    err = pd.read_csv(errors)
    assert len(err) == n_ferritin and err["reason"].str.contains("Ferritin, serum").all()
    assert pd.read_csv(out)["message"].str.contains("input rows? rejected", regex=True).any()


def test_ambiguous_as_of_is_refused_before_anything_runs(trained, new, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    code = run(["score", "--model", str(trained.bundle_dir), "--data", str(new.data),
                "--as-of", "03/02/2024", "--out", str(out)])  # fmt: skip
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --as-of '03/02/2024' is day/month text, which is ambiguous")
    assert "YYYY-MM-DD" in err and "--as-of-hours" in err and len(err.splitlines()) == 1


def test_a_run_that_scores_nobody_exits_3_with_the_file_written(trained, new, tmp_path, capsys):
    data = _copy(new, tmp_path / "cohort", observations=lambda t: t.iloc[:0],
                 events=lambda t: t.iloc[:0])  # fmt: skip
    out, summary = tmp_path / "scores.csv", tmp_path / "summary.json"
    code = run(["score", "--model", str(trained.bundle_dir), "--data", str(data),
                "--out", str(out), "--json", str(summary)])  # fmt: skip
    assert code == 3
    scores = pd.read_csv(out)
    assert len(scores) == len(new.cohort.patients) and (scores["status"] == "error").all()
    err = capsys.readouterr().err
    assert f"no patient could be scored (error {len(scores)})" in err
    assert json.loads(summary.read_text())["failure"].startswith("no patient could be scored")


def test_max_unscored_fraction_fails_the_run_above_the_threshold(trained, new, tmp_path, capsys):
    """A quarter of the patients lose all their rows: exit 0 at 0.3, exit 3 at 0.2."""
    ids = new.cohort.patients["patient_id"].tolist()
    gone = set(ids[: len(ids) // 4])
    data = _copy(new, tmp_path / "cohort",
                 observations=lambda t: t[~t["patient_id"].isin(gone)],
                 events=lambda t: t[~t["patient_id"].isin(gone)])  # fmt: skip
    args = ["score", "--model", str(trained.bundle_dir), "--data", str(data), "--as-of-hours",
            "48", "--out", str(tmp_path / "s.parquet")]  # fmt: skip
    assert run([*args, "--max-unscored-fraction", "0.3"]) == 0
    capsys.readouterr()
    assert run([*args, "--max-unscored-fraction", "0.2"]) == 3
    err = capsys.readouterr().err
    assert f"{len(gone)} of {len(ids)} patients could not be scored (25.0% >" in err
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert len(scores) == len(ids) and int((scores["status"] == "error").sum()) == len(gone)
