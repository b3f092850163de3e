"""Speed of loading: the polars loader against the pandas loader it replaced, stage by stage,
and how much of the load leaves Python's lock (GIL) free for a second thread.

1. Simulates ``--patients`` patients (``--style`` clean or messy) and writes them as Parquet
   (or CSV with ``--input csv``) in a temporary folder (deleted afterwards).
2. ``--runs`` times, in turn: ``load_cohort`` of the package (polars) and of the frozen
   pandas loader (``tests/oracle/ingest_pandas``, the parity tests' oracle), with stages
   timed by wrapping the loader's own functions: reading the tables, patients,
   observations, events, outcomes, truth. Reported: medians of wall time and of CPU time
   (``time.process_time``: all threads), per stage and in all, and the ratios old / new.
   On a shared machine CPU seconds are the steadier figure.
3. GIL, in a separate load of each engine per run: a second Python thread counts in a
   loop while the loader runs; its count rate during the load divided by its rate alone
   is the share of the load during which the lock was free (1.0: the load never held it;
   near 0: the thread mostly waited). Needs a second free core to mean anything.
4. The one-patient path of ``crs_ml.score`` (``records_to_cohort`` of the example record
   table), 200 calls per engine: p50 wall and CPU milliseconds (per-call overhead).

Both loaders give the same cohort (checked on each run). The machine's load changes the
numbers: compare figures of one run only. Writes benchmarks/results/load.json. Usage:
``python benchmarks/bench_load.py [--patients 100000] [--style clean] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
#: loader functions timed as stages (module attribute names in ingest.load)
STAGES = {
    "read": "read_table",
    "patients": "_patients",
    "observations": "_observations",
    "events": "events_table",
    "outcomes": "outcomes_table",
    "truth": "truth_table",
}


def _write(n: int, style: str, fmt: str, folder: Path) -> dict[str, int]:
    from crs_ml.simulate.simulator import simulate_cohort

    tables = simulate_cohort(n, seed=20261206, style=style)
    folder.mkdir(parents=True)
    for name, t in tables.items():
        if fmt == "csv":
            t.to_csv(folder / f"{name}.csv", index=False)
        else:
            t.to_parquet(folder / f"{name}.parquet", index=False)
    return {k: len(v) for k, v in tables.items()}


class _Stages:
    """Wraps a loader module's stage functions to add up their wall time."""

    def __init__(self, module) -> None:
        self.module = module
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.saved = {name: getattr(module, name) for name in STAGES.values()}

    def __enter__(self):
        for stage, name in STAGES.items():
            setattr(self.module, name, self._timed(stage, self.saved[name]))
        return self

    def _timed(self, stage, fn):
        def wrapper(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
                cpu = time.process_time() - c0
                self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + cpu

        return wrapper

    def __exit__(self, *exc) -> None:
        for name, fn in self.saved.items():
            setattr(self.module, name, fn)


class _Counter(threading.Thread):
    """Counts in pure Python (needs the GIL for every step) until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.count = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            for _ in range(1000):
                n += 1
            self.count = n


def _alone_rate(seconds: float = 1.0) -> float:
    c = _Counter()
    c.start()
    time.sleep(seconds)
    c.stop.set()
    c.join()
    return c.count / seconds


def _run(module, folder: Path) -> tuple[dict, object]:
    """One timed load, stage by stage (no second thread: it would slow the stages that
    hold the lock, each waiting for the counter's switch interval)."""
    with _Stages(module) as stages:
        w0, c0 = time.perf_counter(), time.process_time()
        cohort = module.load_cohort(folder)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    result = {"wall_s": wall, "cpu_s": cpu, "stages_s": dict(stages.seconds)}
    return {**result, "stages_cpu_s": dict(stages.cpu_seconds)}, cohort


def _gil_free_share(module, folder: Path, rate_alone: float) -> float:
    """The counter thread's rate during a load over its rate alone."""
    counter = _Counter()
    counter.start()
    w0 = time.perf_counter()
    module.load_cohort(folder)
    wall = time.perf_counter() - w0
    counter.stop.set()
    counter.join()
    return counter.count / wall / rate_alone


def _one_patient(records, repeats: int) -> dict[str, float]:
    """p50 wall and CPU milliseconds of ``records_to_cohort`` on the one-patient example
    (the loading part of ``crs_ml.score``: per-call overhead, not rows)."""
    example = records.synthetic_example()
    for _ in range(20):
        records.records_to_cohort(example)
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        records.records_to_cohort(example)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {
        "p50_wall_ms": statistics.median(wall) * 1e3,
        "p50_cpu_ms": statistics.median(cpu) * 1e3,
    }


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--style", choices=["clean", "messy"], default="clean")
    ap.add_argument("--input", choices=["parquet", "csv"], default="parquet")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load.json"))
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests"))
    from oracle.ingest_pandas import load as old_load
    from oracle.ingest_pandas import records as old_records

    from crs_ml.ingest import load as new_load
    from crs_ml.ingest import records as new_records

    tmp = Path(tempfile.mkdtemp(prefix="crs_ml_bench_load_"))
    try:
        t0 = time.perf_counter()
        rows = _write(args.patients, args.style, args.input, tmp / "cohort")
        print(f"simulated and wrote {rows} in {time.perf_counter() - t0:.1f} s", flush=True)
        rate_alone = _alone_rate()
        runs: dict[str, list[dict]] = {"new": [], "old": []}
        for i in range(args.runs):
            new, cohort_new = _run(new_load, tmp / "cohort")
            old, cohort_old = _run(old_load, tmp / "cohort")
            for name in ("patients", "observations", "events", "outcomes", "rejected"):
                pd.testing.assert_frame_equal(
                    getattr(cohort_new, name), getattr(cohort_old, name), check_exact=True
                )
            del cohort_new, cohort_old
            new["gil_free_share"] = _gil_free_share(new_load, tmp / "cohort", rate_alone)
            old["gil_free_share"] = _gil_free_share(old_load, tmp / "cohort", rate_alone)
            runs["new"].append(new)
            runs["old"].append(old)
            print(f"run {i + 1}: new {new['wall_s']:.2f} s, old {old['wall_s']:.2f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {}
    for engine, rs in runs.items():
        summary[engine] = {
            "wall_s": _median(rs, "wall_s"),
            "cpu_s": _median(rs, "cpu_s"),
            "gil_free_share": _median(rs, "gil_free_share"),
            "stages_s": {
                s: statistics.median(r["stages_s"].get(s, 0.0) for r in rs) for s in STAGES
            },  # fmt: skip
            "stages_cpu_s": {
                s: statistics.median(r["stages_cpu_s"].get(s, 0.0) for r in rs) for s in STAGES
            },  # fmt: skip
        }
    one = {"new": _one_patient(new_records, 200), "old": _one_patient(old_records, 200)}
    result = {
        "patients": args.patients,
        "one_patient_records": one,
        "style": args.style,
        "input": args.input,
        "rows": rows,
        "runs": args.runs,
        "speedup_old_over_new": summary["old"]["wall_s"] / summary["new"]["wall_s"],
        "cpu_ratio_old_over_new": summary["old"]["cpu_s"] / summary["new"]["cpu_s"],
        "engines": summary,
        "machine": {"python": platform.python_version(), "processor": platform.processor()},
        "note": "indicative: timings depend on the machine's load; compare within one run",
    }
    print(f"\nload_cohort, {args.patients:,} patients ({args.style}, {args.input}), "
          f"medians of {args.runs} runs:")  # fmt: skip
    print(f"  {'stage':<14}{'wall old':>12}{'wall new':>12}{'CPU old':>12}{'CPU new':>12}")
    for s in STAGES:
        o, n = summary["old"]["stages_s"][s], summary["new"]["stages_s"][s]
        oc, nc = summary["old"]["stages_cpu_s"][s], summary["new"]["stages_cpu_s"][s]
        print(f"  {s:<14}{o:>10.2f} s{n:>10.2f} s{oc:>10.2f} s{nc:>10.2f} s")
    for key, unit in (("wall_s", " s"), ("cpu_s", " s"), ("gil_free_share", "")):
        o, n = summary["old"][key], summary["new"][key]
        print(f"  {key:<14}{o:>12.2f}{unit:2}{n:>12.2f}{unit}")
    for engine, r in one.items():
        print(f"  one-patient records_to_cohort ({engine}): p50 {r['p50_wall_ms']:.1f} ms wall, "
              f"{r['p50_cpu_ms']:.1f} ms CPU")  # fmt: skip
    print(f"  speed-up old/new: {result['speedup_old_over_new']:.2f}x wall, "
          f"{result['cpu_ratio_old_over_new']:.2f}x CPU")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
