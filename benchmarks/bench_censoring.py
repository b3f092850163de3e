"""Censored, competing-risk metrics under loss to follow-up that depends on risk: IPCW
estimates against the same patients without loss, and the drop-the-censored estimate.

Draws: ``--draws`` simulated cohorts of ``--patients`` (seeds 8001, 8002, ...; the
simulator with its own dropout off, so everyone is followed to day 14 or death). Each cohort
gets early loss to follow-up that depends on risk: patient i is lost with probability
expit(a + ``--slope`` * logit(p_i)), p_i its true P(grade >= 3 by day 14) at infusion, a
set so that a share ``--loss`` (default 20%) is lost on average; the lost get a censoring
time C ~ Uniform(24 h, 120 h) and, if alive at C, followup_hours = C (grade >= 3 and death
after C unseen), as the simulator writes its own dropout.

Predictions: a model is stood in for by the simulator's true cumulative incidence at each
horizon (crs_ml.simulate.simulator.horizon_truth) blurred on the logit scale
(logit p + N(0, ``--noise``), one draw per patient and landmark, so the three horizons stay
ordered): discrimination below the oracle's, calibration not perfect. Training a model per
cohort would measure the model, not the estimators.

At landmarks 24 h and 48 h and horizons L + 24 h, L + 72 h and day 14, on the rows at risk
at L in the data WITH loss (rules 1-3: not yet grade >= 3, alive, followed beyond L):

* no loss: the same rows with their full outcomes: plain AUROC and Brier score (competing
  deaths are non-events), O/E = share with grade >= 3 by t / mean predicted;
* IPCW: crs_ml.evaluation.censored with one reverse Kaplan-Meier (G overall), and with G
  within deciles of the predicted risk (loss depends on risk, which the predictions carry
  in part); O/E against the Aalen-Johansen estimate within risk deciles either way; 95% CIs
  from ``--boot`` person-bootstrap replicates;
* drop the censored: the complete-case rule (rule 4 at horizon t: a patient whose follow-up
  ended before t other than by death is dropped), plain metrics, person-bootstrap CIs.

Per draw, the difference from "no loss"; over draws, its mean with a 95% CI (SD / sqrt
draws) and the share of draws whose 95% CI contains the no-loss value. Timings are
indicative (shared machine); re-run on a quiet machine for the README.

Writes benchmarks/results/censoring.json and censoring.md.
Usage: python benchmarks/bench_censoring.py [--draws 40] [--patients 2000] [--boot 200]

``--training``: the same loss applied to a TRAINING cohort instead, to compare how the day-14
model is trained (task.training_weights). Per draw (seeds 9001, 9002, ...) one training cohort
of ``--patients`` followed in full and the same cohort with the loss above; three models of
the configured family (configs/default.yaml with ``--set`` overrides; landmarks
``TRAIN_LANDMARKS_H``, no windows), each fit once on all its rows as ``crs-ml train``'s final
refit does: on the cohort without loss; on the cohort with loss with ``ipcw`` (everyone at risk,
the censored left out, the others weighted by 1/G, one reverse Kaplan-Meier per landmark); and
with ``none`` (the complete-case rows, unweighted). All three are scored on one test cohort of
``--test-patients`` (seed 9000, no loss, followed in full): AUROC, calibration slope and
calibration-in-the-large at landmarks 24 h and 48 h and over all landmarks stacked. Per draw the
difference from the model trained without loss; over draws its mean with a 95% CI (SD / sqrt
draws). Writes benchmarks/results/censoring_training.json and .md.
Usage: python benchmarks/bench_censoring.py --training [--draws 8] [--patients 1500]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LANDMARKS_H = (24, 48)
WINDOWS_H = (24, 72)
H = 336.0
LOSS_HOURS = (24.0, 120.0)
SEED0 = 8001
METHODS = {
    "ipcw": "IPCW, one G",
    "ipcw_risk": "IPCW, G by risk decile",
    "complete": "drop the censored",
}
METRICS = ("auroc", "brier", "oe_ratio")
RISK_GROUPS = 10  # censoring strata of "IPCW, G by risk decile"; calibration groups of both


def no_dropout():
    from crs_ml.simulate import default_params

    p = default_params()
    return replace(p, course=replace(p.course, dropout_rate=0.0))


def add_loss(outcomes: pd.DataFrame, p_risk: np.ndarray, share: float, slope: float, rng):
    """``outcomes`` with risk-dependent early loss to follow-up (module docstring)."""
    lp = slope * logit(np.clip(p_risk, 1e-6, 1 - 1e-6))
    a = brentq(lambda a: expit(a + lp).mean() - share, -30, 30)
    chosen = rng.random(len(outcomes)) < expit(a + lp)
    c = np.where(chosen, rng.uniform(*LOSS_HOURS, len(outcomes)), np.inf)
    g3, death = outcomes["grade3_hours"].to_numpy(), outcomes["death_hours"].to_numpy()
    lost = c < np.fmin(np.nan_to_num(death, nan=np.inf), H)
    out = outcomes.copy()
    out["followup_hours"] = np.where(lost, c, np.nan)
    out["grade3_hours"] = np.where(lost & (g3 > c), np.nan, g3)
    out["death_hours"] = np.where(lost & (death > c), np.nan, death)
    return out


def one_draw(seed: int, args) -> list[dict]:
    from crs_ml.evaluation.censored import censored_metrics, risk_groups
    from crs_ml.evaluation.metrics import auroc, brier
    from crs_ml.evaluation.resampling import bootstrap_ci
    from crs_ml.features.landmarks import at_risk_status, competing_risk_times, horizon_outcome
    from crs_ml.simulate.simulator import horizon_truth, simulate

    params = no_dropout()
    sim = simulate(args.patients, seed, landmarks_h=list(LANDMARKS_H), params=params)
    full = sim.tables["outcomes"].reset_index(drop=True)
    persons = sim.tables["patients"]["person_id"].to_numpy()
    rng = np.random.default_rng([seed, 1])
    lossy = add_loss(full, sim.latent["p_grade3"].to_numpy(), args.loss, args.slope, rng)
    truth = horizon_truth(args.patients, seed, list(LANDMARKS_H), list(WINDOWS_H), H, params)
    index = pd.Series(np.arange(len(full)), index=sim.tables["outcomes"]["patient_id"])
    cols = ("grade3_hours", "death_hours", "followup_hours")
    t_full, c_full = competing_risk_times(*(full[c] for c in cols), H)
    t_loss, c_loss = competing_risk_times(*(lossy[c] for c in cols), H)
    n_lost = int(lossy["followup_hours"].notna().sum())
    rows = []
    oe = lambda y, p: float(np.mean(y) / np.mean(p))  # noqa: E731
    for L in LANDMARKS_H:
        at_L = truth[truth["landmark_h"] == L]
        status, _, _ = at_risk_status(*(lossy[c] for c in cols), float(L), H)
        at_risk = np.isin(status, ("included", "censored_before_horizon"))  # rules 1-3
        noise = None
        for label, part in at_L.groupby("horizon", sort=False):
            idx = index[part["patient_id"]].to_numpy()
            keep = at_risk[idx]
            idx, part = idx[keep], part[keep.tolist()]
            if noise is None:
                noise = pd.Series(
                    rng.normal(0, args.noise, len(idx)), index=part["patient_id"].to_numpy()
                )
            t = float(part["horizon_end_h"].iloc[0])
            p = expit(logit(np.clip(part["true_risk"].to_numpy(), 1e-6, 1 - 1e-6))
                      + noise[part["patient_id"]].to_numpy())  # fmt: skip
            pers = persons[idx]
            y_full = (horizon_outcome(t_full[idx], c_full[idx], t) == "event").astype(int)
            base = {"seed": seed, "landmark_h": L, "horizon": label, "n_lost": n_lost,
                    "n_rows": len(idx)}  # fmt: skip
            est = {"no_loss": {"auroc": auroc(y_full, p), "brier": brier(y_full, p),
                               "oe_ratio": oe(y_full, p)}}  # fmt: skip
            cis = {}
            for m, strata in (("ipcw", None), ("ipcw_risk", risk_groups(p, RISK_GROUPS))):
                r = censored_metrics(t_loss[idx], c_loss[idx], p, t, pers, strata, n_boot=args.boot,
                                     seed=seed, n_groups=RISK_GROUPS)  # fmt: skip
                est[m] = {k: r[k][0] for k in METRICS}
                cis[m] = {k: (r[k][1], r[k][2]) for k in METRICS}
                base["n_censored"] = r["n_censored"]
            st, ev, _ = at_risk_status(*(lossy[c].to_numpy()[idx] for c in cols), float(L), t)
            kept = st == "included"
            yk, pk = ev[kept].astype(int), p[kept]
            est["complete"] = {
                "auroc": auroc(yk, pk),
                "brier": brier(yk, pk),
                "oe_ratio": oe(yk, pk),
            }
            ci = bootstrap_ci({"auroc": auroc, "brier": brier, "oe_ratio": oe}, yk, pk,
                              pers[kept], n_boot=args.boot, seed=seed)  # fmt: skip
            cis["complete"] = {k: (ci[k][1], ci[k][2]) for k in METRICS}
            base["n_complete"] = int(kept.sum())
            base["events_full"] = int(y_full.sum())
            for m in METHODS:
                for k in METRICS:
                    lo, hi = cis[m][k]
                    rows.append({**base, "method": m, "metric": k, "value": est[m][k],
                                 "no_loss": est["no_loss"][k], "lo": lo, "hi": hi})  # fmt: skip
    return rows


def summarise(draws: pd.DataFrame) -> pd.DataFrame:
    d = draws.assign(diff=draws["value"] - draws["no_loss"],
                     covered=(draws["lo"] <= draws["no_loss"]) & (draws["no_loss"] <= draws["hi"]))  # fmt: skip
    g = d.groupby(["landmark_h", "horizon", "metric", "method"], sort=False)
    out = g.agg(
        no_loss=("no_loss", "mean"), value=("value", "mean"), diff=("diff", "mean"),
        sd=("diff", "std"), k=("diff", "size"), covered=("covered", "mean"),
        n_rows=("n_rows", "mean"), n_censored=("n_censored", "mean"),
        n_complete=("n_complete", "mean"), events=("events_full", "mean"),
    ).reset_index()  # fmt: skip
    se = out["sd"] / np.sqrt(out["k"])
    out["ci_lo"], out["ci_hi"] = out["diff"] - 1.96 * se, out["diff"] + 1.96 * se
    out["unbiased"] = (out["ci_lo"] <= 0) & (out["ci_hi"] >= 0)
    return out


def markdown(args, s: pd.DataFrame, seconds: float) -> str:
    lines = [
        f"# Censored metrics under risk-dependent loss to follow-up ({args.draws} cohorts of "
        f"{args.patients:,} simulated patients; {args.loss:.0%} lost at Uniform"
        f"({LOSS_HOURS[0]:g} h, {LOSS_HOURS[1]:g} h), odds of loss x e^{args.slope:g} per unit "
        f"logit of day-14 risk)",
        "",
        "Difference = estimate with loss - the same rows without loss, mean over cohorts "
        "(95% CI); covered = share of cohorts whose bootstrap 95% CI "
        f"({args.boot} replicates) contains the no-loss value. Model: true risk blurred by "
        f"N(0, {args.noise:g}) on the logit scale.",
        "",
        "| landmark | horizon | metric | no loss | method | estimate | difference (95% CI) "
        "| covered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s.itertuples():
        lines.append(
            f"| {r.landmark_h:g} h | {r.horizon} | {r.metric} | {r.no_loss:.3f} | "
            f"{METHODS[r.method]} | {r.value:.3f} | {r.diff:+.4f} ({r.ci_lo:+.4f} to "
            f"{r.ci_hi:+.4f}){'' if r.unbiased else ' *'} | {r.covered:.0%} |"
        )
    counts = s.drop_duplicates(["landmark_h", "horizon"])
    lines += ["", "Rows at risk per cohort (mean): "
              + "; ".join(f"{r.landmark_h:g} h {r.horizon}: {r.n_rows:.0f} at risk, "
                          f"{r.n_censored:.0f} censored before t, {r.n_complete:.0f} kept by "
                          f"the complete-case rule, {r.events:.1f} events without loss"
                          for r in counts.itertuples()),  # fmt: skip
              "", "\\* the 95% CI of the mean difference excludes 0.",
              "", f"Run time {seconds:.0f} s on {platform.machine()} (shared; indicative)."]  # fmt: skip
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- --training
TRAIN_LANDMARKS_H = (12, 24, 36, 48, 72, 96)
TRAIN_SEED0, TEST_SEED = 9001, 9000
TRAINED = {"no_loss": "trained without loss", "ipcw": "ipcw", "complete": "none (drop)"}
TRAIN_METRICS = ("auroc", "calibration_slope", "calibration_in_the_large")


def _cohort(tables: dict):
    import tempfile

    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import write_cohort

    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(tables, Path(tmp) / "c")
        return load_cohort(Path(tmp) / "c")


def _config(args, weights: str):
    from crs_ml.config import load_config

    landmarks = ",".join(f"{h:g}" for h in TRAIN_LANDMARKS_H)
    return load_config(ROOT / "configs" / "default.yaml",
                       [f"task.landmarks_h=[{landmarks}]", "task.windows_h=[]",
                        f"task.training_weights={weights}", *args.set])  # fmt: skip


def fit_final(cohort, cfg):
    """(model, feature columns, counts) as ``train_model``'s final refit fits it."""
    from crs_ml.modeling.estimators import make_model
    from crs_ml.modeling.horizons import horizon_data
    from crs_ml.modeling.train import CensoredRows, training_config, training_data

    cfg, _ = training_config(cohort, cfg)
    X, y, meta, catalogue, persons = training_data(cohort, cfg)

    def make():
        return make_model(cfg.model, catalogue, cfg.seed)

    counts = {"complete_rows": len(y), "complete_events": int(y.sum())}
    if cfg.task.training_weights == "none":
        return make().fit(X, y, groups=persons), list(X.columns), counts
    data = horizon_data(cohort, [], cfg.task.landmarks_h, cfg.task.horizon_h, cfg.features,
                        list(X.columns), day14=True)  # fmt: skip
    rows = CensoredRows(data, cfg.task.censoring_by)
    counts.update(rows.summary())
    return rows.fit(make), list(X.columns), counts


