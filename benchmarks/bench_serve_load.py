"""Load test of the served model: latency, throughput and errors under concurrent clients.

Trains a small model the way ``tests/integration/conftest_scoring.py`` does (300 simulated
patients, 40 trees) in a temporary folder with a temporary SQLite MLflow store, registers it as
``crs-severity@champion``, starts ``crs-ml serve`` on a free 127.0.0.1 port (loopback only) and
sends ``--requests`` POST /invocations requests from ``--clients`` threads; each request is a
``dataframe_split`` payload of 1-3 simulated patients in the one-table record format. Reports
p50 / p95 / max latency, throughput and the error count (target: 0) to stdout and
``benchmarks/results/serve_load.json``. The server is always stopped by its process group.

    .venv/bin/python benchmarks/bench_serve_load.py [--requests 2000] [--clients 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 60
RESULTS = Path(__file__).resolve().parent / "results" / "serve_load.json"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _train_and_register(tmp: Path) -> None:
    """The conftest_scoring model, logged and registered in the temporary store."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
    import conftest_scoring as cs

    cs.logged(tmp)


def _payloads(tmp: Path, n: int, seed: int) -> list[bytes]:
    """``n`` request bodies: 1-3 patients each, drawn from 200 new simulated patients."""
    import pandas as pd

    from crs_ml.ingest.load import load_cohort
    from crs_ml.ingest.records import cohort_to_records
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    tables = simulate_cohort(200, seed)
    tables.pop("truth", None)
    tables.pop("outcomes", None)
    write_cohort(tables, tmp / "new")
    cohort = load_cohort(tmp / "new")
    records = cohort_to_records(cohort)
    ids = np.asarray(cohort.patients["patient_id"].astype(str))
    groups = {pid: frame for pid, frame in records.groupby(records["patient_id"].astype(str))}
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(n):
        chosen = rng.choice(ids, size=int(rng.integers(1, 4)), replace=False)
        frame = pd.concat([groups[p] for p in chosen], ignore_index=True)
        split = json.loads(frame.to_json(orient="split", index=False))
        bodies.append(json.dumps({"dataframe_split": split}).encode())
    return bodies


def _start_server(tmp: Path, port: int) -> tuple[subprocess.Popen, object]:
    log = open(tmp / "serve.log", "w")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "crs_ml", "serve", "--model", "models:/crs-severity@champion",
         "--host", HOST, "--port", str(port)],
        env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(tmp / 'serve.log').read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, log
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {START_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def _client(port: int, bodies: list[bytes], latencies: list, errors: list, n_rows: list):
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        split = json.loads(body)["dataframe_split"]
        col = split["columns"].index("patient_id")
        n_patients = len({row[col] for row in split["data"]})
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/invocations", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            elapsed = time.perf_counter() - t0
            if resp.status != 200:
                errors.append(f"HTTP {resp.status}: {data[:200]!r}")
                continue
            predictions = json.loads(data)["predictions"]
            if len(predictions) != n_patients:
                errors.append(f"{len(predictions)} rows for {n_patients} patients")
                continue
            latencies.append(elapsed)
            n_rows.append(len(predictions))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    conn.close()


def run(n_requests: int, n_clients: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="crs_ml_serve_load_") as name:
        tmp = Path(name)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        os.environ["CRS_ML_SALT_FILE"] = str(tmp / "salt")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        t0 = time.monotonic()
        _train_and_register(tmp)
        bodies = _payloads(tmp, n_requests, seed)
        t_setup = time.monotonic() - t0
        port = _free_port()
        proc, log = _start_server(tmp, port)
        try:
            per_client = [bodies[i::n_clients] for i in range(n_clients)]
            latencies: list[float] = []
            errors: list[str] = []
            n_rows: list[int] = []
            # warm-up request (first call loads libraries lazily); not counted
            _client(port, bodies[:1], [], [], [])
            threads = [threading.Thread(target=_client,
                                        args=(port, chunk, latencies, errors, n_rows))
                       for chunk in per_client]  # fmt: skip
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=3600)
            wall = time.perf_counter() - start
        finally:
            _stop(proc)
            log.close()
    lat = np.asarray(latencies) * 1000.0
    return {
        "requests": n_requests,
        "clients": n_clients,
        "ok": int(len(lat)),
        "errors": int(len(errors)),
        "error_examples": sorted(set(errors))[:5],
        "patients_scored": int(sum(n_rows)),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
            "p99": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "max": round(float(lat.max()), 1) if len(lat) else None,
            "mean": round(float(lat.mean()), 1) if len(lat) else None,
        },
        "throughput_rps": round(len(lat) / wall, 2),
        "throughput_patients_per_s": round(sum(n_rows) / wall, 2),
        "wall_s": round(wall, 2),
        "setup_s": round(t_setup, 1),
        "server": "crs-ml serve (mlflow models serve --env-manager local, 1 worker)",
        "payload": "dataframe_split, 1-3 patients per request (record format)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        },  # fmt: skip
        "seed": seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.requests, args.clients, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
