"""`crs-ml serve`: the real MLflow scoring server on a free loopback port.

Only loopback traffic; every wait is bounded; the server is stopped by its process group in
a finally block.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest_scoring import MALFORMED, logged, malformed, new_patients, setup

from crs_ml.ingest.records import cohort_to_records, records_to_cohort
from crs_ml.scoring.score import score

HOST = "127.0.0.1"
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status


def _strict(constant: str):
    raise ValueError(f"not strict JSON: bare {constant} in the response")


def _post(url: str, payload: dict, timeout: float = 60.0) -> tuple[int, dict]:
    """POST ``payload``; the response is parsed as strict JSON (NaN / Infinity raise), as a
    browser or a Java client would."""
    body = json.dumps(payload, allow_nan=True).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read(), parse_constant=_strict)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}", parse_constant=_strict)


def _split(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


@pytest.fixture(scope="module")
def server(session_dir):
    logged(session_dir)
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    log = open(session_dir / f"serve_{port}.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "crs_ml", "serve", "--model", "models:/crs-severity@champion",
         "--host", HOST, "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"server exited ({proc.returncode}): "
                            f"{(session_dir / f'serve_{port}.log').read_text()[-2000:]}")  # fmt: skip
            try:
                if _get(f"{base}/ping") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready on {base} after {START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def records(session_dir):
    new = new_patients(session_dir)
    return cohort_to_records(new.cohort, list(new.cohort.patients["patient_id"][:8]))


def test_served_scores_equal_the_python_function(server, records, session_dir):
    status, body = _post(f"{server}/invocations", _split(records))
    assert status == 200, body
    got = pd.DataFrame(body["predictions"])
    expected = score(setup(session_dir).bundle, records_to_cohort(records))
    assert list(got.columns) == list(expected.columns)
    assert list(got["patient_id"]) == list(expected["patient_id"])
    assert list(got["status"]) == list(expected["status"])
    np.testing.assert_allclose(got["risk"].astype(float), expected["risk"], rtol=0, atol=1e-9)
    shap = [c for c in expected.columns if c.startswith("shap_")]
    np.testing.assert_allclose(got[shap].astype(float), expected[shap], rtol=0, atol=1e-9)
    assert list(got["top_drivers"]) == list(expected["top_drivers"])
    with_params = {**_split(records), "params": {"as_of_hours": 24.0}}
    status, body = _post(f"{server}/invocations", with_params)
    assert status == 200 and {p["landmark_h"] for p in body["predictions"]} == {24.0}


def test_unscored_patients_come_back_as_strict_json_nulls(server, records):
    # 3 h is before the first landmark: every patient is too_early, with no risk or SHAP
    status, body = _post(
        f"{server}/invocations", {**_split(records), "params": {"as_of_hours": 3.0}}
    )
    assert status == 200, body
    rows = body["predictions"]
    assert len(rows) == records["patient_id"].nunique()
    assert {r["status"] for r in rows} == {"too_early"}
    assert all(r["risk"] is None and r["base_value"] is None for r in rows)
    with pytest.raises(ValueError, match="not strict JSON"):
        json.loads('{"risk": NaN}', parse_constant=_strict)


@pytest.mark.parametrize(("kind", "column", "reason"), MALFORMED)
def test_malformed_payload_gets_a_4xx_naming_column_and_reason(
    server, records, kind, column, reason
):
    status, body = _post(f"{server}/invocations", _split(malformed(records, kind)))
    assert 400 <= status < 500, (status, body)
    message = body.get("message", "")
    assert column in message and reason in message, message[-600:]


def _serve(model: str, cwd, env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "crs_ml", "serve", "--model", model, "--port",
                           str(_free_port())], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_serve_without_a_store_is_one_line_and_creates_none(tmp_path):
    done = _serve("models:/crs-severity@champion", tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: no MLflow tracking store at {tmp_path}/mlflow.db")
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []


def test_serve_a_missing_alias_is_one_line(session_dir, tmp_path):
    logged(session_dir)
    done = _serve("models:/crs-severity@nope", tmp_path,
                  {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: cannot resolve model 'models:/crs-severity@nope'")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("ref", ["latest", "Latest", "@champion"])
def test_model_uris_resolve_as_mlflow_resolves_them(session_dir, ref):
    from crs_ml.tracking.models import check_model_uri, model_info

    info = logged(session_dir)
    uri = f"models:/crs-severity{ref if ref.startswith('@') else '/' + ref}"
    check_model_uri(uri)
    got = model_info(uri)
    assert got["model_name"] == "crs-severity" and got["model_run_id"]
    if ref.startswith("@"):
        assert got["model_version"] == str(info.registered_version)
