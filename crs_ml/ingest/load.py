"""Loading a cohort: read, validate and normalise the input tables into a :class:`Cohort`.

``load_cohort(path_or_paths, options)`` reads patients, observations and optionally events,
outcomes and truth (CSV or Parquet, see :mod:`crs_ml.ingest.tables`), and returns the normalised
cohort described in :mod:`crs_ml.cohort` with a :class:`CheckReport`.

Rules (the data README documents them for users):

- Only structural problems raise :class:`InputError`: a missing or unreadable file, a missing
  required column, an empty patients table, a duplicated ``patient_id``. Bad rows never stop
  the load: they are left out and listed in ``Cohort.rejected`` (file, 1-based data row,
  column, reason, patient_id) and counted in the report; see :mod:`crs_ml.ingest.problems` for
  what is fatal, an error or a warning.
- Times: a row's ``hours`` is used when given, else its ``time`` (ISO 8601, naive = UTC)
  minus the patient's ``infusion_time``. Unparseable, empty, before-1900 or future times
  reject the row (also for optional time columns such as ``end_time``).
- Observations: the variable is resolved by the catalogue (name, alias or LOINC); unknown
  variables are left out and counted by name (not listed as rejected: extracts carry many
  labs the model does not use), except names that resemble a catalogue variable
  (``Ferritin, serum``; :func:`crs_ml.variables.suggest_variable`): their rows are rejected
  and listed, a warning suggesting ``data.variable_aliases``, which maps site names.
  Values are converted to the canonical unit; an unknown unit rejects the row; a missing
  unit assumes the canonical unit with a warning, or rejects the row under
  ``strict_units``. Non-numeric results (``Hemolyzed``, ``---``, empty, ``NaN``)
  are left out and counted by kind, so ``value`` is never NaN in the cohort. Values outside
  the catalogue's plausible range are kept and flagged ``out_of_range``.
- Duplicates (judged after normalisation: same patient, hours, variable): identical value
  and censoring -> one row kept (the last in the file), counted; different values ->
  ``options.conflicting_duplicates``: ``last_row`` keeps the row that comes last in the file,
  ``max`` the largest value, ``mean`` the mean (censored flag kept only if all agree); counted.
- Rows naming a patient absent from the patients table are rejected (a fatal problem).
- Unused columns whose names resemble a contract column
  (:func:`crs_ml.ingest.tables.column_suggestions`) are a warning giving the ``data.column_mapping``
  that uses them; other unused columns are info.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.cohort import EVENT_COLUMNS, PATIENT_COLUMNS, Cohort, str_array
from crs_ml.config import DataConfig
from crs_ml.errors import InputError
from crs_ml.ingest.observations import observations_table
from crs_ml.ingest.problems import CheckReport, Collector, RowChecks, TableSummary, counts_by
from crs_ml.ingest.rows import Patients
from crs_ml.ingest.secondary_tables import (
    column_of,
    events_table,
    outcomes_table,
    record_malformed,
    text_of,
    truth_horizons_table,
    truth_table,
)
from crs_ml.ingest.tables import (
    RawTable,
    check_mapping,
    check_table_names,
    column_suggestions,
    frame_table,
    locate_tables,
    mapping_snippet,
    polars_frame,
    read_table,
)
from crs_ml.ingest.values import (
    DISEASE_VOCAB,
    PRODUCT_VOCAB,
    SEX_VOCAB,
    normalise_category,
    parse_times,
    parse_values,
)

__all__ = ["CheckReport", "load_cohort", "load_frames"]


def _category_or_other(f, rc, column: str, vocab) -> np.ndarray:
    """Canonical category of ``column``; text not in ``vocab`` becomes 'other' and is noted."""
    value, unknown = normalise_category(column_of(f, column), vocab)
    raw = text_of(f, column)
    rc.note(
        unknown,
        column,
        f"unknown_{column}",
        f"{column} not recognised: set to 'other'",
        raw,
        details=counts_by(raw, unknown & rc.ok),
    )
    return np.where(unknown, "other", value)


def _patients(raw: RawTable, col: Collector) -> tuple[pd.DataFrame, Patients]:
    f = raw.frame
    if len(f) == 0 and not raw.malformed:
        raise InputError("the patients table has no rows", file=raw.file)
    ids = text_of(f, "patient_id")
    rc = RowChecks(col, "patients", raw.file, raw.source_row, ids)
    record_malformed(raw, col)
    rc.reject(
        ids == "",
        "patient_id",
        "missing_patient_id",
        "rows without a patient_id",
        "missing patient_id",
    )
    keep = np.flatnonzero(rc.ok)
    if len(set(ids[keep].tolist())) < keep.size:  # some id twice: which one, where
        kept_ids = pd.Series(ids[keep], dtype=object)
        dup = kept_ids.duplicated(keep=False).to_numpy()
        first = kept_ids[dup].iloc[0]
        rows = raw.source_row[keep[np.flatnonzero(kept_ids.to_numpy() == first)]]
        raise InputError(
            f"duplicated patient_id '{first}' (rows {rows[0]} and {rows[1]})",
            file=raw.file,
            row=int(rows[1]),
            column="patient_id",
        )
    if keep.size == 0:
        raise InputError("no usable patient rows", file=raw.file)
    person = text_of(f, "person_id")
    person = np.where(person == "", ids, person)

    ns, problem = parse_times(column_of(f, "infusion_time"))
    bad = (problem != "") & (problem != "empty")
    rc.note(
        bad,
        "infusion_time",
        "bad_infusion_time",
        "infusion_time unparseable, before 1900 or in the future: kept as missing, so this "
        "patient's rows with absolute times are rejected",
        column_of(f, "infusion_time"),
        severity="error",
        details=counts_by(problem, bad & rc.ok),
    )
    infusion = pd.DatetimeIndex(ns[keep].view("datetime64[ns]")).tz_localize("UTC").array

    product = _category_or_other(f, rc, "product", PRODUCT_VOCAB)

    age, censored, kind = parse_values(column_of(f, "age_years"))
    not_number = (kind != "") & (kind != "empty")
    rc.note(
        not_number,
        "age_years",
        "bad_age",
        "age_years not a number: set missing",
        column_of(f, "age_years"),
    )
    implausible = (kind == "") & ((age < 0) | (age > 120))
    rc.note(
        implausible,
        "age_years",
        "implausible_age",
        "age_years outside 0-120: set missing",
        column_of(f, "age_years"),
    )
    age = np.where(not_number | implausible, np.nan, age)

    sex, unknown = normalise_category(column_of(f, "sex"), SEX_VOCAB)
    rc.note(unknown, "sex", "unknown_sex", "sex not F/M/U: set to U", column_of(f, "sex"))
    sex = np.where(pd.isna(sex), "U", sex)
    disease = _category_or_other(f, rc, "disease", DISEASE_VOCAB)

    columns = {
        "patient_id": str_array(ids[keep]),
        "person_id": str_array(person[keep]),
        "infusion_time": infusion,
        "product": str_array(product[keep]),
        "age_years": np.asarray(age[keep], dtype="float64"),
        "sex": str_array(sex[keep]),
        "disease": str_array(disease[keep]),
        "site": str_array(text_of(f, "site")[keep]),
    }
    # in order, no name lookup; new arrays each, so taken over without a copy
    out = pd.DataFrame({c: columns[c] for c in PATIENT_COLUMNS}, copy=False)
    return out, Patients.from_frame(out, ns[keep])


def _observations(raw: RawTable, pat: Patients, opts: DataConfig, col: Collector) -> pd.DataFrame:
    return observations_table(raw, pat, opts, col)


def load_cohort(path_or_paths=None, options: DataConfig | None = None) -> Cohort:
    """Read, validate and normalise a cohort (see the module docstring for the rules).

    ``path_or_paths``: a folder holding ``patients``, ``observations`` and optionally
    ``events``, ``outcomes``, ``truth`` (.csv, .csv.gz or .parquet), or a {table: path}
    mapping, or a list of paths named after their tables; ``None`` uses ``options.path``.
    """
    opts = options or DataConfig()
    check_mapping(opts.column_mapping)
    source = path_or_paths if path_or_paths is not None else opts.path
    paths = locate_tables(source)
    raws = {t: read_table(p, t, opts.column_mapping.get(t)) for t, p in paths.items()}
    return normalise(raws, opts, str(source) if isinstance(source, str | Path) else None)


def load_frames(
    frames: Mapping[str, pd.DataFrame | pl.DataFrame],
    options: DataConfig | None = None,
    file_names: Mapping[str, str] | None = None,
) -> Cohort:
    """:func:`load_cohort` on tables already in memory ({table: DataFrame}), exactly as if
    each had been written to and read back from a Parquet file named ``file_names[table]``
    (default ``<table>.parquet``), which is what reports and rejected rows call it."""
    opts = options or DataConfig()
    check_mapping(opts.column_mapping)
    check_table_names(frames)
    names = dict(file_names or {})
    raws = {
        t: frame_table(f, t, names.get(t, f"{t}.parquet"), opts.column_mapping.get(t))
        for t, f in frames.items()
    }
    return normalise(raws, opts, None)


def check_patients(raw: RawTable) -> None:
    """Raise :class:`InputError` for the patients table's structural problems (no rows, no
    usable row, a duplicated patient_id)."""
    _patients(raw, Collector())


def empty_table_checks(col: Collector, rows_used: dict[str, int]) -> None:
    """The fatal problems of a whole cohort whose observations, or whose outcomes table (when
    one is given: a key in ``rows_used``), have no usable row."""
    if rows_used.get("observations", 0) == 0:
        col.add("observations", "no_observations", "fatal", "no usable observation row", 1)
    if rows_used.get("outcomes", 1) == 0:
        col.add("outcomes", "no_outcomes", "fatal", "the outcomes table has no usable row", 1)


def normalise(
    raws: dict[str, RawTable],
    opts: DataConfig,
    source: str | None,
    one_chunk: bool = False,
) -> Cohort:
    """The body of loading once the tables are read: validate and normalise.
    ``one_chunk``: the tables are one chunk of a cohort, where a table with no usable row is
    no problem; the caller makes :func:`empty_table_checks` over the whole cohort.
    A table read into pandas (``RawTable.frame`` a pandas frame) is taken over as polars."""
    raws = {
        name: dataclasses.replace(raw, frame=polars_frame(raw.frame))
        if isinstance(raw.frame, pd.DataFrame)
        else raw
        for name, raw in raws.items()
    }
    col = Collector()
    patients, pat = _patients(raws["patients"], col)
    observations = _observations(raws["observations"], pat, opts, col)
    events = events_table(raws["events"], pat, col) if "events" in raws else _empty_events()
    outcomes = outcomes_table(raws["outcomes"], pat, col) if "outcomes" in raws else None
    truth = truth_table(raws["truth"], pat, col) if "truth" in raws else None
    truth_h = (truth_horizons_table(raws["truth_horizons"], pat, col)
               if "truth_horizons" in raws else None)  # fmt: skip
    if not one_chunk:
        rows_used = {"observations": len(observations)}
        if outcomes is not None:
            rows_used["outcomes"] = len(outcomes)
        empty_table_checks(col, rows_used)
    rejected = col.rejected()
    used = {
        "patients": patients,
        "observations": observations,
        "events": events,
        "outcomes": outcomes,
        "truth": truth,
        "truth_horizons": truth_h,
    }
    report = CheckReport(source=source, options=opts.model_dump(mode="json"))
    for name, raw in raws.items():
        like = column_suggestions(raw.unused_columns, set(raw.frame.columns), name)
        if like:
            col.add(
                name,
                "unmapped_column",
                "warning",
                "columns that look like contract columns are not used: "
                + ", ".join(f"'{k}' (like {v})" for k, v in like.items())
                + f"; to use them set {mapping_snippet(name, like)}",
                len(like),
            )
        other = [c for c in raw.unused_columns if c not in like]
        if other:
            col.add(
                name,
                "unused_columns",
                "info",
                "columns not in the contract (ignored): " + ", ".join(other),
                len(other),
            )
        report.tables[name] = TableSummary(
            name,
            raw.file,
            raw.rows_read,
            len(used[name]),
            col.rejected_by_table.get(name, 0),
        )
    report.problems = list(col.problems.values())
    report.sort()
    return Cohort(
        patients=patients,
        observations=observations,
        events=events,
        outcomes=outcomes,
        truth=truth,
        truth_horizons=truth_h,
        report=report,
        rejected=rejected,
        source=report.source,
    )


def _empty_events() -> pd.DataFrame:
    """A new empty events table (a copy of one built once)."""
    return _empty_events_template().copy()


@functools.lru_cache(maxsize=1)
def _empty_events_template() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": pd.Series(dtype="str"),
            "hours": pd.Series(dtype="float64"),
            "end_hours": pd.Series(dtype="float64"),
            "event": pd.Series(dtype="str"),
            "detail": pd.Series(dtype="str"),
            "source_row": pd.Series(dtype="int64"),
        }
    )[EVENT_COLUMNS]
