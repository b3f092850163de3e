"""Leaderboard of training runs with a paired bootstrap test against the best run.

Runs are compared at one landmark on their out-of-fold predictions (each patient's risk
averaged over the CV repeats, so the difference can differ slightly from the difference of
the logged AUROCs, which pool the repeats' rows), joined by the salted patient key. Two runs
are paired only when their ``dataset_digest`` tags are equal
(:func:`crs_ml.fingerprints.dataset_digest`: input files, table contents and landmark rows):
patient ids alone do not identify data, since the simulator and two hospital extracts can
reuse them for different patients. Otherwise the row shows no difference and no p-value,
with the reason in ``not_paired`` (:data:`NOT_PAIRED`). A run whose configuration was
selected (``crs-ml tune``) on the same data it reports is flagged: its estimate is
optimistic. A run whose landmark has fewer than
:data:`crs_ml.evaluation.metrics.MIN_SLICE_EVENTS` events or non-events is flagged ``too_few_events``.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd

from crs_ml.errors import CrsMlError
from crs_ml.evaluation import metrics as M
from crs_ml.tracking.store import shown_uri

KEY_PARAMS = ("max_depth", "learning_rate", "n_estimators", "C", "threshold_c")

#: why a run is not compared with the best run (the ``not_paired`` column)
NOT_PAIRED = {
    "no_digest": "no dataset digest",
    "different_data": "different data",
    "no_oof": "no out-of-fold predictions",
    "no_shared_rows": "no shared rows",
    "one_class": "one outcome class",
    "member": "stack member, on the blend's folds",
}
#: the metrics a stack run logs per member (crs_ml.modeling.train): ``member.<name>.<metric>``
MEMBER_PREFIX = "member."


def _finite(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def list_runs(experiment: str, landmark_h: float) -> pd.DataFrame:
    """Finished training runs of ``experiment`` that report the landmark (newest first)."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise CrsMlError(
            f"no experiment named '{experiment}' in {shown_uri(mlflow.get_tracking_uri())}"
        )
    runs = mlflow.search_runs(
        experiment_ids=[exp.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    col = f"metrics.auroc_L{landmark_h:g}"
    if runs.empty or col not in runs:
        return pd.DataFrame()
    return runs[runs[col].notna()].reset_index(drop=True)


def _oof(run_id: str, landmark_h: float, cache: dict) -> pd.DataFrame | None:
    """Out-of-fold risks of a run at one landmark, averaged over CV repeats."""
    if run_id in cache:
        return cache[run_id]
    import mlflow

    frame = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="oof_predictions.parquet", dst_path=tmp
            )
            raw = pd.read_parquet(path)
        except Exception:  # runs validated by optimism bootstrap have no out-of-fold file
            raw = None
        if raw is not None:
            raw = raw[raw["landmark_h"] == float(landmark_h)]
            frame = raw.groupby(["patient_key", "landmark_h"], as_index=False).agg(
                person_key=("person_key", "first"), y=("y", "first"), risk=("risk", "mean")
            )
    cache[run_id] = frame
    return frame


def leaderboard(
    experiment: str, landmark_h: float = 24.0, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """One row per run, best AUROC first, with the paired AUROC difference vs the best."""
    runs = list_runs(experiment, landmark_h)
    if runs.empty:
        return pd.DataFrame()
    tag = f"L{landmark_h:g}"

    def metric(name: str) -> pd.Series:
        col = f"metrics.{name}_{tag}"
        return runs[col] if col in runs else pd.Series(np.nan, index=runs.index)

    def param(name: str) -> pd.Series:
        col = f"params.model.{name}"
        return runs[col] if col in runs else pd.Series(None, index=runs.index, dtype=object)

    board = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "run_name": runs.get("tags.mlflow.runName", pd.Series("", index=runs.index)),
            "model": param("type"),
            "monotone": param("monotone"),
            "validation": runs.get("params.cv.validation", pd.Series("cv", index=runs.index)),
            "auroc": metric("auroc"),
            "auroc_lo": metric("auroc_lo"),
            "auroc_hi": metric("auroc_hi"),
            "auprc": metric("auprc"),
            "brier": metric("brier"),
            "calibration_slope": metric("calibration_slope"),
            "oracle_ratio": metric("oracle_ratio"),
            "too_few_events": metric("too_few_events").eq(1.0),
            "dataset": runs.get("tags.dataset_digest", pd.Series("", index=runs.index))
            .fillna("")
            .astype(str),
            "optimistic": runs.get(
                "tags.selected_on_same_data", pd.Series("", index=runs.index)
            ).eq("true"),
        }
    )
    board["key_params"] = [
        ", ".join(
            f"{k}={runs.at[i, f'params.model.{k}']}"
            for k in KEY_PARAMS
            if f"params.model.{k}" in runs and pd.notna(runs.at[i, f"params.model.{k}"])
        )
        for i in runs.index
    ]
    board = board.sort_values("auroc", ascending=False, kind="stable").reset_index(drop=True)
    best = board.iloc[0]
    cache: dict = {}
    diffs = []
    for _, row in board.iterrows():
        result = {
            "diff_vs_best": np.nan,
            "diff_lo": np.nan,
            "diff_hi": np.nan,
            "p_value": np.nan,
            "paired_rows": 0,
            "not_paired": "",
        }
        if row["run_id"] == best["run_id"]:
            result.update(diff_vs_best=0.0)
        else:
            result.update(_paired(best, row, landmark_h, cache, n_boot, seed))
        diffs.append(result)
    return with_members(pd.concat([board, pd.DataFrame(diffs)], axis=1), runs, tag)


