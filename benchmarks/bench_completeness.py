"""How much risk moves with data completeness: the same simulated patients scored with all
their data and with markers removed.

A default model (configs default; light CV, which does not change the refit model) is trained
on 1,000 simulated patients (seed 1); 1,000 other patients (seed 7) are scored as of 24 h and
48 h with all their observations, then with IL-6 removed, ferritin removed, every cytokine
removed, every pre-infusion lab removed, and every lab removed. Per scenario and landmark, over
the patients scored both ways: median and 90th percentile of |change in risk|, the share whose
risk band changes, the completeness bands, and the share whose message says the score rests
mostly on absent data. Also prints the ranking of inputs by mean |SHAP| in the training rows
that :data:`crs_ml.modeling.completeness.KEY_INPUTS` is taken from.

Writes benchmarks/results/completeness.json and completeness.md. Usage:
``python benchmarks/bench_completeness.py [--train 1000] [--new 1000]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort
from crs_ml.config import load_config
from crs_ml.ingest.load import load_cohort
from crs_ml.modeling.bundle import load_bundle
from crs_ml.modeling.completeness import BANDS, KEY_INPUTS
from crs_ml.modeling.explain import explain
from crs_ml.modeling.train import train_model
from crs_ml.scoring.drivers import input_name
from crs_ml.scoring.score import score
from crs_ml.simulate import simulate_cohort, write_cohort
from crs_ml.variables import VARIABLES

RESULTS = Path(__file__).resolve().parent / "results"
CYTOKINES = ["il6", "ifng", "mcp1", "il10", "tnf_alpha", "il1b"]
LABS = [v for v, spec in VARIABLES.items() if spec.kind == "lab"]


def _drop(cohort: Cohort, keep) -> Cohort:
    obs = cohort.observations
    return Cohort(
        patients=cohort.patients,
        observations=obs[keep(obs)].reset_index(drop=True),
        events=cohort.events,
        rejected=cohort.rejected,
    )


SCENARIOS = {
    "IL-6 removed": lambda o: o["variable"] != "il6",
    "ferritin removed": lambda o: o["variable"] != "ferritin",
    "cytokines removed": lambda o: ~o["variable"].isin(CYTOKINES),
    "pre-infusion labs removed": lambda o: ~(o["variable"].isin(LABS) & (o["hours"] < 0)),
    "all labs removed": lambda o: ~o["variable"].isin(LABS),
}


def shap_ranking(bundle, X: pd.DataFrame) -> pd.Series:
    """Share of the mean |SHAP| over the training rows, per clinical input."""
    ex = explain(bundle, X)
    mean = np.abs(ex.contributions).mean(axis=0)
    names = [input_name(n, bundle.catalogue, part=False) for n in bundle.feature_names]
    by_input = pd.Series(mean, index=names).groupby(level=0).sum()
    return (by_input / by_input.sum()).sort_values(ascending=False)


def compare(full: pd.DataFrame, less: pd.DataFrame) -> dict:
    both = (full["status"] == "scored") & (less["status"] == "scored")
    delta = np.abs(less.loc[both, "risk"] - full.loc[both, "risk"]).to_numpy()
    band = less.loc[both, "completeness_band"].value_counts()
    mostly = less.loc[both, "message"].str.contains("rests mostly on absent data")
    return {
        "patients": int(both.sum()),
        "median_abs_change": float(np.median(delta)),
        "p90_abs_change": float(np.quantile(delta, 0.9)),
        "max_abs_change": float(delta.max()),
        "risk_band_changed": float(
            (less.loc[both, "risk_band"] != full.loc[both, "risk_band"]).mean()
        ),
        "mean_completeness": float(less.loc[both, "completeness"].mean()),
        "completeness_bands": {b: int(band.get(b, 0)) for b in BANDS},
        "mostly_absent_message": float(mostly.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--new", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="crs_bench_completeness_") as tmp:
        tmp = Path(tmp)
        write_cohort(simulate_cohort(args.train, seed=1), tmp / "train")
        write_cohort(simulate_cohort(args.new, seed=7), tmp / "new")
        cfg = load_config(None, ["cv.folds=2", "cv.repeats=1", "cv.bootstrap=0"])
        result = train_model(load_cohort(tmp / "train"), cfg)
        bundle = load_bundle(result.save(tmp / "bundle"))
        cohort = load_cohort(tmp / "new")
    ranking = shap_ranking(bundle, result.X)
    out: dict = {
        "train_patients": args.train,
        "new_patients": args.new,
        "key_inputs": list(KEY_INPUTS),
        "mean_abs_shap_share": {k: round(float(v), 4) for k, v in ranking.head(20).items()},
        "scenarios": {},
    }
    rows = []
    for hours in (24, 48):
        full = score(bundle, cohort, as_of_hours=hours)
        base = compare(full, full)
        out["scenarios"][f"{hours} h, all data"] = base
        rows.append((f"{hours} h", "all data", base))
        for name, keep in SCENARIOS.items():
            res = compare(full, score(bundle, _drop(cohort, keep), as_of_hours=hours))
            out["scenarios"][f"{hours} h, {name}"] = res
            rows.append((f"{hours} h", name, res))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "completeness.json").write_text(json.dumps(out, indent=1))
    lines = [
        "| as of | data | median \\|Δrisk\\| | p90 \\|Δrisk\\| | risk band changed | "
        "completeness full / partial / sparse | 'rests mostly on absent data' |",
        "|---|---|---|---|---|---|---|",
    ]
    for when, name, r in rows:
        b = r["completeness_bands"]
        lines.append(
            f"| {when} | {name} | {r['median_abs_change']:.3f} | {r['p90_abs_change']:.3f} | "
            f"{r['risk_band_changed']:.0%} | {b['full']} / {b['partial']} / {b['sparse']} | "
            f"{r['mostly_absent_message']:.0%} |"
        )
    ranked = ", ".join(f"{k} {v:.0%}" for k, v in ranking.head(14).items())
    text = "\n".join(lines) + f"\n\nShare of mean |SHAP| in training, by input: {ranked}\n"
    (RESULTS / "completeness.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
