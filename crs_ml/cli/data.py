"""``crs-ml check``: validate a cohort and print the report.

Exit codes: 0 the cohort is usable; 1 it is not (a fatal problem: missing file or column,
duplicated patient ids, rows naming unknown patients, no usable observation), or with
``--strict`` also when any row was rejected; 2 a usage or configuration error (e.g. the
data folder does not exist), as for every command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from crs_ml.cli._common import console as make_console


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check(
        data: Path | None = typer.Option(
            None,
            "--data",
            help="Cohort: contract folder (CSV or Parquet), OMOP folder or DuckDB file, or "
            "postgresql://user@host/db (password from PGPASSWORD or ~/.pgpass).",
        ),
        config: Path | None = typer.Option(
            None, "--config", help="YAML config; its 'data' section sets the loading options."
        ),
        json_path: Path | None = typer.Option(
            None, "--json", help="Also write the report as JSON to this file."
        ),
        strict: bool = typer.Option(
            False, "--strict", help="Exit 1 also when rows were rejected (errors)."
        ),
    ) -> None:
        """Validate a cohort: rows read and used per table, every problem with counts and
        first examples. Exit 0 when usable, 1 when not."""

        from crs_ml.config import DataConfig, load_config
        from crs_ml.errors import InputError
        from crs_ml.ingest.formats import load_data, source_text
        from crs_ml.ingest.load import CheckReport

        options = load_config(config).data if config is not None else DataConfig()
        source = data if data is not None else options.path
        if source is None:
            raise InputError("no data given: pass --data DIR or set data.path in the config")
        source = source_text(source)
        if not source.startswith("postgres") and not Path(source).exists():
            raise InputError(f"data folder {source} does not exist")
        try:
            report = load_data(source, options).report
        except InputError as exc:
            report = CheckReport.from_error(exc, source=str(source))
            report.options = options.model_dump(mode="json")
        report.render(make_console(soft_wrap=False))
        if json_path is not None:
            import json

            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(
                json.dumps({**report.to_dict(), "hints": report.hints()}, indent=2, allow_nan=False)
            )
            typer.echo(f"report written to {json_path}")
        if not report.passes(strict=strict):
            # sys.exit rather than typer.Exit: crs_ml.cli.main runs the app with
            # standalone_mode=False, where click returns typer.Exit's code instead of exiting
            sys.exit(1)
