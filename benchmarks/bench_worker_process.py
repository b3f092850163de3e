"""The batch scorer's read-ahead worker as a thread (what ``crs-ml score`` does) or as a
process: would a second process take the worker's side off the critical path (issue 13)?

1. Trains ``--config`` (default configs/xgboost.yaml, the day-14 booster alone) on 1,000
   simulated patients and writes ``--patients`` admissions as of 48 h as Parquet (the inputs
   of ``bench_score.py``), in a temporary folder.
2. Runs, in turn ``--pairs`` times, each in a fresh interpreter:

   * ``thread``: :func:`crs_ml.scoring.batch.score_to_file` (chunks read, normalised, given
     statuses and features in a worker thread, one chunk ahead);
   * ``process``: the same steps with the worker in a spawned process: it reads the chunks,
     runs :func:`crs_ml.scoring.score.begin` and :func:`~crs_ml.scoring.score.chunk_features`,
     drops the chunk's observation and event rows
     (:func:`crs_ml.scoring.batch.without_input_rows`, as the batch scorer does) and hands
     the chunk to the main process through a queue of one; the main
     process explains and writes it as the batch scorer does.

   Each run reports the wall time after its imports and model load, and the peak of the
   memory of all its processes summed (``/proc``, sampled every 0.1 s; ``/usr/bin/time``
   would give only the largest process). The process run also reports how long the worker
   took before its first chunk and how long the main process waited on it.
3. Checks both runs wrote the same scores file.

Writes benchmarks/results/worker_process.json and .md. A prototype for measuring, not a
mode of ``crs-ml score``. Usage: ``python benchmarks/bench_worker_process.py [--patients
100000] [--pairs 3] [--config configs/xgboost.yaml]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AS_OF_H = 48.0
CHUNK = 5000


def worker(bundle_dir: str, data: str, queue) -> None:
    """The worker process: chunks with statuses and features, into ``queue``, each with the
    seconds since the worker started (before its imports) and the seconds it worked so far
    (not counting waits to hand a chunk over)."""
    t0 = time.perf_counter()
    from crs_ml.ingest.stream import CohortChunks
    from crs_ml.scoring.batch import without_input_rows
    from crs_ml.scoring.score import begin, chunk_features
    from crs_ml.tracking.models import resolve_model

    bundle = resolve_model(bundle_dir)
    busy, t = 0.0, time.perf_counter()
    for cohort in CohortChunks(data, None, chunk_size=CHUNK):
        s = begin(bundle, cohort, None, AS_OF_H, CHUNK)
        features = [chunk_features(s, k) for k in range(len(s.chunks))]
        s = without_input_rows(s)  # as the batch scorer does once the features are built
        s.bundle = s.model = None  # the main process has its own
        busy += time.perf_counter() - t
        queue.put((s, features, time.perf_counter() - t0, busy))
        t = time.perf_counter()
    queue.put(None)


def run(mode: str, bundle_dir: str, data: str, out: str) -> dict:
    """One run in this interpreter; returns its timings."""
    from crs_ml.files import AtomicTable
    from crs_ml.scoring.batch import score_to_file
    from crs_ml.scoring.score import explain_chunk, model_texts, scores_columns
    from crs_ml.tracking.models import resolve_model

    bundle = resolve_model(bundle_dir)
    t0 = time.perf_counter()
    res: dict = {}
    if mode == "thread":
        score_to_file(bundle, Path(data), Path(out), as_of_hours=AS_OF_H, chunk_size=CHUNK,
                      shap_threads=1)  # fmt: skip
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # polars' and xgboost's threads do not survive a fork
        queue = ctx.Queue(maxsize=1)
        proc = ctx.Process(target=worker, args=(bundle_dir, data, queue))
        proc.start()
        texts = model_texts(bundle)
        waited = 0.0
        with AtomicTable(Path(out), "parquet") as table:
            while True:
                tw = time.perf_counter()
                item = queue.get()
                waited += time.perf_counter() - tw
                if item is None:
                    break
                s, features, since_start, busy = item
                res.setdefault("worker_first_chunk_s", since_start)
                res["worker_busy_s"] = busy
                s.bundle, s.model = bundle, texts
                for k, X in enumerate(features):
                    explain_chunk(s, k, X, 1)
                table.write(scores_columns(s))
        proc.join()
        res["main_waited_s"] = waited
    res["scoring_s"] = time.perf_counter() - t0
    return res


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def measured(mode: str, bundle_dir: Path, data: Path, out: Path) -> dict:
    """One run in a fresh interpreter, with its processes' summed memory sampled."""
    result = out.with_suffix(".json")
    cmd = [sys.executable, __file__, "--run", mode, str(bundle_dir), str(data), str(out),
           str(result)]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(_rss_kb(p) for p in _tree(proc.pid)))
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed (exit {proc.returncode})")
    res = json.loads(result.read_text())
    res["peak_memory_sum_gb"] = peak * 1024 / 2**30
    print(f"  {mode:<8} scoring {res['scoring_s']:5.2f} s   memory of all its processes "
          f"{res['peak_memory_sum_gb']:.2f} GB"
          + (f"   worker: first chunk {res['worker_first_chunk_s']:.2f} s after it started, "
             f"worked {res['worker_busy_s']:.2f} s; main waited {res['main_waited_s']:.2f} s"
             if mode == "process" else ""),
          flush=True)  # fmt: skip
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run":
        mode, bundle_dir, data, out, result = sys.argv[2:7]
        Path(result).write_text(json.dumps(run(mode, bundle_dir, data, out)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--config", default=str(ROOT / "configs" / "xgboost.yaml"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "worker_process.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import pandas as pd
    from bench_score import batch_input, train_bundle

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"training {Path(args.config).name} on 1,000 patients", flush=True)
        _, bundle_dir = train_bundle(tmp, 1000, seed=11, windows=False, config=args.config)
        print(f"writing {args.patients:,} admissions as of {AS_OF_H:g} h", flush=True)
        counts = batch_input(tmp / "batch", args.patients, 202, AS_OF_H, "parquet")
        runs: dict[str, list] = {"thread": [], "process": []}
        for _ in range(args.pairs):
            for mode in runs:
                runs[mode].append(measured(mode, bundle_dir, tmp / "batch",
                                           tmp / f"{mode}.parquet"))  # fmt: skip
        same = pd.read_parquet(tmp / "thread.parquet").equals(
            pd.read_parquet(tmp / "process.parquet"))  # fmt: skip
    if not same:
        raise SystemExit("the two runs wrote different scores files")
    summary = {"patients": counts, "config": Path(args.config).name, "pairs": args.pairs,
               "runs": runs, "same_scores_file": same, "cpus": os.cpu_count(),
               "load_average_1min": os.getloadavg()[0]}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))

    def span(mode: str, key: str, fmt: str) -> str:
        values = [r[key] for r in runs[mode]]
        return f"{min(values):{fmt}}-{max(values):{fmt}}"

    lines = [
        f"{args.patients:,} patients as of {AS_OF_H:g} h (Parquet), model "
        f"`{summary['config']}`, {args.pairs} runs of each in turn; the same scores file.",
        "",
        "| worker | scoring (after imports and model), s | memory of all processes, GB |",
        "|---|---|---|",
        f"| thread (`crs-ml score`) | {span('thread', 'scoring_s', '.2f')} | "
        f"{span('thread', 'peak_memory_sum_gb', '.2f')} |",
        f"| process (prototype) | {span('process', 'scoring_s', '.2f')} | "
        f"{span('process', 'peak_memory_sum_gb', '.2f')} |",
        "",
        f"Process runs: the worker handed over its first chunk {span('process', 'worker_first_chunk_s', '.2f')}"
        f" s after it started (imports and model included) and worked {span('process', 'worker_busy_s', '.2f')}"
        f" s in all (waits to hand a chunk over not counted); the main process waited on it "
        f"{span('process', 'main_waited_s', '.2f')} s.",
    ]  # fmt: skip
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
