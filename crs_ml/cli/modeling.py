"""``crs-ml train``, ``crs-ml compare`` and ``crs-ml tune``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crs_ml.cli._common import console as make_console
from crs_ml.cli._common import progress_bar, write_json


def _load(data: Path, config: Path | None, overrides: list[str] | None, experiment: str | None):
    from crs_ml.config import load_config
    from crs_ml.ingest.formats import load_data

    cfg = load_config(config, overrides or [])
    if experiment:
        cfg.mlflow.experiment = experiment
    cohort = load_data(data, cfg.data)
    return cfg, cohort


def metrics_table(metrics: dict[str, float], landmarks: list[float], title: str):
    """Rich table: one row per slice (landmark, treated / untreated, all stacked)."""
    import math

    from rich.table import Table

    def fmt(name, slice_, ci=True, digits=3):
        v = metrics.get(f"{name}_{slice_}")
        if v is None or not math.isfinite(v):
            return "-"
        lo, hi = metrics.get(f"{name}_lo_{slice_}"), metrics.get(f"{name}_hi_{slice_}")
        if ci and lo is not None and hi is not None:
            return f"{v:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"
        return f"{v:.{digits}f}"

    table = Table(title=title)
    for col in (
        "slice",
        "n",
        "events",
        "AUROC (95% CI)",
        "AUPRC (95% CI)",
        "Brier",
        "cal. intercept",
        "cal. slope",
        "oracle AUROC",
        "model/oracle",
    ):
        table.add_column(col, justify="right" if col != "slice" else "left")
    slices = []
    for h in landmarks:
        tag = f"L{h:g}"
        slices += [
            (tag, f"{h:g} h"),
            (f"{tag}_untreated", f"{h:g} h untreated"),
            (f"{tag}_treated", f"{h:g} h treated"),
            # day 14 on everyone at risk, the censored through IPCW (n_ipcw_L24, ...)
            (f"ipcw_{tag}", f"{h:g} h, all at risk (IPCW)"),
        ]
    slices.append(("all", "all landmarks"))
    # short horizons (e.g. n_next24h_L24): IPCW AUROC and Brier and the oracle ratio, no CI
    hours = sorted({float(k.split("_")[1][4:-1]) for k in metrics
                    if k.startswith("n_next") and k.count("_") == 2})  # fmt: skip
    for h in landmarks:
        slices += [(f"next{w:g}h_L{h:g}", f"{h:g} h, next {w:g} h") for w in hours]
    for key, label in slices:
        if f"n_{key}" not in metrics:
            continue
        table.add_row(
            label,
            f"{metrics[f'n_{key}']:.0f}",
            f"{metrics.get(f'events_{key}', 0):.0f}",
            fmt("auroc", key),
            fmt("auprc", key),
            fmt("brier", key, False, 4),
            fmt("calibration_intercept", key, False, 2),
            fmt("calibration_slope", key, False, 2),
            fmt("oracle_auroc", key, False),
            fmt("oracle_ratio", key, False),
        )
    return table


def train(
    data: Annotated[
        Path, typer.Option(help="cohort folder (patients, observations, events, outcomes)")
    ],
    config: Annotated[
        Path | None, typer.Option(help="YAML config (default: built-in defaults)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override, e.g. model.max_depth=3")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name")] = None,
    validation: Annotated[
        str | None, typer.Option(help="cv (repeated k-fold) or optimism (Harrell bootstrap)")
    ] = None,
    register: Annotated[bool, typer.Option(help="register the model as crs-severity")] = False,
    alias: Annotated[
        str | None, typer.Option(help="alias to point at the registered version, e.g. champion")
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write run id, model URI and metrics as JSON")
    ] = None,
) -> None:
    """Cross-validate one configuration by person, refit on all data, log it to MLflow."""

    from crs_ml.modeling.train import train_model
    from crs_ml.tracking.runs import check_alias, log_training_run
    from crs_ml.tracking.store import setup_tracking

    check_alias(alias)  # before training, not after it
    overrides = list(set_ or [])
    if validation:
        overrides.append(f"cv.validation={validation}")
    cfg, cohort = _load(data, config, overrides, experiment)
    console = make_console()
    setup_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)  # store exists before training
    with progress_bar() as update:
        result = train_model(cohort, cfg, progress=update)
        update("logging to MLflow", 0, 1)
        info = log_training_run(
            result, cohort, register=register or bool(alias), alias=alias, run_name=run_name
        )
        update("logging to MLflow", 1, 1)
    console.print(
        metrics_table(
            result.metrics,
            cfg.cv.report_landmarks_h,
            f"{cfg.model.type}: {'out-of-fold' if cfg.cv.validation == 'cv' else 'optimism-corrected'} performance",
        )
    )
    if result.dropped_variables:
        console.print(
            "features: no value in the training cohort, left out: "
            + ", ".join(result.dropped_variables)
        )
    s = result.sample_size
    console.print(
        f"events per candidate parameter: {s['events_per_parameter']:.2f} ({s['n_events']} events / {s['n_candidate_parameters']} parameters); Riley minimum n: {s.get('riley_min_n', float('nan')):.0f} patients (cohort: {s['n_patients']})"
    )
    console.print(
        f"run id:    {info.run_id}\nmodel URI: {info.model_uri}\nstore:     {info.tracking_uri}"
    )
    if info.registered_version:
        console.print(
            f"registered: {cfg.mlflow.registered_model} version {info.registered_version}"
            + (f" (alias {alias})" if alias else "")
        )
    if json_out:
        write_json(
            json_out,
            {
                "run_id": info.run_id,
                "experiment_id": info.experiment_id,
                "model_uri": info.model_uri,
                "tracking_uri": info.tracking_uri,
                "registered_model": cfg.mlflow.registered_model
                if info.registered_version
                else None,
                "registered_version": info.registered_version,
                "metrics": result.metrics,
                "sample_size": result.sample_size,
            },
        )


def compare(
    experiment: Annotated[str, typer.Option(help="MLflow experiment name")] = "crs-ml",
    landmark: Annotated[float, typer.Option(help="landmark (hours) to compare at")] = 24.0,
    bootstrap: Annotated[int, typer.Option(help="paired bootstrap replicates")] = 1000,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the leaderboard as JSON")
    ] = None,
) -> None:
    """Leaderboard of training runs with a paired bootstrap AUROC test vs the best run."""
    import mlflow

    from crs_ml.tracking.leaderboard import leaderboard, render, to_records
    from crs_ml.tracking.store import existing_tracking_uri

    mlflow.set_tracking_uri(existing_tracking_uri(None))  # reads runs: never creates a store
    board = leaderboard(experiment, landmark, n_boot=bootstrap)
    if board.empty:
        typer.echo(
            f"no finished training runs reporting the {landmark:g} h landmark in experiment '{experiment}'"
        )
        raise typer.Exit(1)
    make_console(200).print(render(board, landmark))
    if json_out:
        write_json(
            json_out, {"experiment": experiment, "landmark_h": landmark, "runs": to_records(board)}
        )


def tune(
    data: Annotated[Path, typer.Option(help="cohort folder")],
    trials: Annotated[int, typer.Option(help="Optuna trials per study")] = 20,
    config: Annotated[Path | None, typer.Option(help="base YAML config")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override, e.g. cv.bootstrap=200")
    ] = None,
    outer_folds: Annotated[int, typer.Option(help="outer folds (reported estimate)")] = 3,
    inner_folds: Annotated[int, typer.Option(help="inner folds (trial scores)")] = 3,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name")] = None,
    out: Annotated[Path, typer.Option(help="where to write the best configuration")] = Path(
        "configs/tuned.yaml"
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the result as JSON")
    ] = None,
) -> None:
    """Nested-CV hyperparameter search for xgboost; writes the best config as YAML."""
    from crs_ml.cli.reporting import warn
    from crs_ml.tracking.runs import log_tune_run

    if trials < 1:
        raise typer.BadParameter("--trials must be >= 1")
    cfg, cohort = _load(data, config, list(set_ or []), experiment)
    console = make_console()
    with progress_bar() as update:
        run = log_tune_run(cohort, cfg, trials, outer_folds, inner_folds, progress=update)
    result, text, uri = run.result, run.config_yaml, run.tracking_uri
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    console.print(
        metrics_table(
            result.outer_metrics,
            cfg.cv.report_landmarks_h,
            "nested CV estimate of the tuned pipeline (not optimistic)",
        )
    )
    console.print(
        f"best inner-CV AUROC on all data: {result.best_inner_auroc:.3f} (starting "
        f"configuration on the same folds: {result.default_inner_auroc:.3f})\n"
        f"best params: {result.best_params}"
    )
    warn(console, result.warnings, "tune")
    console.print(f"wrote {out}; tune run {run.run_id} in {uri}")
    if json_out:
        write_json(
            json_out,
            {
                "run_id": run.run_id,
                "best_params": result.best_params,
                "nested_metrics": result.outer_metrics,
                "inner_auroc_tuned": result.best_inner_auroc,
                "inner_auroc_starting_config": result.default_inner_auroc,
                "warnings": result.warnings,
                "config": str(out),
            },
        )


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(compare)
    app.command()(tune)
