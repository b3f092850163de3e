"""Peak memory of batch scoring as the cohort doubles, chunk size held (issues 7 and 13).

1. Trains the default configuration (``--config``: another) on 1,000 simulated patients
   (light CV) and saves the bundle (temporary folder).
2. Simulates ``--patients`` new patients in blocks of up to 50,000 (one seed per block, so ids
   never collide) keeping rows up to ``--as-of-hours`` (120 h: about 62 observation rows a
   patient, 12 million for 200,000), and writes two Parquet cohorts: the first half of the
   patients ("half") and all of them ("full"). The files are grouped by patient, as
   extracts are; a third copy of "full" has its observation and event rows in random order
   (read through the per-chunk spill files).
3. Runs the real command, ``python -m crs_ml score --chunk-size 5000``, on each under
   ``/usr/bin/time -v`` and reads the peak resident memory ("Maximum resident set size")
   and the wall time; checks the output has one row per patient.
4. For contrast, the same on "half" and "full" loading the whole cohort first
   (``load_cohort`` then ``score``), as a caller of the Python function would.

Targets (issue 13): the full cohort (200,000 patients by default; "half" is 100,000) under
1 GB; peak memory flat (within 15%) from half to full. The run reads and featurises the
next two chunks in two threads while the current one is explained: three chunks at most.
Writes benchmarks/results/memory.json and memory.md (``--out``: another .json, the .md
beside it). ``--config`` trains another configuration (e.g. configs/xgboost.yaml).
``--compare TREE`` also runs each command with the ``crs_ml`` of another checkout ``TREE``
first on ``PYTHONPATH`` (e.g. the main branch), in turn with this tree's, ``--pairs`` times
on the same data and model: the peaks side by side, pair by pair (A/B on a shared machine).
Usage: ``python benchmarks/bench_memory.py [--patients 200000] [--as-of-hours 120]
[--config configs/xgboost.yaml] [--compare ../main --pairs 2] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BLOCK = 50_000
CHUNK = 5000
GB = 1024**3
#: the peak memory target of the full cohort, GB
LIMIT_GB = 1.0

WHOLE = """
import sys
from pathlib import Path
from crs_ml.ingest.load import load_cohort
from crs_ml.scoring.score import score
from crs_ml.files import atomic_write
data, bundle, out, as_of = sys.argv[1:5]
scores = score(bundle, load_cohort(Path(data)), as_of_hours=float(as_of))
atomic_write(scores, Path(out), "parquet")
"""


def write_cohorts(folder: Path, n: int, as_of_h: float) -> dict:
    """Blocks of simulated patients appended to half/ and full/ (Parquet, by patient)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from bench_score import admissions

    writers: dict = {}
    counts = {"half": {}, "full": {}}
    block = min(BLOCK, max(n // 4, 1))
    n_blocks = -(-n // block)
    for b in range(n_blocks):
        size = min(block, n - b * block)
        parts = admissions(size, 9001 + b, as_of_h)
        obs = parts["observations"]
        targets = ["full"] + (["half"] if b < n_blocks // 2 else [])
        for name, frame in parts.items():
            frame = frame.reset_index(drop=True)
            frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
            table = pa.Table.from_pandas(frame, preserve_index=False)
            for target in targets:
                key = (target, name)
                if key not in writers:
                    (folder / target).mkdir(parents=True, exist_ok=True)
                    path = folder / target / f"{name}.parquet"
                    writers[key] = pq.ParquetWriter(path, table.schema)
                writers[key].write_table(table.cast(writers[key].schema))
                counts[target][name] = counts[target].get(name, 0) + len(frame)
        print(f"  block {b + 1}/{n_blocks}: {size:,} patients, {len(obs):,} observations",
              flush=True)  # fmt: skip
    for w in writers.values():
        w.close()
    shuffled = folder / "full_shuffled"
    shuffled.mkdir()
    rng = np.random.default_rng(0)
    for name in ("patients", "observations", "events"):
        table = pq.read_table(folder / "full" / f"{name}.parquet")
        if name != "patients":
            table = table.take(rng.permutation(table.num_rows))
        pq.write_table(table, shuffled / f"{name}.parquet")
        del table
    counts["full_shuffled"] = counts["full"]
    return counts


def measure(cmd: list[str], label: str, tree: Path | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: peak RSS (bytes) and wall seconds, with the
    ``crs_ml`` of ``tree`` (default this checkout) first on ``PYTHONPATH``. The command runs
    in a folder that holds no ``crs_ml``: ``python -m`` puts its working folder first on
    the path, so run from a checkout it would import that checkout's code whatever
    ``PYTHONPATH`` says (until the thirteenth session the comparison ran from this
    checkout, and so compared this tree with itself). Checked before each run."""
    tree = ROOT if tree is None else tree
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    where = Path(tempfile.gettempdir())
    found = subprocess.run([sys.executable, "-c", "import crs_ml; print(crs_ml.__file__)"],
                           cwd=where, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    if not Path(found.stdout.strip()).resolve().is_relative_to(Path(tree).resolve()):
        raise SystemExit(f"{label}: imports {found.stdout.strip()}, not the code in {tree}")
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=where, capture_output=True,
                          text=True, env=env)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{label}: exit {proc.returncode}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
    out = {"peak_rss_bytes": peak_kb * 1024, "wall_s": wall}
    print(f"  {label:<44} peak {peak_kb * 1024 / GB:5.2f} GB   {wall:6.1f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=200_000)
    ap.add_argument("--as-of-hours", type=float, default=120.0)
    ap.add_argument("--no-whole", action="store_true", help="skip the whole-load contrast")
    ap.add_argument("--config", default=None,
                    help="model configuration to train (default: the default)")  # fmt: skip
    ap.add_argument("--compare", type=Path, default=None,
                    help="another checkout whose crs_ml runs each command too, in turn")  # fmt: skip
    ap.add_argument("--pairs", type=int, default=1, help="runs in turn with --compare")
    ap.add_argument("--out", type=Path, default=RESULTS / "memory.json",
                    help="results file (.json; the .md table beside it)")  # fmt: skip
    args = ap.parse_args()
    if args.out.suffix != ".json":
        raise SystemExit("--out must end in .json")
    sys.path.insert(0, str(ROOT))
    from bench_score import train_bundle

    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"training {args.config or 'the default configuration'} on 1,000 patients",
              flush=True)  # fmt: skip
        _, bundle = train_bundle(tmp, 1000, seed=11, config=args.config)
        print(f"simulating {args.patients:,} patients, rows up to {args.as_of_hours:g} h",
              flush=True)  # fmt: skip
        counts = write_cohorts(tmp, args.patients, args.as_of_hours)
        runs, compared = {}, {}
        print("peak memory (/usr/bin/time -v)", flush=True)
        trees = [None] if args.compare is None else [args.compare.resolve(), ROOT]
        for name in ("half", "full", "full_shuffled"):
            out = tmp / f"scores_{name}.parquet"
            cmd = [sys.executable, "-m", "crs_ml", "score", "--model", str(bundle), "--data",
                   str(tmp / name), "--out", str(out), "--chunk-size", str(CHUNK),
                   "--as-of-hours", str(args.as_of_hours)]  # fmt: skip
            label = f"crs-ml score, {name}"
            for _ in range(args.pairs if args.compare is not None else 1):
                for tree in trees:
                    who = "" if tree is None else f" [{tree.name}]"
                    r = measure(cmd, label + who, tree)
                    n_out = len(pd.read_parquet(out, columns=["patient_id"]))
                    assert n_out == counts[name]["patients"], (name, n_out)
                    out.unlink()
                    if tree is None or tree == ROOT:  # the min over pairs: this tree's peak
                        old = runs.get(label)
                        runs[label] = r if old is None or r["peak_rss_bytes"] < old[
                            "peak_rss_bytes"] else old  # fmt: skip
                    key = f"{label} [{'this tree' if tree == ROOT else str(tree)}]"
                    compared.setdefault(key, []).append(r)
        if not args.no_whole:
            for name in ("half", "full"):
                out = tmp / f"whole_{name}.parquet"
                cmd = [sys.executable, "-c", WHOLE, str(tmp / name), str(bundle), str(out),
                       str(args.as_of_hours)]  # fmt: skip
                runs[f"whole load + score(), {name}"] = measure(
                    cmd, f"whole load + score(), {name}"
                )
                out.unlink()
    half, full = runs["crs-ml score, half"], runs["crs-ml score, full"]
    growth = full["peak_rss_bytes"] / half["peak_rss_bytes"]
    checks = {
        "full_under_1GB": full["peak_rss_bytes"] < LIMIT_GB * GB
        and runs["crs-ml score, full_shuffled"]["peak_rss_bytes"] < LIMIT_GB * GB,
        "flat_within_15pct": growth <= 1.15,
    }
    summary = {"patients": counts, "chunk_size": CHUNK, "as_of_hours": args.as_of_hours,
               "config": args.config, "runs": runs, "growth_half_to_full": growth,
               "checks": checks, "compared": compared}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    lines = [
        f"Chunk size {CHUNK:,} patients; Parquet input, rows up to {args.as_of_hours:g} h.",
        "",
        "| run | patients | observation rows | peak RSS | wall time |",
        "|---|---|---|---|---|",
    ]
    for label, r in runs.items():
        c = counts[label.split(", ")[-1]]
        lines.append(f"| {label} | {c['patients']:,} | {c['observations']:,} | "
                     f"{r['peak_rss_bytes'] / GB:.2f} GB | {r['wall_s']:.0f} s |")  # fmt: skip
    lines += ["", f"Peak memory of `crs-ml score`, full / half: {growth:.2f}x. Checks: "
              + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items())]  # fmt: skip
    if compared:
        lines += ["", "In turn with another tree (peak per run, GB):", ""]
        lines += [f"- {key}: " + ", ".join(f"{r['peak_rss_bytes'] / GB:.3f}" for r in rs)
                  for key, rs in compared.items()]  # fmt: skip
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
