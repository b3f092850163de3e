"""A real PostgreSQL holding the simulated OMOP twin: ``crs-ml check``, ``train``, ``score`` and
``validate`` run against its URL (password only in PGPASSWORD), and scores equal those of
the contract twin.

The server: the one ``.ci/run`` started (``CRS_ML_TEST_PG_URL`` and the PG* variables), else
one this module starts with ``.ci/postgres.sh`` on loopback; outside CI the test is skipped,
with the reason, when no server can be started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from shared_bundle import OVERRIDES, XGBOOST_CONFIG

ROOT = Path(__file__).resolve().parents[2]
# no short-horizon models: the adapter's cohort is what this tests
SET = [x for o in [*OVERRIDES, "task.windows_h=[]"] for x in ("--set", o)]


@pytest.fixture(scope="module")
def pg_env(tmp_path_factory):
    if os.environ.get("CRS_ML_TEST_PG_URL"):
        yield dict(os.environ)
        return
    folder = tmp_path_factory.mktemp("pg")
    port = str(55000 + os.getpid() % 1000)
    started = subprocess.run(
        [str(ROOT / ".ci" / "postgres.sh"), "start", str(folder)], capture_output=True, text=True,
        env={**os.environ, "CRS_ML_PG_PORT": port}, timeout=300,
    )  # fmt: skip
    if started.returncode != 0:
        reason = f"no PostgreSQL server could be started: {started.stderr.strip()[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        print(reason)
        pytest.skip(reason)
    env = dict(os.environ)
    for line in started.stdout.splitlines():
        for pair in line.removeprefix("export ").split():
            key, _, value = pair.partition("=")
            env[key] = value
    try:
        yield env
    finally:
        subprocess.run([str(ROOT / ".ci" / "postgres.sh"), "stop", str(folder)], timeout=120)


def _cli(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crs_ml", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def test_check_train_score_validate_against_postgres(pg_env, tmp_path):
    from crs_ml.simulate.omop import load_postgres
    from crs_ml.simulate.simulator import simulate, write_cohort

    sim = simulate(300, 23, style="clean")
    url = pg_env["CRS_ML_TEST_PG_URL"]
    assert ":" not in url.split("@")[0].split("//")[1]  # no password in the URL
    old = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = pg_env["PGPASSWORD"]
    try:
        load_postgres(sim.tables, url, schema="twin")
    finally:
        os.environ.pop("PGPASSWORD") if old is None else os.environ.update(PGPASSWORD=old)
    write_cohort(sim.tables, tmp_path / "contract")
    config = tmp_path / "omop.yaml"
    # the shared overrides are xgboost settings: the xgboost pipeline plus the OMOP schema
    settings = yaml.safe_load(XGBOOST_CONFIG.read_text())
    settings.setdefault("data", {})["omop"] = {"cdm_schema": "twin"}
    config.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in pg_env.items() if k != "CRS_ML_TEST_PG_URL"}

    done = _cli(["check", "--data", url, "--config", str(config), "--json",
                 str(tmp_path / "check.json")], env, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["tables"]["patients"]["rows_used"] == 300
    assert "secret" not in done.stdout and pg_env["PGPASSWORD"] not in done.stdout

    done = _cli(["train", "--data", url, "--config", str(config), *SET, "--experiment",
                 "omop-pg", "--no-register", "--json", str(tmp_path / "train.json")],
                env, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    model = json.loads((tmp_path / "train.json").read_text())["model_uri"]

    scores = {}
    for name, data, extra in (("pg", url, ["--config", str(config)]),
                              ("contract", str(tmp_path / "contract"), [])):  # fmt: skip
        out = tmp_path / f"scores_{name}.csv"
        done = _cli(["score", "--data", data, "--out", str(out), "--model", model,
                     "--as-of-hours", "48", *extra], env, tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        scores[name] = pd.read_csv(out).sort_values("patient_id").reset_index(drop=True)
    assert len(scores["pg"]) == 300 and (scores["pg"]["status"] == "scored").sum() > 100
    cols = ["patient_id", "status", "risk", "landmark_h"]
    pd.testing.assert_frame_equal(scores["pg"][cols], scores["contract"][cols])

    done = _cli(["validate", "--data", url, "--config", str(config), "--model", model,
                 "--out", str(tmp_path / "validation"), "--bootstrap", "20", "--no-mlflow"],
                env, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads((tmp_path / "validation" / "metrics.json").read_text())
    assert metrics


def test_a_password_on_the_command_line_is_refused(tmp_path):
    done = _cli(["check", "--data", "postgresql://crs_ml:secret@127.0.0.1:1/crs_ml"],
                dict(os.environ), tmp_path)  # fmt: skip
    assert done.returncode != 0
    assert "PGPASSWORD" in done.stdout + done.stderr
