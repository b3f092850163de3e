"""At-risk event rates under random loss to follow-up: the censoring rule (rule 4 of
crs_ml.features.landmarks) against the rule it replaced.

Draws: ``--draws`` simulated cohorts of ``--patients`` (seeds 5001, 5002, ...; the
simulator's baseline, chain and course steps with its dropout off, so every patient is
followed to the horizon or death; observations are not drawn, the rule needs none). Each
cohort gets random loss to follow-up: a share ``--loss`` of patients, drawn independently
of everything, has a censoring time C ~ Uniform(6 h, H); a patient still alive and under the
horizon at C is lost there (followup_hours = C; grade >= 3 and death after C are unseen),
as the simulator writes its own dropout. At 24 h and 48 h, the event rate over the at-risk
set (rules 1-4, before ``no_data``, the simulator's truth set) is compared with the SAME
patients without loss, draw by draw, for three rules:

* current: follow-up ending before H, other than by death, excludes the patient whatever
  the grade >= 3 outcome;
* old (computed here, it is gone from the package): excluded only without an event or
  death in (L, H];
* C known for all: kept iff C >= H, also for patients who died before C (whose C no data
  show). Exactly independent of the outcome; the current rule differs from it only in the
  deaths, which it keeps whenever they came before C (the residual it measures).

The paired difference (with loss - without) is averaged over draws; its standard error is
the draws' SD / sqrt(draws). "unchanged" = the 95% CI of the mean difference contains 0.

One cohort (``--single-n`` patients, seed 7001, the same loss): event rate and observed /
expected at 24 h and 48 h on the landmark rows a model sees (after ``no_data``), with the
old and the current rule; expected = the simulator's true risk (from the same cohort
without loss: the true risk at L depends only on the latent state) and the mean predicted
risk of the default configuration trained on another cohort (``--train-n`` patients, seed
7002; no CV, one fit).

Writes benchmarks/results/at_risk.json and at_risk.md.
Usage: python benchmarks/bench_at_risk.py [--draws 200] [--patients 1500] [--loss 0.2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LANDMARKS_H = (24.0, 48.0)
H = 336.0
LOSS_FROM_H = 6.0  # the first default landmark
DRAW_SEED0, SINGLE_SEED, TRAIN_SEED = 5001, 7001, 7002


def no_dropout():
    from crs_ml.simulate import default_params

    p = default_params()
    return replace(p, course=replace(p.course, dropout_rate=0.0))


def outcomes_only(n: int, seed: int) -> pd.DataFrame:
    """The outcomes table of a simulated cohort (no dropout), without drawing observations:
    the simulator's baseline, latent chain and clinical course steps, seeded here."""
    from crs_ml.simulate.baseline import draw_baseline
    from crs_ml.simulate.chain import chain_rates, simulate_paths
    from crs_ml.simulate.course import build_course, outcomes

    params = no_dropout()
    rng = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(3)]
    base = draw_baseline(n, seed, params, rng[0])
    path, _ = simulate_paths(chain_rates(base, params, int(H)), rng[1])
    return outcomes(build_course(base, path, params, rng[2]))


