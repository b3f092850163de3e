"""Reading an OMOP cohort from PostgreSQL against reading the same cohort from Parquet.

One simulated cohort (``--patients``, seed ``--seed``, clean style) is written three ways:
its contract tables as Parquet (read by ``load_cohort``), its OMOP twin as Parquet files
(read by the OMOP adapter through an in-memory DuckDB) and its OMOP twin loaded into
PostgreSQL (read by the OMOP adapter over the URL in ``CRS_ML_TEST_PG_URL``, password in
``PGPASSWORD``; ``.ci/postgres.sh start DIR`` prints both). Each read is timed ``--repeats``
times (the median is reported) and the PostgreSQL read is split into its steps (profile of
the adapter's functions: concept resolution, infusion episodes, each table's query and its
``COPY`` fetch, the contract normalisation; CPU seconds, cumulative, so nested steps
overlap). Wall and CPU seconds of this process are reported, and the server's CPU seconds
when it runs on this machine (read from /proc). Writes JSON (``--out``).

Indicative only on a shared machine: re-run on a quiet one, e.g.
``python benchmarks/bench_omop.py --patients 100000``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def _timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall seconds, median CPU seconds of this process (the PostgreSQL server's
    own CPU is not counted), and the last result."""
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), statistics.median(cpu), out


def _steps(fn) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of this process in each step of the adapter (its functions
    wrapped by a timer for one read; nested steps overlap: ``_copy``, the fetch of every
    query, is inside the table steps)."""
    import crs_ml.ingest.omop as omop

    steps = ("resolve_concepts", "_infusions", "_episodes", "_patients", "_diseases",
             "_observations", "_events", "_outcomes", "_unused_concepts", "load_frames")  # fmt: skip
    spent: dict[str, list[float]] = {}
    saved = []

    def timed(owner, name):
        inner = getattr(owner, name)
        saved.append((owner, name, inner))

        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                acc = spent.setdefault(name, [0.0, 0.0])
                acc[0] += time.perf_counter() - wall
                acc[1] += time.process_time() - cpu

        setattr(owner, name, wrapper)

    for name in steps:
        timed(omop, name)
    timed(omop.OmopSource, "_copy")
    try:
        fn()
    finally:
        for owner, name, inner in reversed(saved):
            setattr(owner, name, inner)
    return {k: {"wall_s": round(w, 2), "cpu_s": round(c, 2)} for k, (w, c) in spent.items()}


def _server_cpu(url: str):
    """A function giving the CPU seconds the PostgreSQL server has used so far (postmaster
    and its finished backends, from /proc), or None when the server is not on this machine."""
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        stat = Path(f"/proc/{backend}/stat").read_text()
        postmaster = int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, psycopg.Error):
        return None

    def seconds() -> float:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--schema", default="bench", help="PostgreSQL schema the twin is loaded into")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_omop.json"))
    args = ap.parse_args()
    url = os.environ.get("CRS_ML_TEST_PG_URL")
    if not url:
        raise SystemExit("set CRS_ML_TEST_PG_URL and PGPASSWORD (.ci/postgres.sh start DIR)")

    from crs_ml.config import DataConfig, OmopConfig
    from crs_ml.ingest.load import load_cohort
    from crs_ml.ingest.omop import load_omop
    from crs_ml.simulate.omop import load_postgres, omop_tables, write_omop
    from crs_ml.simulate.simulator import simulate

    t = time.perf_counter()
    sim = simulate(args.patients, args.seed, style="clean")
    result = {"patients": args.patients, "simulate_s": round(time.perf_counter() - t, 1)}
    with tempfile.TemporaryDirectory(prefix="bench_omop_") as tmp:
        contract = Path(tmp) / "contract"
        contract.mkdir()
        for name in ("patients", "observations", "events", "outcomes"):
            sim.tables[name].to_parquet(contract / f"{name}.parquet", index=False)
        write_omop(sim.tables, Path(tmp) / "omop", "parquet", args.seed)
        t = time.perf_counter()
        load_postgres(omop_tables(sim.tables, args.seed), url, schema=args.schema)
        result["postgres_load_s"] = round(time.perf_counter() - t, 1)
        opts = DataConfig(omop=OmopConfig(cdm_schema=args.schema))
        runs = {
            "contract_parquet": lambda: load_cohort(contract),
            "omop_parquet": lambda: load_omop(Path(tmp) / "omop"),
            "omop_postgres": lambda: load_omop(url, opts),
        }
        server = _server_cpu(url)
        for name, fn in runs.items():
            before = server() if server and name == "omop_postgres" else None
            seconds, cpu, cohort = _timed(fn, args.repeats)
            if before is not None:
                time.sleep(1)  # the backend ends after the connection closes
                result["omop_postgres_server_cpu_s"] = round((server() - before) / args.repeats, 2)
            result[f"{name}_s"] = round(seconds, 2)
            result[f"{name}_cpu_s"] = round(cpu, 2)
            result[f"{name}_observations"] = int(len(cohort.observations))
        result["postgres_vs_parquet"] = round(
            result["omop_postgres_s"] / result["contract_parquet_s"], 2
        )
        result["postgres_vs_parquet_cpu"] = round(
            result["omop_postgres_cpu_s"] / result["contract_parquet_cpu_s"], 2
        )
        result["postgres_steps"] = _steps(lambda: load_omop(url, opts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
