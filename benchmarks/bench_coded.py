"""Reading a MEDS dataset and a FHIR bulk export against reading the same cohort's contract
Parquet tables.

One simulated cohort (``--patients``, seed ``--seed``, clean style) is written as contract
Parquet (read by ``load_cohort``), as its MEDS twin (``load_meds``) and as its FHIR NDJSON
twin (``load_fhir``). Each read is timed ``--repeats`` times (median reported); the rows read
are checked to be the same. Writes JSON (``--out``).

Indicative only on a shared machine: re-run on a quiet one, e.g.
``python benchmarks/bench_coded.py --patients 20000``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/coded.json"))
    args = ap.parse_args()

    from crs_ml.ingest.coded.fhir import load_fhir
    from crs_ml.ingest.coded.meds import load_meds
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.fhir_twin import write_fhir
    from crs_ml.simulate.meds_twin import write_meds
    from crs_ml.simulate.simulator import simulate

    tables = simulate(args.patients, args.seed).tables
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "contract").mkdir()
        for name in ("patients", "observations", "events", "outcomes"):
            tables[name].to_parquet(base / "contract" / f"{name}.parquet", index=False)
        write_meds(tables, base / "meds", args.seed)
        write_fhir(tables, base / "fhir", args.seed)
        sizes = {
            k: sum(f.stat().st_size for f in (base / k).rglob("*") if f.is_file())
            for k in ("contract", "meds", "fhir")
        }
        result = {"patients": args.patients, "seed": args.seed, "bytes": sizes, "seconds": {}}
        rows = {}
        for name, fn in (("contract", load_cohort), ("meds", load_meds), ("fhir", load_fhir)):
            seconds, cohort = _timed(lambda fn=fn, name=name: fn(base / name), args.repeats)
            result["seconds"][name] = round(seconds, 3)
            rows[name] = len(cohort.observations)
    if len(set(rows.values())) != 1:
        raise SystemExit(f"the twins read different numbers of observations: {rows}")
    result["observations"] = rows["contract"]
    base_s = result["seconds"]["contract"]
    result["ratio_to_contract"] = {
        k: round(v / base_s, 2) for k, v in result["seconds"].items() if k != "contract"
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