def add_loss(
    outcomes: pd.DataFrame, share: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """(``outcomes`` (followed to H or death) with random loss to follow-up, every patient's
    censoring time C: inf when not chosen; seen only for those lost, C < death and H)."""
    g3, death = outcomes["grade3_hours"].to_numpy(), outcomes["death_hours"].to_numpy()
    n = len(outcomes)
    chosen = rng.random(n) < share
    c = np.where(chosen, rng.uniform(LOSS_FROM_H, H, n), np.inf)
    lost = c < np.fmin(np.nan_to_num(death, nan=np.inf), H)
    out = outcomes.copy()
    out["followup_hours"] = np.where(lost, c, np.nan)
    out["grade3_hours"] = np.where(lost & (g3 > c), np.nan, g3)
    out["death_hours"] = np.where(lost & (death > c), np.nan, death)
    return out, c


def old_rule_at_risk(oc: pd.DataFrame, L: float) -> tuple[np.ndarray, np.ndarray]:
    """(at risk after rules 1-4, event) with the rule replaced in issue 20."""
    g3, death, fu = (oc[c].to_numpy() for c in ("grade3_hours", "death_hours", "followup_hours"))
    event = (g3 > L) & (g3 <= H)
    competing = ~event & (death > L) & (death <= H)
    excluded = (g3 <= L) | (death <= L) | (fu <= L) | (~event & ~competing & (fu < H))
    return ~excluded, event


def new_rule_at_risk(oc: pd.DataFrame, L: float) -> tuple[np.ndarray, np.ndarray]:
    from crs_ml.features.landmarks import at_risk_status

    cols = (oc[c].to_numpy() for c in ("grade3_hours", "death_hours", "followup_hours"))
    status, event, _ = at_risk_status(*cols, L, H)
    return status == "included", event


def oracle_rule_at_risk(oc: pd.DataFrame, c: np.ndarray, L: float):
    """Rules 1-3, then kept iff the censoring time C >= H, also for patients who died
    first (whose C no data show): exactly independent of the outcome."""
    status, event = new_rule_at_risk(oc.assign(followup_hours=np.nan), L)
    return status & (c >= H) & ~(c <= L), event


RULES = {"new": "current", "old": "old", "oracle": "C known for all"}


def one_draw(seed: int, n: int, share: float) -> dict:
    full = outcomes_only(n, seed)
    lossy, c = add_loss(full, share, np.random.default_rng([seed, 1]))
    row = {"seed": seed, "n_lost": int(lossy["followup_hours"].notna().sum())}
    for L in LANDMARKS_H:
        keep, ev = new_rule_at_risk(full, L)
        row[f"full_{L:g}"], row[f"n_full_{L:g}"] = ev[keep].mean(), int(keep.sum())
        rules = {
            "new": new_rule_at_risk(lossy, L),
            "old": old_rule_at_risk(lossy, L),
            "oracle": oracle_rule_at_risk(lossy, c, L),
        }
        for name, (keep, ev) in rules.items():
            row[f"{name}_{L:g}"], row[f"n_{name}_{L:g}"] = ev[keep].mean(), int(keep.sum())
    return row


def summarise(draws: pd.DataFrame) -> list[dict]:
    rows = []
    k = len(draws)
    for L in LANDMARKS_H:
        full = draws[f"full_{L:g}"]
        for name in RULES:
            d = draws[f"{name}_{L:g}"] - full
            se = float(d.std(ddof=1) / np.sqrt(k))
            mean = float(d.mean())
            rows.append(
                {
                    "landmark_h": L,
                    "rule": RULES[name],
                    "rate_without_loss": float(full.mean()),
                    "sd_per_cohort_without_loss": float(full.std(ddof=1)),
                    "rate_with_loss": float(draws[f"{name}_{L:g}"].mean()),
                    "n_at_risk_without_loss": float(draws[f"n_full_{L:g}"].mean()),
                    "n_at_risk_with_loss": float(draws[f"n_{name}_{L:g}"].mean()),
                    "mean_difference": mean,
                    "se_difference": se,
                    "ci_lo": mean - 1.96 * se,
                    "ci_hi": mean + 1.96 * se,
                    "z": mean / se if se > 0 else float("nan"),
                    "unchanged": bool(abs(mean) <= 1.96 * se),
                }
            )
    return rows


def single_cohort(n: int, train_n: int, share: float, tmp: Path) -> list[dict]:
    """Event rate and O/E at 24 h and 48 h on one cohort with loss, old and current rule."""
    from crs_ml.config import load_config
    from crs_ml.features import build_features
    from crs_ml.features.landmarks import build_landmark_dataset, landmark_status
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.estimators import make_model
    from crs_ml.modeling.train import training_data
    from crs_ml.simulate import simulate_cohort, write_cohort

    cfg = load_config(ROOT / "configs" / "xgboost.yaml")  # the README's xgboost numbers
    folder = tmp / "train"
    write_cohort(simulate_cohort(train_n, TRAIN_SEED), folder)
    X, y, _, catalogue, persons = training_data(load_cohort(folder), cfg)
    model = make_model(cfg.model, catalogue, cfg.seed).fit(X, y, groups=persons)

    folder = tmp / "single"
    write_cohort(simulate_cohort(n, SINGLE_SEED, params=no_dropout()), folder)
    cohort = load_cohort(folder)
    truth = cohort.truth.set_index(["patient_id", "landmark_h"])["true_risk"]
    full = cohort.outcomes.copy()
    cohort.outcomes, _ = add_loss(full, share, np.random.default_rng([SINGLE_SEED, 1]))
    n_lost = int(cohort.outcomes["followup_hours"].notna().sum())
    lms = list(LANDMARKS_H)
    status = landmark_status(cohort, lms, H)  # current rule
    has_data = (status["status"] != "no_data").to_numpy()
    out = []
    for L in lms:
        at = (status["landmark_h"] == L).to_numpy()
        new_keep = (status["status"] == "included").to_numpy()[at]
        old_keep, event = old_rule_at_risk(cohort.outcomes, L)
        old_keep = old_keep & has_data[at]  # no_data does not depend on the rule
        for rule, keep in (("old", old_keep), ("current", new_keep)):
            pts = pd.DataFrame({"patient_id": status["patient_id"][at][keep], "landmark_h": L})
            y_l = event[keep].astype(float)
            risk_true = truth.reindex(pd.MultiIndex.from_frame(pts)).to_numpy(dtype=float)
            pred = model.predict_proba(build_features(cohort, pts, cfg.features))[:, 1]
            out.append(
                {
                    "landmark_h": L,
                    "rule": rule,
                    "n_lost": n_lost,
                    "n_rows": int(keep.sum()),
                    "n_events": int(y_l.sum()),
                    "event_rate": float(y_l.mean()),
                    "mean_true_risk": float(risk_true.mean()),
                    "oe_true_risk": float(y_l.sum() / risk_true.sum()),
                    "mean_predicted_risk": float(pred.mean()),
                    "oe_model": float(y_l.sum() / pred.sum()),
                }
            )
    # the same rows as the package builds them (current rule)
    _, y_pkg, meta = build_landmark_dataset(cohort, lms, H, cfg.features)
    for r in out:
        if r["rule"] == "current":
            assert r["n_rows"] == int((meta["landmark_h"] == r["landmark_h"]).sum())
            assert r["n_events"] == int(y_pkg[meta["landmark_h"] == r["landmark_h"]].sum())
    # the same patients without loss, for reference
    cohort.outcomes = full
    X0, y0, meta0 = build_landmark_dataset(cohort, lms, H, cfg.features)
    risk0 = truth.reindex(pd.MultiIndex.from_frame(meta0[["patient_id", "landmark_h"]]))
    pred0 = model.predict_proba(X0)[:, 1]
    for L in lms:
        sel = (meta0["landmark_h"] == L).to_numpy()
        y_l, r_l, p_l = y0[sel], risk0.to_numpy(dtype=float)[sel], pred0[sel]
        out.append(
            {"landmark_h": L, "rule": "no loss", "n_lost": 0, "n_rows": int(sel.sum()),
             "n_events": int(y_l.sum()), "event_rate": float(y_l.mean()),
             "mean_true_risk": float(r_l.mean()), "oe_true_risk": float(y_l.sum() / r_l.sum()),
             "mean_predicted_risk": float(p_l.mean()), "oe_model": float(y_l.sum() / p_l.sum())}
        )  # fmt: skip
    return out


def markdown(args, summary: list[dict], single: list[dict], seconds: dict) -> str:
    lines = [
        f"# At-risk event rate under random loss to follow-up ({args.draws} cohorts of "
        f"{args.patients:,} simulated patients; {args.loss:.0%} lose follow-up at "
        f"Uniform({LOSS_FROM_H:g} h, {H:g} h))",
        "",
        "Difference = event rate with loss - the same patients without loss, per cohort, "
        "averaged over cohorts (95% CI from the draws' SD). Rules 1-4, before `no_data`.",
        "",
        "| landmark | rule | rate without loss (SD per cohort) | rate with loss | at risk "
        "with / without loss | mean difference (95% CI) | z | unchanged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        lines.append(
            f"| {r['landmark_h']:g} h | {r['rule']} | {r['rate_without_loss']:.4f} "
            f"({r['sd_per_cohort_without_loss']:.4f}) | {r['rate_with_loss']:.4f} | "
            f"{r['n_at_risk_with_loss']:.0f} / {r['n_at_risk_without_loss']:.0f} | "
            f"{r['mean_difference']:+.5f} ({r['ci_lo']:+.5f} to {r['ci_hi']:+.5f}) | "
            f"{r['z']:+.1f} | {'yes' if r['unchanged'] else 'no'} |"
        )
    if single:
        lost = next(r["n_lost"] for r in single if r["rule"] != "no loss")
        lines += [
            "",
            f"One cohort: {args.single_n:,} patients (seed {SINGLE_SEED}), {lost} lost to "
            f"follow-up; landmark rows after `no_data`. Expected = the simulator's true risk, "
            f"and the default configuration trained once on {args.train_n:,} other patients "
            f"(seed {TRAIN_SEED}).",
            "",
            "| landmark | rule | rows | events | event rate | mean true risk | O/E (true risk) "
            "| mean predicted | O/E (model) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(single, key=lambda r: r["landmark_h"]):
            lines.append(
                f"| {r['landmark_h']:g} h | {r['rule']} | {r['n_rows']} | {r['n_events']} | "
                f"{r['event_rate']:.4f} | {r['mean_true_risk']:.4f} | {r['oe_true_risk']:.3f} | "
                f"{r['mean_predicted_risk']:.4f} | {r['oe_model']:.3f} |"
            )
    lines += [
        "",
        f"Run time {seconds['draws']:.0f} s (draws), {seconds['single']:.0f} s (one cohort).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--patients", type=int, default=1500)
    ap.add_argument("--loss", type=float, default=0.2)
    ap.add_argument("--single-n", type=int, default=1500)
    ap.add_argument("--train-n", type=int, default=1500)
    ap.add_argument("--no-single", action="store_true", help="skip the one-cohort O/E part")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    rows = []
    for i in range(args.draws):
        rows.append(one_draw(DRAW_SEED0 + i, args.patients, args.loss))
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{args.draws} draws, {time.perf_counter() - started:.0f} s", flush=True)
    draws = pd.DataFrame(rows)
    summary = summarise(draws)
    seconds = {"draws": time.perf_counter() - started, "single": 0.0}
    single = []
    if not args.no_single:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as t:
            single = single_cohort(args.single_n, args.train_n, args.loss, Path(t))
        seconds["single"] = time.perf_counter() - started
    by_rule = {r: [x for x in summary if x["rule"] == r] for r in RULES.values()}
    sd = {x["landmark_h"]: x["sd_per_cohort_without_loss"] for x in by_rule["current"]}
    checks = {
        "current_rule_unchanged": all(r["unchanged"] for r in by_rule["current"]),
        "current_rule_bias_under_a_tenth_of_one_cohorts_sd": all(
            abs(r["mean_difference"]) < sd[r["landmark_h"]] / 10 for r in by_rule["current"]
        ),
        "known_c_rule_unchanged": all(r["unchanged"] for r in by_rule["C known for all"]),
        "old_rule_biased_upward": all(r["ci_lo"] > 0 for r in by_rule["old"]),
    }
    payload = {
        "draws": args.draws,
        "patients": args.patients,
        "loss_share": args.loss,
        "loss_hours": [LOSS_FROM_H, H],
        "horizon_h": H,
        "summary": summary,
        "single_cohort": single,
        "checks": checks,
        "seconds": seconds,
        "python": platform.python_version(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "at_risk.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = markdown(args, summary, single, seconds)
    (RESULTS / "at_risk.md").write_text(md)
    print(md)
    print(json.dumps(checks))


if __name__ == "__main__":
    main()
