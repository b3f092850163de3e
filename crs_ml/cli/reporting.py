"""``crs-ml validate`` (external validation report) and ``crs-ml recalibrate`` (site update)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from crs_ml.cli._common import DEFAULT_MODEL, parse_landmarks, progress_bar, write_json
from crs_ml.cli._common import console as make_console


def _load_data(data: Path, config: Path | None):
    from crs_ml.config import load_config
    from crs_ml.ingest.formats import load_data

    options = load_config(config).data if config else None
    return load_data(data, options)


def print_verdict(console, verdict: dict[str, Any]) -> None:
    """The verdict first: its level and recommendations, then one line per finding."""
    from rich.markup import escape

    style = {"ok": "green", "caution": "yellow", "warning": "bold red"}
    console.print(f"[{style[verdict['level']]}]VERDICT: {verdict['level'].upper()}[/]")
    for r in verdict["recommendations"]:
        console.print(f"  [{style[r['level']]}]{r['level'].upper()}[/] {escape(r['text'])}")
    for key, v in verdict["landmarks"].items():
        for f in (v["discrimination"], v["calibration"], *v["baselines"], v["sample_size"]):
            console.print(f"  {key} h {f['level'].upper()}: {escape(f['text'])}")


def warn(console, warnings: list[str], what: str) -> None:
    """Each warning on the console, marked so it stands out without colour too."""
    from rich.markup import escape

    for w in warnings:
        console.print(f"[bold red]WARNING[/] ({what}): {escape(w)}")


def summary_table(metrics: dict[str, Any]):
    """Rich table: per landmark and slice n, events, AUROC, calibration, Brier."""
    from rich.table import Table

    from crs_ml.reporting.html import fmt

    def ci(block, name, digits=3):
        lo, hi = block.get(f"{name}_ci") or (None, None)
        v = fmt(block.get(name), digits).replace("&ndash;", "-")
        if lo is None or hi is None or v == "-":
            return v
        return f"{v} ({lo:.{digits}f} to {hi:.{digits}f})"

    table = Table(title="External validation")
    for col in ("slice", "n", "events", "AUROC (95% CI)", "cal. intercept", "cal. slope", "Brier"):
        table.add_column(col, justify="left" if col == "slice" else "right")
    rows = [
        (f"{k} h {part}", e[part])
        for k, e in metrics["landmarks"].items()
        for part in ("overall", "untreated", "treated")
    ]
    rows.append(("all landmarks", metrics["all_landmarks"]))
    for label, b in rows:
        events = f"{b['n_events']}" + (" (<100)" if b["n_events"] < 100 else "")
        events += " too few events" if b.get("too_few_events") else ""
        table.add_row(
            label,
            str(b["n"]),
            events,
            ci(b, "auroc"),
            ci(b, "calibration_intercept", 2),
            ci(b, "calibration_slope", 2),
            fmt(b.get("brier"), 4).replace("&ndash;", "-"),
        )
    return table


def validate(
    data: Annotated[Path, typer.Option(help="labelled cohort folder (with outcomes)")],
    out: Annotated[Path, typer.Option(help="output folder for metrics.json and report.html")],
    model: Annotated[
        str, typer.Option(help="bundle folder, exported MLflow model folder, runs:/ or models:/")
    ] = DEFAULT_MODEL,
    landmarks: Annotated[
        str | None,
        typer.Option(
            help="landmarks to report, hours (default: those of 24,48,72,120 the model was "
            "trained at)"
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap replicates (by person)")] = 1000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="YAML config whose data section reads the cohort")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default: the model's)")
    ] = None,
    mlflow_log: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="log an evaluation run")
    ] = True,
) -> None:
    """Score a labelled cohort from another site and write a validation report."""

    from crs_ml.config import DEFAULT_REPORT_LANDMARKS_H
    from crs_ml.evaluation.validate import model_settings, validate_cohort
    from crs_ml.reporting.report import write_report
    from crs_ml.tracking.models import open_model
    from crs_ml.tracking.runs import log_validation_run

    lms = parse_landmarks(landmarks) if landmarks else None
    if bootstrap < 0:
        raise typer.BadParameter("--bootstrap must be >= 0")
    console = make_console()
    with tempfile.TemporaryDirectory(prefix="crs_ml_validate_") as tmp:
        bundle, info = open_model(model, Path(tmp))
        if lms is None:  # the default report landmarks the model was trained at
            trained = set(model_settings(bundle)["landmarks_h"])
            lms = [h for h in DEFAULT_REPORT_LANDMARKS_H if h in trained] or sorted(trained)[:1]
        cohort = _load_data(data, config)
        with progress_bar() as update:
            result = validate_cohort(bundle, cohort, lms, bootstrap, seed, progress=update)
            update("writing report", 0, 1)
            paths = write_report(result, bundle, info, out, seed)
            update("writing report", 1, 1)
    run_id = None
    if mlflow_log:
        exp = experiment or model_settings(bundle)["experiment"]
        run_id = log_validation_run(paths, result.metrics, info, exp)
        result.metrics["mlflow_run_id"] = run_id
        write_json(paths["metrics"], result.metrics)
        paths["metrics"].chmod(0o644)
    m = result.metrics
    print_verdict(console, m["verdict"])
    console.print(summary_table(m))
    for key, entry in m["landmarks"].items():
        for name, b in entry.get("baselines", {}).items():
            d = b.get("auroc_diff_model_minus_baseline")
            if d:
                console.print(
                    f"{key} h: AUROC model - {name}: {d['diff']:+.3f} "
                    f"({d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}), p = {d['p_value']:.3f}"
                )
    a = m["alerts"]
    lead = a["lead_time_h"]
    console.print(
        f"alerts at risk >= {a['threshold']:g}: median lead time {lead['median']:.0f} h "
        f"(IQR {lead['iqr'][0]:.0f}-{lead['iqr'][1]:.0f}; {lead['n_alerted_events']}/"
        f"{lead['n_events']} event patients alerted), {a['alerts_per_patient_day']:.2f} alerts "
        f"per patient-day, number needed to evaluate {a['number_needed_to_evaluate']:.1f}"
    )
    console.print(
        f"drift: {m['drift']['n_flagged']} of {m['drift']['n_features']} features flagged"
        + (f" ({', '.join(m['drift']['flagged_features'][:6])})" if m["drift"]["n_flagged"] else "")
    )
    console.print(f"report:  {paths['report'].resolve()}")
    console.print(f"metrics: {paths['metrics'].resolve()}")
    console.print(
        f"predictions (patient ids, stays local, not logged): {paths['predictions'].resolve()}"
    )
    if run_id:
        console.print(f"MLflow evaluation run: {run_id}")


def recalibrate(
    data: Annotated[Path, typer.Option(help="the site's labelled cohort folder")],
    model: Annotated[str, typer.Option(help="bundle folder or MLflow model URI")] = DEFAULT_MODEL,
    method: Annotated[str, typer.Option(help="auto, intercept or logistic")] = "auto",
    register: Annotated[
        bool, typer.Option(help="log as a pyfunc and register a new crs-severity version")
    ] = False,
    holdout: Annotated[float, typer.Option(help="share of persons held out to report")] = 0.5,
    seed: Annotated[int, typer.Option(help="random seed of the split and bootstrap")] = 0,
    bootstrap: Annotated[int, typer.Option(help="bootstrap replicates for the report")] = 500,
    refit_all: Annotated[
        bool, typer.Option(help="after the held-out report, refit the map on all persons")
    ] = False,
    out: Annotated[Path, typer.Option(help="output folder (new bundle + report)")] = Path(
        "recalibrated"
    ),
    config: Annotated[
        Path | None, typer.Option(help="YAML config whose data section reads the cohort")
    ] = None,
) -> None:
    """Refit only the calibration map of a model on a site's data (model unchanged)."""

    from crs_ml.evaluation.recalibration import recalibrate_cohort
    from crs_ml.modeling.bundle import write_recalibrated_bundle
    from crs_ml.reporting.figures import calibration_figure, data_uri
    from crs_ml.reporting.html import render_recalibration
    from crs_ml.tracking.models import open_model
    from crs_ml.tracking.runs import register_recalibrated

    console = make_console()
    with tempfile.TemporaryDirectory(prefix="crs_ml_recal_") as tmp:
        bundle, info = open_model(model, Path(tmp))
        cohort = _load_data(data, config)
        result = recalibrate_cohort(
            bundle, cohort, method, holdout, seed, bootstrap, refit_all=refit_all
        )
        summary = {"source_model": info, **result.summary}
        provenance = {
            "method": result.fit.method,
            "source_model_uri": info["uri"],
            "source_model_version": info.get("model_version"),
            "sites": summary["sites"],
        }
        bundle_dir = write_recalibrated_bundle(
            bundle.path, out / "bundle", result.fit.slope, result.fit.intercept, provenance
        )
    write_json(out / "recalibration.json", summary)
    (out / "recalibration.json").chmod(0o644)
    figure = None
    held = result.held_out
    if held is not None and len(set(held["y"].tolist())) == 2:
        risks = {"before": held["before"], "after": held["after"]}
        title = "Held-out persons, all landmarks"
        figure = data_uri(calibration_figure(held["y"], risks, n_bins=8, title=title))
    (out / "recalibration.html").write_text(render_recalibration(summary, figure), encoding="utf-8")
    console.print(
        f"method: {summary['method']} ({summary['rule']})\n"
        f"calibration map (Platt) slope {summary['calibration_before']['slope']:.3f} -> "
        f"{summary['calibration_after']['slope']:.3f}, intercept "
        f"{summary['calibration_before']['intercept']:.3f} -> "
        f"{summary['calibration_after']['intercept']:.3f}"
    )
    for key, ev in summary["evaluation"].items():
        b, a = ev["before"], ev["after"]
        lo, hi = a["calibration_intercept_ci"]
        interval = (f"95% CI {lo:.2f} to {hi:.2f}" if math.isfinite(lo) and math.isfinite(hi)
                    else "no interval: too few events")  # fmt: skip
        weighted = (f"; weighted O/E {b['observed_expected_ipcw']:.2f} -> "
                    f"{a['observed_expected_ipcw']:.2f}" if "observed_expected_ipcw" in a
                    else "")  # fmt: skip
        console.print(
            f"held-out {key}{' h' if key != 'all' else ' landmarks'}: calibration intercept "
            f"{_num(b['calibration_intercept'])} -> {_num(a['calibration_intercept'])} "
            f"({interval}), slope {_num(b['calibration_slope'])} -> "
            f"{_num(a['calibration_slope'])}{weighted}"
        )
    console.print(
        f"new bundle: {bundle_dir.resolve()}\nreport: {(out / 'recalibration.html').resolve()}"
    )
    warn(console, summary["warnings"], "recalibrate")
    if register:
        version = register_recalibrated(bundle_dir, out, summary, bundle, info)
        console.print(f"registered: {version['name']} version {version['version']}")
        summary["registered"] = version
        write_json(out / "recalibration.json", summary)


def _num(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "not estimable"


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(recalibrate)
