"""``crs-ml score``, ``crs-ml export`` and ``crs-ml serve``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from crs_ml.cli._common import DEFAULT_MODEL, progress_bar, write_json


def _data_options(bundle, config: Path | None):
    """Loading options: the model's own (unit and censoring policies must match training),
    replaced by the ``data`` section of ``--config`` when given."""
    from crs_ml.config import DataConfig, load_config

    if config is not None:
        return load_config(config).data
    data = dict(bundle.manifest.get("config", {}).get("data", {}) or {})
    data["path"] = None
    return DataConfig.model_validate(data)


def score(
    data: Annotated[Path, typer.Option(help="cohort folder (patients, observations, events)")],
    out: Annotated[Path, typer.Option(help="scores file: .parquet or .csv")],
    model: Annotated[
        str, typer.Option(help="model: MLflow URI, exported model folder or bundle folder")
    ] = DEFAULT_MODEL,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="score as of this ISO 8601 time, e.g. 2024-02-03T14:30 (naive = UTC; "
            "needs infusion_time); day/month text like 03/02/2024 is refused"
        ),
    ] = None,
    as_of_hours: Annotated[
        float | None, typer.Option(help="score at this many hours since infusion")
    ] = None,
    errors: Annotated[
        Path | None,
        typer.Option(help="CSV of rejected input rows (default: <out>.errors.csv when any)"),
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="patients per chunk")] = 5000,
    config: Annotated[
        Path | None, typer.Option(help="YAML config whose data section sets loading options")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the summary as JSON")
    ] = None,
    top: Annotated[
        int, typer.Option(min=0, help="print the N highest-risk patients with their drivers")
    ] = 0,
    board: Annotated[
        Path | None,
        typer.Option(help="also write the ward board: one self-contained HTML page (.html)"),
    ] = None,
    max_unscored_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="exit 3 when more than this share of patients could not be scored (status "
            "error); the scores file is still written. A run scoring nobody always exits 3",
        ),
    ] = None,
) -> None:
    """Score every patient of a cohort with risk, risk band and SHAP drivers.

    One row per input patient, always: status scored, not_at_risk, too_early or error, with
    the reason in message. Without --as-of / --as-of-hours each patient is scored at the
    landmark just before their latest observation. Exit 3 (the file still written) when no
    patient could be scored, or more than --max-unscored-fraction were in status error.
    """
    import tempfile

    from crs_ml.errors import EXIT_UNSCORED, InputError
    from crs_ml.ingest.formats import as_contract_folder
    from crs_ml.ingest.values import parse_time
    from crs_ml.scoring.batch import output_kind, score_to_file
    from crs_ml.tracking.models import resolve_model

    if as_of is not None and as_of_hours is not None:
        raise InputError("give --as-of or --as-of-hours, not both")
    if as_of is not None:  # before the model loads; the time columns' own parser
        try:
            parse_time(as_of, "--as-of")
        except InputError as exc:
            raise InputError(f"{exc}; or --as-of-hours H (hours since infusion)") from None
    output_kind(out)
    if board is not None and board.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--board {board}: the file name must end in .html")
    bundle = resolve_model(model)
    with progress_bar() as update, tempfile.TemporaryDirectory(prefix="crs_ml_data_") as tmp:
        # OMOP and other formats: their contract tables, then the chunked scorer as usual
        data = as_contract_folder(data, _data_options(bundle, config), Path(tmp) / "cohort")
        result = score_to_file(
            bundle, data, out, options=_data_options(bundle, config), as_of=as_of,
            as_of_hours=as_of_hours, errors=errors, chunk_size=chunk_size, top=top,
            progress=update,
        )  # fmt: skip
        if board is not None:
            _write_board(board, bundle, data, out, config, model)
    summary = ", ".join(f"{k} {v}" for k, v in result.status.items())
    bands = ", ".join(f"{k} {v}" for k, v in result.completeness.items())
    typer.echo(f"key inputs measured, scored patients: {bands}")
    typer.echo(f"{result.n_patients} patients: {summary} -> {out}")
    if result.errors is not None:
        typer.echo(f"{result.rejected_rows} rejected input rows -> {result.errors}")
    if result.unknown_variables:
        names = sorted(result.unknown_variables.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{k} {v:,}" for k, v in names[:5]) + (" ..." if len(names) > 5 else "")
        typer.echo(f"{sum(result.unknown_variables.values()):,} input rows of variables not in "
                   f"the catalogue left out ({shown}; crs-ml check lists them)")  # fmt: skip
    if top:
        _print_top(result.top, top)
    failure = result.failure(max_unscored_fraction)
    if json_out:
        write_json(json_out, {"out": str(out), "errors": str(result.errors) if result.errors
                              else None, "model": model, "n_patients": result.n_patients,
                              "status": result.status, "completeness": result.completeness,
                              "rejected_rows": result.rejected_rows,
                              "unknown_variable_rows": result.unknown_variables,
                              "failure": failure})  # fmt: skip
    if failure is not None:
        typer.echo(f"error: {failure}; scores written to {out} (exit {EXIT_UNSCORED})", err=True)
        sys.exit(EXIT_UNSCORED)


def _write_board(path: Path, bundle, data: Path, out: Path, config: Path | None, model: str):
    """The ward board of the scores just written (:mod:`crs_ml.scoring.board`), written atomically."""
    import pandas as pd

    from crs_ml.ingest.load import load_cohort
    from crs_ml.scoring.board import board

    if out.name.lower().endswith(".csv"):
        # only empty cells are missing: ids such as 'NA' or 'null' stay ids, as when loaded
        scores = pd.read_csv(out, dtype={"patient_id": str, "status": str, "message": str},
                             keep_default_na=False, na_values=[""])  # fmt: skip
    else:
        scores = pd.read_parquet(out)
    cohort = load_cohort(data, _data_options(bundle, config))
    board(scores, cohort, bundle, path, model_name=model)
    typer.echo(f"ward board of {len(scores)} patients -> {path}")


def _print_top(scores, n: int) -> None:
    """The ``n`` highest-risk scored patients with their band and top drivers."""
    from rich.table import Table

    from crs_ml.cli._common import console

    scored = scores[scores["status"] == "scored"].sort_values("risk", ascending=False).head(n)
    table = Table(title=f"{len(scored)} highest-risk patients")
    for col in ("patient", "hours", "landmark", "risk", "band", "completeness",
                "top drivers (SHAP, log-odds)"):  # fmt: skip
        table.add_column(col, justify="right" if col in ("hours", "landmark", "risk") else "left")
    for r in scored.itertuples(index=False):
        drivers = str(r.top_drivers).replace("; ", "\n")
        table.add_row(str(r.patient_id), f"{r.hours_since_infusion:.0f}", f"{r.landmark_h:g} h",
                      f"{r.risk:.1%}", str(r.risk_band),
                      f"{r.completeness:.0%} {r.completeness_band}", drivers)  # fmt: skip
    console(160).print(table)


def export(
    out: Annotated[Path, typer.Option(help="folder to create, e.g. models/crs-severity-v3")],
    model: Annotated[str, typer.Option(help="MLflow model URI")] = DEFAULT_MODEL,
    force: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
) -> None:
    """Write a self-contained MLflow model folder (no tracking store needed to use it)."""
    import shutil
    import tempfile

    from crs_ml.errors import InputError
    from crs_ml.modeling.bundle import load_model_folder
    from crs_ml.tracking.models import download_model

    if out.exists() and not force:
        raise InputError(f"{out} exists: choose another folder or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        local = download_model(model, Path(tmp) / "download")
        bundle = load_model_folder(local)  # refuses anything that is not a usable crs_ml model
        staged = Path(tmp) / "model"
        os.replace(local, staged)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staged, out)
    typer.echo(
        f"exported {model} ({bundle.model_type}, {len(bundle.feature_names)} features) -> {out}"
    )


def serve_command(model: str, host: str, port: int) -> tuple[str, list[str], dict[str, str]]:
    """(executable, argv, environment) of ``mlflow models serve`` for this environment."""
    import shutil

    from crs_ml.errors import ConfigError
    from crs_ml.tracking.store import resolve_tracking_uri

    bin_dir = Path(sys.executable).parent
    exe = bin_dir / "mlflow"
    if not exe.is_file():
        found = shutil.which("mlflow")
        if found is None:
            raise ConfigError("the mlflow command is not installed in this environment")
        exe = Path(found)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    if not Path(model).exists():  # a URI: the store and the name, version or alias first
        from crs_ml.tracking.models import check_model_uri

        check_model_uri(model)
    env.setdefault("MLFLOW_TRACKING_URI", resolve_tracking_uri(None))
    argv = [str(exe), "models", "serve", "-m", model, "--env-manager", "local",
            "--host", host, "--port", str(port), "--workers", "1"]  # fmt: skip
    return str(exe), argv, env


def serve(
    model: Annotated[str, typer.Option(help="MLflow model URI or model folder")] = DEFAULT_MODEL,
    port: Annotated[int, typer.Option(help="port to listen on")] = 5001,
    host: Annotated[str, typer.Option(help="interface to bind (loopback by default)")] = (
        "127.0.0.1"
    ),
) -> None:
    """Serve the model over HTTP with MLflow (POST /invocations, GET /ping)."""
    exe, argv, env = serve_command(model, host, port)
    typer.echo(f"serving {model} on http://{host}:{port} (POST /invocations)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(exe, argv, env)


def register(app: typer.Typer) -> None:
    app.command("score")(score)
    app.command()(export)
    app.command()(serve)