def score_test(model, columns, test) -> dict[str, float]:
    from crs_ml.evaluation.metrics import auroc, calibration_intercept_slope

    X, y, meta = test
    p = model.predict_proba(X[columns])[:, 1]
    lm = meta["landmark_h"].to_numpy(dtype=float)
    out = {}
    for name, m in (("L24", lm == 24), ("L48", lm == 48), ("all", np.ones(len(y), bool))):
        citl, slope = calibration_intercept_slope(y[m], p[m])
        out.update({f"auroc_{name}": auroc(y[m], p[m]), f"calibration_slope_{name}": slope,
                    f"calibration_in_the_large_{name}": citl})  # fmt: skip
    return out


def training_draw(seed: int, args, test) -> list[dict]:
    from dataclasses import replace as with_outcomes

    from crs_ml.simulate.simulator import simulate

    sim = simulate(args.patients, seed, landmarks_h=list(TRAIN_LANDMARKS_H), params=no_dropout())
    full = _cohort(sim.tables)
    risk = sim.latent.set_index("patient_id")["p_grade3"]
    outcomes = full.outcomes.reset_index(drop=True)
    rng = np.random.default_rng([seed, 1])
    lossy = add_loss(outcomes, risk.loc[outcomes["patient_id"]].to_numpy(), args.loss,
                     args.slope, rng)  # fmt: skip
    unseen = lossy["grade3_hours"].isna() & (lossy["crs_max_grade"] >= 3)
    lossy["crs_max_grade"] = lossy["crs_max_grade"].mask(unseen, 2)
    lossy_cohort = with_outcomes(full, outcomes=lossy)
    rows = []
    for method, cohort, weights in (("no_loss", full, "none"), ("ipcw", lossy_cohort, "ipcw"),
                                    ("complete", lossy_cohort, "none")):  # fmt: skip
        started = time.process_time()
        model, columns, counts = fit_final(cohort, _config(args, weights))
        scores = score_test(model, columns, test)
        rows.append({"seed": seed, "method": method, "fit_cpu_s": time.process_time() - started,
                     "n_lost": int(lossy["followup_hours"].notna().sum()), **counts, **scores})  # fmt: skip
    return rows


