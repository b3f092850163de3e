"""``crs-ml label`` (derive ASTCT outcomes) and ``crs-ml features`` (landmark feature table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crs_ml.cli._common import console as make_console
from crs_ml.cli._common import parse_landmarks
from crs_ml.errors import InputError


def _load(data: Path, config: Path | None, ignore_outcomes: bool = False):
    """Config and cohort; fatal loading problems stop here (those of the outcomes table
    too, unless ``ignore_outcomes``: relabelling must work over a broken outcomes.csv)."""
    from crs_ml.config import load_config
    from crs_ml.ingest.formats import load_data

    cfg = load_config(config)
    cohort = load_data(data, cfg.data)
    report = cohort.report
    problems = getattr(report, "problems", None) or []
    fatal = [p for p in problems if p.severity == "fatal"]
    if ignore_outcomes and any(p.table == "outcomes" for p in fatal):
        cohort.outcomes = None
        fatal = [p for p in fatal if p.table != "outcomes"]
    if fatal:
        first = fatal[0]
        raise InputError(
            f"the cohort cannot be used: {first.message} (see `crs-ml check` for the report)",
            file=first.table,
        )
    return cfg, cohort


def _grade_table(outcomes, horizon_h: float):
    from rich.table import Table

    from crs_ml.features.grading import LABEL_DEFINITION

    counts = outcomes["crs_max_grade"].value_counts().reindex(range(6), fill_value=0)
    n = max(int(counts.sum()), 1)
    table = Table(
        title=f"CRS max grade over [0, {horizon_h:g}] h ({LABEL_DEFINITION.split(':')[0]})"
    )
    table.add_column("grade", justify="right")
    table.add_column("patients", justify="right")
    table.add_column("%", justify="right")
    for grade, k in counts.items():
        table.add_row(str(grade), f"{int(k):,}", f"{100 * k / n:.1f}")
    table.add_row(">= 3", f"{int(counts[3:].sum()):,}", f"{100 * counts[3:].sum() / n:.1f}")
    return table


def attrition_rich(attrition):
    from rich.table import Table

    short = {
        "landmark_h": "L (h)",
        "n_patients": "patients",
        "already_grade3": "grade>=3",
        "died": "died",
        "followup_ended": "fu ended",
        "censored_before_horizon": "censored",
        "no_data": "no data",
        "n_at_risk": "at risk",
        "n_events": "events",
        "n_competing": "competing",
    }
    table = Table(title="At-risk sets per landmark (exclusions in rule order)")
    for col in attrition.columns:
        table.add_column(short.get(col, col), justify="right")
    for row in attrition.itertuples(index=False):
        table.add_row(f"{row[0]:g}", *(f"{int(v):,}" for v in row[1:]))
    return table


def _check_out(out: Path) -> None:
    if not out.name.lower().endswith((".parquet", ".pq", ".csv", ".csv.gz")):
        raise InputError(f"--out {out}: use a .parquet or .csv file name")


def _write_table(df, out: Path) -> None:
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name.lower().endswith((".parquet", ".pq")):
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False)


def register(app: typer.Typer) -> None:
    @app.command("label")
    def label(
        data: Annotated[Path, typer.Option(help="cohort folder (patients, observations, events)")],
        out: Annotated[
            Path | None, typer.Option(help="where to write the outcomes (default DIR/outcomes.csv)")
        ] = None,
        horizon_h: Annotated[
            float | None,
            typer.Option(
                "--horizon-h",
                help="grade over [0, horizon] hours (default: config task.horizon_h, 336)",
            ),
        ] = None,
        fever_window_h: Annotated[
            float | None,
            typer.Option(
                "--fever-window-h",
                help="hours a fever qualifies hypotension or hypoxia after it "
                "(default: config label.fever_window_h, 24)",
            ),
        ] = None,
        config: Annotated[
            Path | None, typer.Option(help="YAML config (data options, label settings)")
        ] = None,
        force: Annotated[bool, typer.Option(help="replace an existing outcomes file")] = False,
    ) -> None:
        """Derive outcomes.csv (ASTCT-2019-derived-v4) from temperatures, sbp and events."""
        from crs_ml.features.grading import derive_outcomes, label_definition

        if horizon_h is not None and not horizon_h > 0:
            raise InputError("--horizon-h must be > 0")
        target = out if out is not None else Path(data) / "outcomes.csv"
        _check_out(target)
        if target.exists() and not force:
            raise InputError(
                f"{target} already exists: write elsewhere with --out FILE or replace it "
                "with --force"
            )
        if fever_window_h is not None and not fever_window_h >= 0:
            raise InputError("--fever-window-h must be >= 0")
        cfg, cohort = _load(data, config, ignore_outcomes=True)
        if horizon_h is None:
            horizon_h = float(cfg.task.horizon_h)
        outcomes = derive_outcomes(
            cohort, horizon_h=horizon_h, fever_window_h=fever_window_h, settings=cfg.label
        )
        _write_table(outcomes, target)
        console = make_console(160)
        console.print(_grade_table(outcomes, horizon_h))
        defn = (
            outcomes["label_definition"].iloc[0] if len(outcomes) else label_definition(cfg.label)
        )
        console.print(f"label definition: {defn}")
        console.print(f"wrote {len(outcomes):,} patients to {target}")

    @app.command("features")
    def features(
        data: Annotated[Path, typer.Option(help="cohort folder with outcomes")],
        out: Annotated[Path, typer.Option(help="feature table to write (.parquet or .csv)")],
        landmarks: Annotated[
            str | None, typer.Option(help="landmarks in hours, e.g. 24,48 (default: config)")
        ] = None,
        horizon_h: Annotated[
            float | None, typer.Option("--horizon-h", help="horizon in hours (default: config)")
        ] = None,
        config: Annotated[Path | None, typer.Option(help="YAML config")] = None,
    ) -> None:
        """Write the landmark feature table (features + patient_id, landmark_h, y)."""
        from crs_ml.features.landmarks import build_landmark_dataset

        _check_out(out)
        cfg, cohort = _load(data, config)
        lms = parse_landmarks(landmarks) if landmarks is not None else cfg.task.landmarks_h
        horizon = cfg.task.horizon_h if horizon_h is None else float(horizon_h)
        if not horizon > 0:
            raise InputError("--horizon-h must be > 0")
        X, y, meta = build_landmark_dataset(cohort, lms, horizon, cfg.features)
        table = X.copy()
        table.insert(0, "patient_id", meta["patient_id"].astype(str).to_numpy())
        table["y"] = y
        _write_table(table, out)
        console = make_console(160)
        console.print(attrition_rich(meta.attrs["attrition"]))
        console.print(
            f"wrote {len(table):,} rows x {X.shape[1]} features ({int(y.sum()):,} events) to {out}"
        )