def with_members(board: pd.DataFrame, runs: pd.DataFrame, tag: str) -> pd.DataFrame:
    """``board`` with, right after each stack run, one row per member: the member's
    out-of-fold metrics on the blend's own outer folds (the member as refit inside the stack
    on each outer training fold). Member rows are not paired with the best run."""
    by_id = runs.set_index("run_id")
    rows = []
    for _, row in board.iterrows():
        rows.append(row.to_dict())
        run = by_id.loc[row["run_id"]]
        names = sorted(
            {c[len("metrics." + MEMBER_PREFIX):].rsplit(".", 1)[0] for c in run.index
             if c.startswith("metrics." + MEMBER_PREFIX) and c.endswith(f".auroc_{tag}")
             and pd.notna(run[c])}
        )  # fmt: skip
        for name in names:

            def metric(key, name=name, run=run):
                return _finite(run.get(f"metrics.{MEMBER_PREFIX}{name}.{key}_{tag}"))

            weight = _finite(run.get(f"metrics.stack_weight_{name}"))
            rows.append({
                **row.to_dict(),
                "run_name": f"  member {name} (weight {weight:.2f})",
                "model": f"{row['model']}:{name}",
                "auroc": metric("auroc"), "auroc_lo": np.nan, "auroc_hi": np.nan,
                "auprc": metric("auprc"), "brier": metric("brier"),
                "calibration_slope": metric("calibration_slope"),
                "oracle_ratio": metric("oracle_ratio"), "key_params": "",
                "diff_vs_best": np.nan, "diff_lo": np.nan, "diff_hi": np.nan,
                "p_value": np.nan, "paired_rows": 0, "not_paired": NOT_PAIRED["member"],
            })  # fmt: skip
    return pd.DataFrame(rows, columns=board.columns).reset_index(drop=True)


def _paired(best, row, landmark_h: float, cache: dict, n_boot: int, seed: int) -> dict:
    """Paired AUROC difference of ``row`` vs ``best``, or the reason there is none."""
    if not best["dataset"] or not row["dataset"]:
        return {"not_paired": NOT_PAIRED["no_digest"]}
    if best["dataset"] != row["dataset"]:
        return {"not_paired": NOT_PAIRED["different_data"]}
    ref = _oof(best["run_id"], landmark_h, cache)
    other = _oof(row["run_id"], landmark_h, cache)
    if ref is None or other is None:
        return {"not_paired": NOT_PAIRED["no_oof"]}
    joined = ref.merge(other, on=["patient_key", "landmark_h"], suffixes=("_best", ""))
    if joined.empty:
        return {"not_paired": NOT_PAIRED["no_shared_rows"]}
    if not 0 < joined["y"].sum() < len(joined):
        return {"not_paired": NOT_PAIRED["one_class"], "paired_rows": int(len(joined))}
    d, lo, hi, p = M.paired_bootstrap_diff(
        joined["y"].to_numpy(),
        joined["risk"].to_numpy(),
        joined["risk_best"].to_numpy(),
        joined["person_key"].to_numpy(),
        metric=M.auroc,
        n_boot=n_boot,
        seed=seed,
    )
    return {
        "diff_vs_best": d,
        "diff_lo": lo,
        "diff_hi": hi,
        "p_value": p,
        "paired_rows": int(len(joined)),
    }


def render(board: pd.DataFrame, landmark_h: float):
    """A rich table of the leaderboard."""
    from rich.table import Table

    table = Table(
        title=f"Leaderboard at the {landmark_h:g} h landmark (out-of-fold, 95% CI by person bootstrap)"
    )
    for col in (
        "#",
        "run",
        "model",
        "key params",
        "AUROC (95% CI)",
        "AUPRC",
        "Brier",
        "cal. slope",
        "oracle ratio",
        "dAUROC vs best (95% CI)",
        "p",
    ):
        table.add_column(col, justify="left" if col in ("run", "model", "key params") else "right")
    for i, r in board.iterrows():
        ci = (
            f"{r.auroc:.3f} ({r.auroc_lo:.3f}-{r.auroc_hi:.3f})"
            if np.isfinite(_finite(r.auroc_lo))
            else f"{r.auroc:.3f}"
        ) + (" (too few events)" if r.too_few_events else "")
        if i == 0:
            diff, p = "best", ""
        elif np.isfinite(r.diff_vs_best):
            diff, p = (
                f"{r.diff_vs_best:+.3f} ({r.diff_lo:+.3f} to {r.diff_hi:+.3f})",
                f"{r.p_value:.3f}",
            )
        else:
            diff, p = f"n/a ({r.not_paired or NOT_PAIRED['no_shared_rows']})", ""
        model = str(r.model) + (" (monotone)" if str(r.monotone) == "True" else "")
        name = str(r.run_name or r.run_id[:8]) + (" *" if r.optimistic else "")
        table.add_row(
            str(i + 1),
            name,
            model,
            r.key_params or "-",
            ci,
            f"{r.auprc:.3f}",
            f"{r.brier:.4f}",
            f"{_finite(r.calibration_slope):.2f}",
            f"{_finite(r.oracle_ratio):.3f}",
            diff,
            p,
        )
    table.caption = (
        "dAUROC: paired person bootstrap on out-of-fold risk averaged over CV repeats. "
        "* configuration selected on the same data it reports (optimistic); "
        "n/a (reason) = not paired with the best run: only runs on the same data (equal "
        "dataset digest) with out-of-fold predictions are compared; "
        f"too few events = fewer than {M.MIN_SLICE_EVENTS} events or non-events, no interval"
    )
    return table


def to_records(board: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
        for row in board.to_dict(orient="records")
    ]
