"""Does the default hold in worlds it was not tuned to? (README, "Model families").

Simulated worlds that differ in what a site cannot control, each made by changing the
simulator's parameters (crs_ml.simulate.params; the simulator itself is untouched):

* ``default``: the shipped simulator;
* ``baseline_labs_strong``: baseline labs (tumour burden, CRP, platelets, ferritin) explain
  more of the latent severity, early cytokines less;
* ``cytokines_strong``: baseline labs explain little, early cytokines and fever more;
* ``noisy_slow_markers``: three times the assay noise of IL-6, CRP and ferritin, CRP and
  ferritin twice as slow, twice the risk-free patient factor in the inflammation amplitude;
* ``no_il6_sparse``: IL-6 never measured, labs and vital signs half as often;
* ``conservative_policy``: every site treats conservatively (tocilizumab only at grade 3,
  steroids at grade 4): fewer courses are cut short (event rate about 23% instead of 12%);
* ``rare_events``: the low-rate products only (liso-cel, cilta-cel; about 5%);
* ``frequent_events``: the high-rate products only (axi-cel, tisa-cel, brexu-cel; about 18%).

The product constants are not re-calibrated (:func:`crs_ml.simulate.calibrate.calibrate_products`),
so a world that changes severity weights also moves its event rate; the table states each
world's test event rate. In each world, models are trained on draws of ``--sizes`` patients
(``--draws`` independent draws each, all landmarks of the config stacked) and measured at the
24 h landmark on an independent test cohort of ``--test-n`` patients of the same world: AUROC,
calibration slope and the oracle ratio (AUROC / AUROC of the simulator's true risk on the same
rows) for the stack (``--config``, default configs/stack.yaml), each of its members (as refit
inside the stack on all the training rows: identical to the member trained alone with the same
seed), m-EASIX and the early-fever rule. The criteria of the issue are checked per world and
size: stack AUROC >= best member's - 0.003 and >= the compact member's, calibration slope in
0.8-1.2 at >= 1,000 patients.

Writes benchmarks/results/robustness.json and robustness.md (the README table). Cost: building
the cohorts (simulation, loading, features) dominates, not the fits: one world's test set of
2,000 plus one draw of 300 and one of 1,000 patients took about 150 CPU s; a 3,000-patient draw
about 10 minutes on a busy shared 2-core machine. The full default grid (3 draws, test 5,000)
is hours; run it in parts (``--worlds``, ``--sizes``, ``--first-draw``) and join them with
``--merge``. ``--replay-dir`` keeps each draw's member margins so another blending rule is
measured without refitting (``--merge ... --replay-dir``, ``--compare-rules``). Usage:
``python benchmarks/bench_robustness.py [--worlds default rare_events] [--sizes 300 1000]
[--draws 1] [--test-n 2000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEST_SEED = 7000
LANDMARK_H = 24.0
SIZES = [300, 1000, 3000]
DRAWS = 3
#: the margin of the issue's criterion: stack >= best member - TOLERANCE
TOLERANCE = 0.003


def _sites(params, changes):
    return replace(params, sites=tuple(replace(s, **changes(s)) for s in params.sites))


def _world_fns():
    from crs_ml.simulate.params import with_products

    def baseline_labs_strong(p):
        sev = replace(p.severity, tumour_burden=1.0, crp=0.5, low_platelets=0.5, ferritin=0.3,
                      unexplained_sd=0.3)  # fmt: skip
        return replace(p, severity=sev, kinetics=replace(p.kinetics, amplitude_severity=0.7))

    def cytokines_strong(p):
        sev = replace(p.severity, tumour_burden=0.3, crp=0.1, low_platelets=0.1, ferritin=0.0,
                      unexplained_sd=0.9)  # fmt: skip
        return replace(p, severity=sev, kinetics=replace(p.kinetics, amplitude_severity=2.2))

    def noisy_slow_markers(p):
        k = p.kinetics
        return replace(p, kinetics=replace(
            k, noise_il6=3 * k.noise_il6, noise_crp=3 * k.noise_crp,
            noise_ferritin=3 * k.noise_ferritin, tau_crp_h=2 * k.tau_crp_h,
            tau_ferritin_h=2 * k.tau_ferritin_h, amplitude_sd=2 * k.amplitude_sd,
        ))  # fmt: skip

    def no_il6_sparse(p):
        return _sites(p, lambda s: {
            "il6_prob": (0.0, 0.0, 0.0, 0.0),
            "labs_every_h": tuple(2 * h for h in s.labs_every_h),
            "vitals_every_h": tuple(2 * h for h in s.vitals_every_h),
        })  # fmt: skip

    def conservative_policy(p):
        return _sites(
            p,
            lambda s: {
                "toci_fever_per_h": 0.0,
                "toci_grade2_per_h": 0.0,
                "steroid_grade2_per_h": 0.0,
                "steroid_at_grade3": False,
            },
        )

    return {
        "default": lambda p: p,
        "baseline_labs_strong": baseline_labs_strong,
        "cytokines_strong": cytokines_strong,
        "noisy_slow_markers": noisy_slow_markers,
        "no_il6_sparse": no_il6_sparse,
        "conservative_policy": conservative_policy,
        "rare_events": lambda p: with_products(p, liso_cel=0.5, cilta_cel=0.5),
        "frequent_events": lambda p: with_products(p, axi_cel=0.4, tisa_cel=0.3, brexu_cel=0.3),
    }


def landmark_set(params, n: int, seed: int, tmp: Path, cfg, landmarks):
    """(X, y, meta, truth) of a simulated cohort of this world."""
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    folder = tmp / f"sim_{n}_{seed}"
    write_cohort(simulate_cohort(n, seed=seed, params=params), folder)
    cohort = load_cohort(folder)
    X, y, meta = build_landmark_dataset(cohort, landmarks, cfg.task.horizon_h, cfg.features)
    return X, np.asarray(y, dtype=int), meta, cohort.truth


def measure(y, p, oracle_auroc) -> dict:
    from crs_ml.evaluation import metrics as M

    auroc = M.auroc(y, p)
    return {
        "auroc": auroc,
        "calibration_slope": M.calibration_intercept_slope(y, p)[1],
        "oracle_ratio": auroc / oracle_auroc,
    }


def run_one(cfg, catalogue, train, test, seed: int, replay: Path | None = None) -> dict:
    """Every model of one training draw, measured on the test set. With ``replay``, also
    writes what a blending rule needs (the members' inner out-of-fold log-odds, their inner
    folds, the training outcome, the members' test log-odds and the test outcome) to that
    .npz file, so rules can be compared without refitting members (:func:`replay_blend`)."""
    from scipy.special import expit

    from crs_ml.modeling.estimators import make_model

    X, y, meta, _ = train
    groups = meta["person_id"].astype(str).to_numpy()
    Xt, yt, _, oracle_auroc = test
    out = {}
    stack = make_model(cfg.model, catalogue, seed).fit(X, y, groups=groups)
    out["stack"] = measure(yt, stack.predict_proba(Xt[X.columns])[:, 1], oracle_auroc)
    member_test = stack.member_logits(Xt[X.columns])
    for name, logit in member_test.items():
        out[name] = measure(yt, expit(logit), oracle_auroc)
    if replay is not None:
        replay.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            replay, names=np.array(list(member_test)), margins=stack.inner_margins_,
            fold=stack.inner_fold_, y=y, test_margins=np.column_stack(list(member_test.values())),
            test_y=yt, oracle_auroc=oracle_auroc, event_persons=stack.event_persons_,
        )  # fmt: skip
    out["weights"] = dict(zip([m[0] for m in stack.members_], stack.weights_.tolist(),
                              strict=True))  # fmt: skip
    for base in ("measix", "fever_rule"):
        model_cfg = cfg.model.model_copy(update={"type": base, "params": {}, "members": {}})
        model = make_model(model_cfg, catalogue, seed).fit(X, y, groups=groups)
        out[base] = measure(yt, model.predict_proba(Xt[X.columns])[:, 1], oracle_auroc)
    return out


def summarise(rows: list[dict], members: list[str]) -> dict:
    models = ["stack", *members, "measix", "fever_rule"]
    out = {}
    for m in models:
        for k in ("auroc", "calibration_slope", "oracle_ratio"):
            out[f"{m}.{k}"] = float(np.mean([r[m][k] for r in rows]))
    best = max(out[f"{m}.auroc"] for m in members)
    out["best_member_auroc"] = best
    out["meets_best_member"] = bool(out["stack.auroc"] >= best - TOLERANCE)
    out["meets_compact"] = bool(
        "compact.auroc" not in out or out["stack.auroc"] >= out["compact.auroc"]
    )
    out["weights"] = {m: float(np.mean([r["weights"][m] for r in rows])) for m in members}
    return out


def markdown(results: dict, members: list[str], args) -> str:
    names = {"measix": "m-EASIX", "fever_rule": "fever rule"}
    models = ["stack", *members, "measix", "fever_rule"]
    head = (
        f"Robustness at {LANDMARK_H:g} h: mean over the training draws of each size (column "
        f"'draws'); test {args.test_n} patients per world. Cells: AUROC (calibration slope). "
        f"'ok' = stack >= best member - {TOLERANCE} and >= compact (and slope 0.8-1.2 at "
        ">= 1,000 patients). Column 'oracle': AUROC (calibration slope) of the simulator's "
        "true risk on the test set: its slope differs from 1 by the test set's sampling "
        "alone.\n\n"
    )
    lines = [
        "| world | test events | oracle | n | draws | "
        + " | ".join(names.get(m, m) for m in models)
        + " | weights | ok |",
        "|---|---|---|---|---|" + "---|" * len(models) + "---|---|",
    ]
    for world, w in results.items():
        for n, s in w["sizes"].items():
            cells = [f"{s[f'{m}.auroc']:.3f} ({s[f'{m}.calibration_slope']:.2f})" for m in models]
            slope_ok = int(n) < 1000 or 0.8 <= s["stack.calibration_slope"] <= 1.2
            ok = s["meets_best_member"] and s["meets_compact"] and slope_ok
            weights = " / ".join(f"{s['weights'][m]:.2f}" for m in members)
            slope = w.get("oracle_calibration_slope")  # absent from runs before it was kept
            oracle_slope = "" if slope is None else f" ({slope:.2f})"
            lines.append(
                f"| {world} | {w['test_event_rate']:.1%} | {w['oracle_auroc']:.3f}{oracle_slope} | {n} "
                f"| {len(s['draws'])} | "
                + " | ".join(cells)
                + f" | {weights} | {'ok' if ok else 'FAILS'} |"
            )
    ratio = ["", "Oracle ratio (AUROC / oracle AUROC):", "",
             "| world | n | " + " | ".join(names.get(m, m) for m in models) + " |",
             "|---|---|" + "---|" * len(models)]  # fmt: skip
    for world, w in results.items():
        for n, s in w["sizes"].items():
            ratio.append(
                f"| {world} | {n} | "
                + " | ".join(f"{s[f'{m}.oracle_ratio']:.3f}" for m in models)
                + " |"
            )
    return head + "\n".join(lines + ratio) + "\n"


def main() -> None:
    fns = _world_fns()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", nargs="+", default=list(fns), choices=list(fns))
    ap.add_argument("--sizes", nargs="+", type=int, default=SIZES)
    ap.add_argument("--draws", type=int, default=DRAWS)
    ap.add_argument(
        "--first-draw",
        type=int,
        default=0,
        help="number the draws from here (more draws of a grid run in parts)",
    )
    ap.add_argument("--test-n", type=int, default=5000)
    ap.add_argument(
        "--seed-base",
        type=int,
        default=100_000,
        help="training draws use seed-base + 1000 x world + 100 x size + draw; "
        "another base gives development draws apart from the benchmark's",
    )
    ap.add_argument("--test-seed", type=int, default=TEST_SEED)
    ap.add_argument("--merge", nargs="+", default=None,
                    help="only combine these result .json files (runs of parts of the grid "
                    "with the same test set) into --out")  # fmt: skip
    ap.add_argument("--config", default=str(ROOT / "configs" / "stack.yaml"))
    ap.add_argument("--out", default=str(RESULTS / "robustness"))
    ap.add_argument("--replay-dir", default=None,
                    help="write each draw's member margins here (.npz) for blend replays; "
                    "with --merge: replay the blend of --config on them")  # fmt: skip
    ap.add_argument(
        "--compare-rules",
        action="store_true",
        help="compare blending-rule sets on the draws of --replay-dir (nested on "
        "their inner folds) and exit",
    )
    ap.add_argument(
        "--with-test",
        action="store_true",
        help="--compare-rules also on the draws' test set: development runs only",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.compare_rules:
        return compare_rules(args.replay_dir, args.with_test)
    from crs_ml.config import load_config
    from crs_ml.evaluation import metrics as M
    from crs_ml.features.catalogue import feature_catalogue
    from crs_ml.modeling.train import oracle_risk
    from crs_ml.simulate.params import default_params

    cfg = load_config(args.config)
    members = list(cfg.model.members)
    if args.merge:
        return merge(args, members)
    catalogue = feature_catalogue(cfg.features)
    results: dict = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as t:
        for world in args.worlds:
            tmp = Path(t) / world
            params = fns[world](default_params()).validate()
            Xt, yt, meta_t, truth = landmark_set(params, args.test_n, args.test_seed, tmp, cfg,
                                                 [LANDMARK_H])  # fmt: skip
            oracle = oracle_risk(meta_t, truth)
            oracle_auroc = M.auroc(yt, oracle)
            test = (Xt, yt, meta_t, oracle_auroc)
            w = results[world] = {
                "test_rows": int(len(yt)),
                "test_event_rate": float(yt.mean()),
                "oracle_auroc": float(oracle_auroc),
                # the true risk's own slope on this test set: how far a perfectly calibrated
                # model's slope strays from 1 by the test set's sampling alone
                "oracle_calibration_slope": float(
                    M.calibration_intercept_slope(yt, np.clip(oracle, 1e-9, 1 - 1e-9))[1]
                ),
                "sizes": {},
            }
            for s_i, n in enumerate(args.sizes):
                rows = []
                for d in range(args.first_draw, args.first_draw + args.draws):
                    # the seed of a draw names its world and size, not their position in
                    # this run's lists: a grid run in parts draws the same cohorts
                    w_id = list(fns).index(world)
                    s_id = SIZES.index(n) if n in SIZES else len(SIZES) + s_i
                    seed = args.seed_base + 1000 * w_id + 100 * s_id + d
                    train = landmark_set(params, n, seed, tmp, cfg, cfg.task.landmarks_h)
                    replay = (Path(args.replay_dir) / f"{world}_{n}_{d}.npz"
                              if args.replay_dir else None)  # fmt: skip
                    rows.append(
                        {"draw": d, **run_one(cfg, catalogue, train, test, cfg.seed, replay)}
                    )
                    print(f"{world} n={n} draw {d}: stack {rows[-1]['stack']['auroc']:.3f}, "
                          + ", ".join(f"{m} {rows[-1][m]['auroc']:.3f}" for m in
                                      [*members, "measix", "fever_rule"])
                          + f" [{time.perf_counter() - started:.0f} s]", flush=True)  # fmt: skip
                w["sizes"][str(n)] = {**summarise(rows, members), "draws": rows}
                write(results, members, args, started)  # after each size: a long run keeps
    print(markdown(results, members, args))  # what it measured if stopped


def replay_blend(path: Path, model_cfg) -> tuple[dict, dict]:
    """(test measures, weights) of the blend ``model_cfg`` (its ``blend_rules``) fit on one
    draw's saved inner out-of-fold member margins (:func:`run_one` with ``replay``). The
    members are the fits the draw made (deterministic given seed and settings), so this
    equals refitting the stack when only the blending rule changed."""
    from scipy.special import expit

    from crs_ml.modeling.stack import blend_from_margins, equal_weight_members

    d = np.load(path, allow_pickle=False)
    names = [str(n) for n in d["names"]]
    fold = d["fold"]
    folds = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(fold.max() + 1)]
    families = model_cfg.params.get("blend_rules", ("nnls",))
    below = model_cfg.params.get("few_events_below", 0)
    if below and "event_persons" not in d.files:
        raise SystemExit(f"{path}: no event_persons (written before the few-events rule); "
                         "re-run its draw")  # fmt: skip
    few = equal_weight_members(int(d["event_persons"]) if below else 0, below,
                               model_cfg.params.get("few_events_members"), names)  # fmt: skip
    _, _, coef, intercept = blend_from_margins(d["margins"], d["y"], folds, names, families,
                                               few_events=few)  # fmt: skip
    p = expit(intercept + d["test_margins"] @ coef)
    weights = coef / coef.sum() if coef.sum() > 0 else np.full(len(names), 1 / len(names))
    return measure(d["test_y"], p, float(d["oracle_auroc"])), dict(zip(names, weights.tolist(),
                                                                        strict=True))  # fmt: skip


#: blending-rule family sets compared on development draws (``--compare-rules``)
RULE_SETS = {
    "equal,nnls,single": ("equal", "nnls", "single"),
    "equal,nnls": ("equal", "nnls"),
    "equal,shrunk,nnls": ("equal", "shrunk", "nnls"),
    "equal,shrunk,nnls,single": ("equal", "shrunk", "nnls", "single"),
    "equal": ("equal",),
    "nnls": ("nnls",),
}


def _per_fold_auroc(eta: np.ndarray, y: np.ndarray, fold: np.ndarray) -> float:
    """Mean AUROC within the inner folds (margins of different folds are other fits)."""
    from crs_ml.evaluation import metrics as M

    return float(np.mean([M.auroc(y[fold == k], eta[fold == k]) for k in range(fold.max() + 1)]))


def compare_rules(replay_dir: str, use_test: bool) -> None:
    """AUROC of each blending-rule set of :data:`RULE_SETS` minus the best member's, per draw
    of ``replay_dir``: nested on the inner folds (the blend chosen and fit on the other inner
    folds' out-of-fold margins, measured on the held-out fold: training data only) and, with
    ``use_test`` (development draws with their own test set only), on the test set."""
    from scipy.special import expit

    from crs_ml.evaluation import metrics as M
    from crs_ml.modeling.stack import blend_from_margins

    def folds_of(fold):
        return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k))
                for k in range(fold.max() + 1)]  # fmt: skip

    shortfall: dict = {}
    for path in sorted(Path(replay_dir).glob("*.npz")):
        d = np.load(path, allow_pickle=False)
        names = [str(n) for n in d["names"]]
        margins, y, fold = d["margins"], d["y"], d["fold"]
        k_all = range(fold.max() + 1)
        inner_auroc = partial(_per_fold_auroc, y=y, fold=fold)
        best_inner = max(inner_auroc(margins[:, j]) for j in range(len(names)))
        if use_test:
            best_test = max(M.auroc(d["test_y"], d["test_margins"][:, j])
                            for j in range(len(names)))  # fmt: skip
        for label, families in RULE_SETS.items():
            eta = np.empty(len(y))
            for k in k_all:
                train = fold != k
                sub = np.unique(fold[train], return_inverse=True)[1]
                _, _, coef, b = blend_from_margins(margins[train], y[train], folds_of(sub),
                                                   names, families)  # fmt: skip
                eta[~train] = b + margins[~train] @ coef
            row = shortfall.setdefault(label, {"inner": [], "test": []})
            row["inner"].append(inner_auroc(eta) - best_inner)
            if use_test:
                _, _, coef, b = blend_from_margins(margins, y, folds_of(fold), names, families)
                p = expit(b + d["test_margins"] @ coef)
                row["test"].append(M.auroc(d["test_y"], p) - best_test)
    print(f"AUROC - best member's over {len(shortfall['equal']['inner'])} draws of {replay_dir}: "
          "mean / worst / draws below -0.003")  # fmt: skip
    for label, row in shortfall.items():
        cells = []
        for where in ("inner", "test") if use_test else ("inner",):
            v = np.asarray(row[where])
            cells.append(f"{where} {v.mean():+.4f} / {v.min():+.4f} / {(v < -TOLERANCE).sum()}")
        print(f"{label:26s} " + "   ".join(cells))


def reblend(results: dict, members: list[str], args) -> None:
    """Replace each draw's stack by the blend of ``--config`` replayed on its saved margins."""
    from crs_ml.config import load_config

    model_cfg = load_config(args.config).model
    for world, w in results.items():
        for n, cell in w["sizes"].items():
            for d, row in enumerate(cell["draws"]):
                row["stack"], row["weights"] = replay_blend(
                    Path(args.replay_dir) / f"{world}_{n}_{row.get('draw', d)}.npz", model_cfg
                )
            w["sizes"][n] = {**summarise(cell["draws"], members), "draws": cell["draws"]}


def load_config_model_params(path: str) -> dict:
    from crs_ml.config import load_config

    return {"blend_rules": list(load_config(path).model.params.get("blend_rules", ["nnls"]))}


def merge(args, members: list[str]) -> None:
    """Combine result files of parts of the grid (same test set) into one table."""
    results: dict = {}
    runs = []
    replayed = {}  # inputs whose stack rows were replayed (kept in the merged file's run)
    for path in args.merge:
        part = json.loads(Path(path).read_text())
        if "stack_replayed_with" in part["run"]:
            replayed[Path(path).name] = part["run"]["stack_replayed_with"]
        # a file merged before lists its parts' runs: merging it again takes those
        runs.extend(part["run"]["parts"] if "parts" in part["run"] else [part["run"]])
        for world, w in part["results"].items():
            if world not in results:
                results[world] = {**w, "sizes": {}}
            for n, cell in w["sizes"].items():
                draws = results[world]["sizes"].get(n, {"draws": []})["draws"] + cell["draws"]
                draws.sort(key=lambda r: r.get("draw", 0))
                results[world]["sizes"][n] = {**summarise(draws, members), "draws": draws}
    if len({(r["test_n"], r.get("test_seed", TEST_SEED)) for r in runs}) != 1:
        raise SystemExit("--merge: the parts were measured on different test sets")
    if args.replay_dir:
        reblend(results, members, args)
    order = list(_world_fns())
    results = {
        w: {**results[w], "sizes": dict(sorted(results[w]["sizes"].items(), key=lambda kv: int(kv[0])))}
        for w in sorted(results, key=order.index)
    }  # fmt: skip
    args.test_n = runs[0]["test_n"]
    meta = {"parts": runs, "seconds": sum(r["seconds"] for r in runs)}
    if replayed:
        meta["inputs_with_replayed_stack"] = replayed
    if args.replay_dir:  # the stack rows are the blend of --config replayed on the members
        meta["stack_replayed_with"] = {"config": Path(args.config).name,
                                       **dict(load_config_model_params(args.config))}  # fmt: skip
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"run": meta, "results": results}, indent=1))
    out.with_suffix(".md").write_text(markdown(results, members, args))
    print(markdown(results, members, args))


def write(results: dict, members: list[str], args, started: float) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"worlds": args.worlds, "sizes": args.sizes, "draws": args.draws,
            "test_n": args.test_n, "test_seed": args.test_seed, "seed_base": args.seed_base,
            "config": Path(args.config).name,
            "seconds": round(time.perf_counter() - started)}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps({"run": meta, "results": results}, indent=1))
    out.with_suffix(".md").write_text(markdown(results, members, args))


if __name__ == "__main__":
    main()
