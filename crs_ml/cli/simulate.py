"""``crs-ml simulate``: write a synthetic cohort (clean or messy) with its true risk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crs_ml.cli._common import console as make_console
from crs_ml.cli._common import progress_bar, write_json


def cohort_summary(tables: dict, seconds: float | None = None) -> dict:
    """Aggregate numbers of a simulated cohort (no identifiers): sizes, rates, true risk."""
    import numpy as np

    pts, obs, ev, oc, truth = (tables[k] for k in ("patients", "observations", "events",
                                                    "outcomes", "truth"))  # fmt: skip
    n = len(pts)
    grade = oc["crs_max_grade"].to_numpy()
    at24 = truth[truth["landmark_h"] == 24.0]["true_risk"]
    out = {
        "n_patients": n,
        "n_observations": len(obs),
        "observations_per_patient": len(obs) / max(n, 1),
        "n_events": len(ev),
        "any_crs": float(np.mean(grade >= 1)) if n else float("nan"),
        "grade3_or_worse": float(np.mean(grade >= 3)) if n else float("nan"),
        "deaths": int(oc["death_hours"].notna().sum()),
        "followup_ended_early": int(oc["followup_hours"].notna().sum()),
        "grade_counts": {
            int(g): int(c) for g, c in zip(*np.unique(grade, return_counts=True), strict=True)
        },
        "products": {str(k): int(v) for k, v in pts["product"].value_counts().items()},
        "sites": {str(k): int(v) for k, v in pts["site"].value_counts().items()},
        "truth_rows": len(truth),
        "mean_true_risk_24h": float(at24.mean()) if len(at24) else float("nan"),
    }
    if seconds is not None:
        out["seconds"] = seconds
    return out


def _shares(text: str, option: str) -> dict[str, float]:
    from crs_ml.errors import ConfigError

    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            share = float(value) if sep else float("nan")
        except ValueError:
            share = float("nan")
        if not name.strip() or not share >= 0:
            raise ConfigError(
                f"{option} '{text}': expected NAME=SHARE pairs, e.g. C=1 or A=0.5,B=0.5"
            )
        out[name.strip().replace("-", "_")] = share
    if sum(out.values()) <= 0:
        raise ConfigError(f"{option} '{text}': shares must add up to more than 0")
    return out


def _params(sites: str | None, products: str | None):
    """Default simulation parameters with the given site and product shares."""
    if sites is None and products is None:
        return None
    from crs_ml.simulate.params import default_params, with_products, with_sites

    params = default_params()
    if sites is not None:
        params = with_sites(params, **_shares(sites, "--sites"))
    if products is not None:
        params = with_products(params, **_shares(products, "--products"))
    return params


def _write(tables: dict, out: Path, data_format: str, seed: int) -> dict:
    if data_format == "meds":
        from crs_ml.simulate.meds_twin import write_meds

        return write_meds(tables, out, seed)
    if data_format == "fhir":
        from crs_ml.simulate.fhir_twin import write_fhir

        return write_fhir(tables, out, seed)
    from crs_ml.simulate.simulator import write_cohort

    return write_cohort(tables, out)


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        out: Annotated[Path, typer.Option("--out", help="Folder to write the CSV files to.")],
        n_patients: Annotated[
            int, typer.Option("--n-patients", min=1, help="Number of infusion episodes.")
        ] = 1000,
        seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed (ids carry it).")] = 0,
        style: Annotated[
            str, typer.Option("--style", help="clean (canonical) or messy (site extracts).")
        ] = "clean",
        horizon_h: Annotated[
            float, typer.Option("--horizon-h", help="Outcome horizon, hours after infusion.")
        ] = 336.0,
        sites: Annotated[
            str | None,
            typer.Option("--sites", help="Site shares, e.g. C=1 or A=0.5,B=0.5 (default mix)."),
        ] = None,
        products: Annotated[
            str | None,
            typer.Option(
                "--products", help="Product shares, e.g. axi-cel=0.5,cilta-cel=0.5 (default mix)."
            ),
        ] = None,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the summary as JSON.")
        ] = None,
        markers: Annotated[
            str,
            typer.Option(
                "--markers",
                help="core (the 12 variables) or all (also cytokine panel, coagulation, "
                "liver and blood counts; about 1.6x the observation rows).",
            ),
        ] = "core",
        landmarks_h: Annotated[
            str | None,
            typer.Option(
                "--landmarks-h", help="Landmarks of truth.csv, e.g. 24,48,72 (default 6-168 h)."
            ),
        ] = None,
        data_format: Annotated[
            str,
            typer.Option(
                "--format",
                help="contract (the CSV tables), omop (the OMOP CDM twin), meds (MEDS 0.4) or "
                "fhir (FHIR R4 bulk NDJSON): the same patients in each.",
            ),
        ] = "contract",
        omop_as: Annotated[
            str,
            typer.Option(
                "--omop-as", help="OMOP twin as csv or parquet files, or duckdb (out/cdm.duckdb)."
            ),
        ] = "csv",
    ) -> None:
        """Simulate a cohort: patients, observations, events, outcomes and truth (CSV), and
        (contract format) truth_horizons: the true risk by each short horizon."""
        import time

        from rich.table import Table

        from crs_ml.errors import ConfigError
        from crs_ml.simulate.simulator import simulate

        if style not in ("clean", "messy"):
            raise ConfigError(f"--style must be 'clean' or 'messy', got '{style}'")
        if data_format not in ("contract", "omop", "meds", "fhir"):
            raise ConfigError(f"--format must be contract, omop, meds or fhir, got '{data_format}'")
        if data_format == "omop" and (
            style != "clean" or omop_as not in ("csv", "parquet", "duckdb")
        ):
            raise ConfigError("--format omop writes the twin of a clean cohort (--style clean) "
                              "as --omop-as csv, parquet or duckdb")  # fmt: skip
        if data_format in ("meds", "fhir") and style != "clean":
            raise ConfigError(
                f"--format {data_format} writes the twin of a clean cohort (--style clean)"
            )
        if data_format != "contract" and markers == "all":
            from crs_ml.variables import VARIABLES

            no_code = sorted(name for name, v in VARIABLES.items() if not v.loinc)
            if no_code:  # a coded twin writes each variable by its LOINC code
                raise ConfigError(
                    f"--format {data_format} --markers all: {', '.join(no_code)} have no LOINC "
                    f"code in the variable catalogue, so the {data_format} twin cannot carry "
                    "them: use --markers core, or --format contract"
                )
        params = _params(sites, products)
        landmarks = None
        if landmarks_h is not None:
            try:
                landmarks = [float(x) for x in landmarks_h.split(",")]
            except ValueError:
                raise ConfigError(
                    f"--landmarks-h '{landmarks_h}': expected hours, e.g. 24,48,72"
                ) from None
        started = time.perf_counter()
        with progress_bar() as update:
            result = simulate(
                n_patients, seed, style=style, horizon_h=horizon_h, landmarks_h=landmarks,
                params=params, progress=update, markers=markers,
            )  # fmt: skip
            update("writing files", 0, 1)
            if data_format == "omop":
                from crs_ml.simulate.omop import write_omop

                target = out / "cdm.duckdb" if omop_as == "duckdb" else out
                paths = write_omop(result.tables, target, omop_as, seed)
            elif data_format == "contract":  # with the true risk per short horizon
                from crs_ml.config import DEFAULT_WINDOWS_H
                from crs_ml.simulate.simulator import horizon_truth, write_cohort

                update("true risk per horizon", 0, 1)
                windows = horizon_truth(n_patients, seed, landmarks, DEFAULT_WINDOWS_H,
                                        horizon_h, params)  # fmt: skip
                paths = write_cohort({**result.tables, "truth_horizons": windows}, out)
            else:
                paths = _write(result.tables, out, data_format, seed)
            update("writing files", 1, 1)
        summary = cohort_summary(result.tables, time.perf_counter() - started)
        summary.update({"seed": seed, "style": style, "horizon_h": horizon_h, "out": str(out),
                        "markers": markers, "format": data_format})  # fmt: skip

        table = Table(title=f"Simulated cohort ({style}, seed {seed}) -> {out}")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        s = summary
        grades = "/".join(str(s["grade_counts"].get(g, 0)) for g in range(6))
        rows = [
            ("patients", f"{s['n_patients']:,}"),
            ("observations",
             f"{s['n_observations']:,} ({s['observations_per_patient']:.0f} per patient)"),
            ("events", f"{s['n_events']:,}"),
            ("any-grade CRS", f"{s['any_crs']:.1%}"),
            ("grade >= 3 CRS", f"{s['grade3_or_worse']:.1%}"),
            ("max grade 0/1/2/3/4/5", grades),
            ("deaths / follow-up ended early", f"{s['deaths']} / {s['followup_ended_early']}"),
            ("truth rows (patient x landmark)", f"{summary['truth_rows']:,}"),
            ("mean true risk at 24 h", f"{summary['mean_true_risk_24h']:.3f}"),
            ("time", f"{summary['seconds']:.1f} s"),
        ]  # fmt: skip
        for name, value in rows:
            table.add_row(name, value)
        console = make_console()
        console.print(table)
        for name, path in paths.items():
            console.print(f"wrote {name:12s} {path}")
        if json_out is not None:
            write_json(json_out, summary)
            console.print(f"wrote summary      {json_out}")