def training_summary(draws: pd.DataFrame) -> pd.DataFrame:
    base = draws[draws["method"] == "no_loss"].set_index("seed")
    out = []
    metrics = [c for c in draws.columns if c.startswith(TRAIN_METRICS)]
    for method, part in draws.groupby("method", sort=False):
        part = part.set_index("seed")
        for metric in metrics:
            diff = part[metric] - base.loc[part.index, metric]
            k = int(diff.notna().sum())
            se = diff.std() / np.sqrt(k) if k > 1 else np.nan
            out.append({"method": method, "metric": metric, "value": part[metric].mean(),
                        "no_loss": base[metric].mean(), "diff": diff.mean(),
                        "ci_lo": diff.mean() - 1.96 * se, "ci_hi": diff.mean() + 1.96 * se,
                        "k": k})  # fmt: skip
    return pd.DataFrame(out)


def training_markdown(args, s: pd.DataFrame, draws: pd.DataFrame, seconds: float) -> str:
    cfg = _config(args, "ipcw")
    lines = [
        f"# Training the day-14 model under risk-dependent loss to follow-up ({args.draws} "
        f"training cohorts of {args.patients:,} simulated patients; {args.loss:.0%} lost at "
        f"Uniform({LOSS_HOURS[0]:g} h, {LOSS_HOURS[1]:g} h), odds of loss x e^{args.slope:g} "
        f"per unit logit of day-14 risk)",
        "",
        f"Model: {cfg.model.type} (configs/default.yaml{', ' if args.set else ''}"
        f"{' '.join(args.set)}), landmarks {', '.join(f'{h:g}' for h in TRAIN_LANDMARKS_H)} h, "
        f"fit once on all rows. Scored on one test cohort of {args.test_patients:,} patients "
        "followed in full (no loss). Difference = metric of the model trained with loss - the "
        "model trained on the same patients without loss, mean over draws (95% CI, SD / "
        "sqrt(draws)); * = the CI excludes 0.",
        "",
        "| metric | slice | trained without loss | ipcw | difference (95% CI) | none (drop) | "
        "difference (95% CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric in TRAIN_METRICS:
        for name in ("L24", "L48", "all"):
            key = f"{metric}_{name}"
            cells = []
            for method in ("ipcw", "complete"):
                r = s[(s["method"] == method) & (s["metric"] == key)].iloc[0]
                star = " *" if r.ci_lo > 0 or r.ci_hi < 0 else ""
                cells.append(f"{r.value:.3f} | {r['diff']:+.3f} ({r.ci_lo:+.3f} to "
                             f"{r.ci_hi:+.3f}){star}")  # fmt: skip
            base = s[(s["method"] == "no_loss") & (s["metric"] == key)].iloc[0]
            label = {"L24": "24 h", "L48": "48 h", "all": "all landmarks"}[name]
            lines.append(f"| {metric.replace('_', ' ')} | {label} | {base.value:.3f} | "
                         f"{cells[0]} | {cells[1]} |")  # fmt: skip
    ip = draws[draws["method"] == "ipcw"]
    lines += [
        "",
        f"Per training cohort (mean): {ip['n_lost'].mean():.0f} patients lost; rows at risk "
        f"{ip['day14_rows_at_risk'].mean():.0f}, of which censored before day 14 (left out) "
        f"{ip['day14_censored_rows'].mean():.0f} and weighted {ip['day14_weighted_rows'].mean():.0f}"
        f" (ipcw); complete-case rows {ip['complete_rows'].mean():.0f} with "
        f"{ip['complete_events'].mean():.0f} events (none).",
        "",
        f"Run time {seconds:.0f} s on {platform.machine()} (shared; indicative); model fits "
        f"{draws['fit_cpu_s'].mean():.0f} CPU s each (with feature building).",
    ]
    return "\n".join(lines) + "\n"


def main_training(args) -> None:
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.simulate.simulator import simulate

    started = time.perf_counter()
    sim = simulate(args.test_patients, TEST_SEED, landmarks_h=list(TRAIN_LANDMARKS_H),
                   params=no_dropout())  # fmt: skip
    cfg = _config(args, "none")
    X, y, meta = build_landmark_dataset(_cohort(sim.tables), list(TRAIN_LANDMARKS_H),
                                        cfg.task.horizon_h, cfg.features)  # fmt: skip
    test = (X, np.asarray(y, dtype=int), meta)
    rows = []
    for i in range(args.draws):
        rows += training_draw(TRAIN_SEED0 + i, args, test)
        print(f"{i + 1}/{args.draws} draws, {time.perf_counter() - started:.0f} s", flush=True)
    draws = pd.DataFrame(rows)
    summary = training_summary(draws)
    seconds = time.perf_counter() - started
    md = training_markdown(args, summary, draws, seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "censoring_training.md").write_text(md)
    payload = {"args": vars(args), "seconds": seconds, "summary": summary.to_dict("records"),
               "draws": draws.to_dict("records")}  # fmt: skip
    (RESULTS / "censoring_training.json").write_text(json.dumps(payload, indent=2, default=float))
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--loss", type=float, default=0.2)
    ap.add_argument("--slope", type=float, default=1.0)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument(
        "--training",
        action="store_true",
        help="compare training with ipcw / none (module docstring)",
    )
    ap.add_argument("--test-patients", type=int, default=4000)
    ap.add_argument("--set", action="append", default=[], help="config override (--training)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.training:
        main_training(args)
        return
    started = time.perf_counter()
    rows = []
    for i in range(args.draws):
        rows += one_draw(SEED0 + i, args)
        print(f"{i + 1}/{args.draws} draws, {time.perf_counter() - started:.0f} s", flush=True)
    draws = pd.DataFrame(rows)
    summary = summarise(draws)
    seconds = time.perf_counter() - started
    md = markdown(args, summary, seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "censoring.md").write_text(md)
    payload = {"args": vars(args), "seconds": seconds, "summary": summary.to_dict("records")}
    (RESULTS / "censoring.json").write_text(json.dumps(payload, indent=2, default=float))
    print(md)


if __name__ == "__main__":
    main()
