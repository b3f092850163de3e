"""The one-table MLflow model input (README, "Scoring new admissions") <-> a Cohort.

One long table carries one or many patients in relative hours:

========== ============================================================================
record     ``patient``, ``observation`` or ``event`` (case and spaces ignored)
patient_id identifies the infusion episode
hours      hours since infusion (empty for patient rows)
variable   observation variable (name, alias or LOINC), event name, or patient attribute
           (product, age_years, sex, disease, site, person_id)
value      number or text as in observations (``<1.5``, ``1,240``); the attribute's value
           for patient rows; the detail (drug, flow) for event rows
unit       as in observations (optional column)
end_hours  events only, optional
========== ============================================================================

:func:`records_to_cohort` checks the table's shape (columns, record types, numbers in
``hours`` / ``end_hours``, patient attributes) and then normalises it through exactly the
loading code used for files (:func:`crs_ml.ingest.load.load_frames`, in memory: units, aliases, censored and
non-numeric results, duplicates, events). Every patient_id that appears gets a patient, in
order of first appearance. ``source_row`` and rejected rows refer to 1-based rows of the input
table (file ``input``). With ``strict=True`` (the MLflow model) a row that loading would
reject (unknown unit, unknown event, end before start ...) is an error naming its row, column
and reason; with ``strict=False`` it is left out and listed in ``Cohort.rejected``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from crs_ml.cohort import Cohort
from crs_ml.errors import InputError
from crs_ml.ingest.load import load_frames
from crs_ml.ingest.values import parse_hours
from crs_ml.variables import VARIABLES, name_key

RECORD_COLUMNS = ["record", "patient_id", "hours", "variable", "value", "unit", "end_hours"]
REQUIRED_COLUMNS = ("record", "patient_id", "hours", "variable", "value")
RECORD_TYPES = ("patient", "observation", "event")
PATIENT_ATTRIBUTES = ("product", "age_years", "sex", "disease", "site", "person_id")
INPUT_FILE = "input"
_ATTRIBUTE_KEYS = {name_key(a): a for a in PATIENT_ATTRIBUTES} | {"age": "age_years"}


#: pandas' text dtype ("str": Arrow strings, NaN for missing), what ``astype("str")`` gives
_STR = pd.StringDtype("pyarrow", na_value=np.nan)


def _text_array(series: pd.Series) -> pa.Array:
    """Any column as stripped text ('' for missing), as Arrow; floats keep their exact repr.

    A column holding only text and missing values goes to Arrow once and is stripped there
    (what ``str.strip`` does on pandas' Arrow strings); any other column (numbers, bytes,
    mixed objects) is converted value by value as ``astype(str)`` does."""
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        try:
            arr = pa.array(series.to_numpy(dtype=object), from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            arr = None
        if arr is not None and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            return pc.utf8_trim_whitespace(arr).fill_null("")
    return pa.array(series.astype(object).astype("str").fillna("").str.strip())


def _text(series: pd.Series) -> pd.Series:
    """:func:`_text_array` as a pandas text column (same index)."""
    return pd.Series(_text_array(series), dtype=_STR, index=series.index)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column (float64, NaN when empty); unparseable text is an InputError."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(values)
        if bad.any():
            i = _first_bad(bad)
            raise InputError(f"{column} must be a finite number, got {values[i]}",
                             row=i + 1, column=column)  # fmt: skip
        return values
    values, problem = parse_hours(_text(raw))
    bad = (problem != "") & (problem != "empty")
    if bad.any():
        i = _first_bad(bad)
        raise InputError(f"cannot read {column} '{raw.iloc[i]}' as hours ({problem[i]})",
                         row=i + 1, column=column)  # fmt: skip
    return values


def _checked(frame: pd.DataFrame) -> tuple[dict[str, pa.Array | np.ndarray], np.ndarray]:
    """The shape checks of :func:`check_records`; returns ({column: clean text as Arrow, or
    float hours}, record types). ``unit`` is None when the input has none."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError("the model input must be a table (a pandas DataFrame)")
    if any(not isinstance(c, str) or c.strip().lower() != c for c in frame.columns):
        frame = frame.rename(columns=lambda c: str(c).strip().lower())
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"missing required column '{missing[0]}' (the input needs "
                         f"{', '.join(REQUIRED_COLUMNS)}; unit and end_hours are optional)",
                         column=missing[0])  # fmt: skip
    if len(frame) == 0:
        raise InputError("the input has no rows")
    index = frame.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        frame = frame.reset_index(drop=True)
    lower = pc.utf8_lower(_text_array(frame["record"]))  # as pandas' str.lower on Arrow text
    record = lower.to_numpy(zero_copy_only=False).astype(object)
    bad = ~np.isin(record, RECORD_TYPES)
    if bad.any():
        i = _first_bad(bad)
        raise InputError(f"unknown record type '{frame['record'].iloc[i]}' (expected "
                         "patient, observation or event)", row=i + 1, column="record")  # fmt: skip
    pid = _text_array(frame["patient_id"])
    empty = pc.equal(pid, "").to_numpy(zero_copy_only=False)
    if empty.any():
        raise InputError("missing patient_id", row=_first_bad(empty) + 1, column="patient_id")
    hours = _numbers(frame, "hours")
    timed = record != "patient"
    no_hours = timed & np.isnan(hours)
    if no_hours.any():
        i = _first_bad(no_hours)
        raise InputError(f"hours is required for {record[i]} rows", row=i + 1, column="hours")
    variable = _text_array(frame["variable"])
    empty = pc.equal(variable, "").to_numpy(zero_copy_only=False)
    if empty.any():
        raise InputError("missing variable", row=_first_bad(empty) + 1, column="variable")
    columns = {
        "patient_id": pid,
        "hours": hours,
        "variable": variable,
        "value": _text_array(frame["value"]),
        "unit": _text_array(frame["unit"]) if "unit" in frame else None,
        "end_hours": _numbers(frame, "end_hours"),
    }
    return columns, record


def check_records(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Shape checks; returns (frame with clean text columns and float hours, record types)."""
    columns, record = _checked(frame)
    clean = pd.DataFrame(
        {
            c: "" if v is None else v if isinstance(v, np.ndarray) else pd.Series(v, dtype=_STR)
            for c, v in columns.items()
        }
    )
    return clean, record


def _objects(text: pa.Array) -> np.ndarray:
    return text.to_numpy(zero_copy_only=False).astype(object)


def _patients_table(clean: dict, record: np.ndarray) -> tuple[pl.DataFrame, np.ndarray]:
    """One row per patient_id (order of first appearance) with its attributes as text;
    ``clean`` the checked columns (:func:`_checked`)."""
    codes, ids = pd.factorize(_objects(clean["patient_id"]))
    first = np.full(len(ids), len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    columns: dict[str, object] = {"patient_id": np.asarray(ids, dtype=object)}
    rows = np.flatnonzero(record == "patient")
    if len(rows):
        variable = _objects(clean["variable"])
        names, inverse = np.unique(variable[rows].astype(str), return_inverse=True)
        known = [_ATTRIBUTE_KEYS.get(name_key(v)) for v in names]
        unknown = np.array([k is None for k in known])[inverse]
        if unknown.any():
            i = rows[_first_bad(unknown)]
            raise InputError(f"unknown patient attribute '{variable[i]}' (expected "
                             f"{', '.join(PATIENT_ATTRIBUTES)})", row=int(i) + 1,
                             column="variable")  # fmt: skip
        attr = np.array([PATIENT_ATTRIBUTES.index(k) for k in known])[inverse]
        value = _objects(clean["value"])[rows]
        pcode = codes[rows]
        order = np.lexsort((rows, attr, pcode))
        same = (pcode[order][1:] == pcode[order][:-1]) & (attr[order][1:] == attr[order][:-1])
        clash = same & (value[order][1:] != value[order][:-1])
        if clash.any():
            k = order[1:][_first_bad(clash)]
            raise InputError(f"patient '{ids[pcode[k]]}' has two different values for "
                             f"'{PATIENT_ATTRIBUTES[attr[k]]}'", row=int(rows[k]) + 1,
                             column="value")  # fmt: skip
        grid = np.full((len(ids), len(PATIENT_ATTRIBUTES)), "", dtype=object)
        grid[pcode, attr] = value
        for j in np.unique(attr):
            columns[PATIENT_ATTRIBUTES[j]] = grid[:, j]
    table = pl.DataFrame([pl.Series(k, v, dtype=pl.String) for k, v in columns.items()])
    return table, first + 1


def _as_polars(clean: dict) -> pl.DataFrame:
    """The checked columns (:func:`_checked`) as polars for the loader, which takes a polars
    table as it is (no pandas typing): text from Arrow, numbers as they are, a missing unit
    as ''."""
    n = len(clean["hours"])
    return pl.DataFrame([pl.Series(c, pa.array([""] * n) if v is None else v)
                         for c, v in clean.items()])  # fmt: skip


def _input_column(table: str, column: object) -> str:
    """The input-table column behind a loader column (event -> variable, detail -> value)."""
    column = "" if column is None or pd.isna(column) else str(column)
    if table == "events":
        return {"event": "variable", "detail": "value"}.get(column, column)
    if table == "patients" and column not in ("", "patient_id"):
        return "value"
    return column


def records_to_cohort(frame: pd.DataFrame, strict: bool = True, options=None) -> Cohort:
    """The one-table input as a normalised Cohort (see the module docstring)."""
    clean, record = _checked(frame)
    patients, patient_rows = _patients_table(clean, record)
    obs_rows = np.flatnonzero(record == "observation")
    ev_rows = np.flatnonzero(record == "event")
    table = _as_polars(clean)
    obs = table[obs_rows].select("patient_id", "hours", "variable", "value", "unit")
    tables = {"patients": patients, "observations": obs}
    if len(ev_rows):
        tables["events"] = table[ev_rows].select(
            "patient_id", "hours", "end_hours", event="variable", detail="value"
        )
    cohort = load_frames(tables, options)
    input_rows = {"patients": patient_rows, "observations": obs_rows + 1, "events": ev_rows + 1}
    for name in ("observations", "events"):
        table = getattr(cohort, name)
        if len(table):
            table["source_row"] = input_rows[name][table["source_row"].to_numpy() - 1]
    rejected = cohort.rejected
    if len(rejected):
        file_table = rejected["file"].astype(str).str.split(".").str[0].to_numpy(dtype=object)
        row = rejected["row"].to_numpy(dtype=np.int64)
        mapped = np.array([input_rows[t][r - 1] if t in input_rows else r
                           for t, r in zip(file_table, row, strict=True)], dtype=np.int64)  # fmt: skip
        column = [_input_column(t, c) for t, c in zip(file_table, rejected["column"], strict=True)]
        rejected = rejected.assign(file=INPUT_FILE, row=mapped, column=column)
        rejected = rejected.sort_values("row", kind="stable")
        cohort.rejected = rejected.reset_index(drop=True)
        if strict:
            first = cohort.rejected.iloc[0]
            more = len(rejected) - 1
            raise InputError(
                f"{first['reason']}" + (f" ({more} more rejected row(s))" if more else ""),
                row=int(first["row"]),
                column=str(first["column"]) or None,
            )
    cohort.source = None
    return cohort


def cohort_to_records(cohort: Cohort, patient_ids=None) -> pd.DataFrame:
    """A cohort as the one-table input (canonical variables and units; value as text)."""
    if patient_ids is not None:
        cohort = cohort.subset(patient_ids)
    pts = cohort.patients
    parts = []
    for attr in ("product", "age_years", "sex", "disease", "site"):
        if attr not in pts:
            continue
        val = _text(pts[attr])
        keep = (val != "").to_numpy()
        parts.append(pd.DataFrame({"record": "patient", "patient_id": pts["patient_id"][keep],
                                   "hours": np.nan, "variable": attr, "value": val[keep],
                                   "unit": "", "end_hours": np.nan, "_h": -np.inf}))  # fmt: skip
    obs = cohort.observations
    units = {k: v.unit for k, v in VARIABLES.items()}
    parts.append(pd.DataFrame({"record": "observation", "patient_id": obs["patient_id"],
                               "hours": obs["hours"], "variable": obs["variable"],
                               "value": _text(obs["value"]),
                               "unit": obs["variable"].map(units).fillna(""),
                               "end_hours": np.nan, "_h": obs["hours"]}))  # fmt: skip
    ev = cohort.events
    parts.append(pd.DataFrame({"record": "event", "patient_id": ev["patient_id"],
                               "hours": ev["hours"], "variable": ev["event"],
                               "value": _text(ev["detail"]), "unit": "",
                               "end_hours": ev["end_hours"], "_h": ev["hours"]}))  # fmt: skip
    out = pd.concat([p for p in parts if len(p)], ignore_index=True)
    rank = pd.Series(np.arange(len(pts)), index=pts["patient_id"].astype(object).to_numpy())
    out["_p"] = out["patient_id"].astype(object).map(rank).to_numpy()
    out = out.sort_values(["_p", "_h"], kind="stable").drop(columns=["_p", "_h"])
    out = out.reset_index(drop=True)
    for col in ("record", "patient_id", "variable", "value", "unit"):
        out[col] = out[col].astype(object)
    return out[RECORD_COLUMNS]


def synthetic_example() -> pd.DataFrame:
    """A small made-up input (two invented patients, never real or training rows)."""
    rows = [
        ("patient", "example-1", None, "product", "axi-cel", None, None),
        ("patient", "example-1", None, "age_years", "61", None, None),
        ("patient", "example-1", None, "sex", "F", None, None),
        ("patient", "example-1", None, "disease", "LBCL", None, None),
        ("observation", "example-1", -2.0, "il6", "<1.5", "pg/mL", None),
        ("observation", "example-1", -2.0, "crp", "1.2", "mg/dL", None),
        ("observation", "example-1", -2.0, "ldh", "310", "U/L", None),
        ("observation", "example-1", -2.0, "platelets", "145", "10^9/L", None),
        ("observation", "example-1", 8.0, "temperature", "38.4", "degC", None),
        ("observation", "example-1", 10.0, "il6", "1,240", "pg/mL", None),
        ("observation", "example-1", 11.0, "sbp", "96", "mmHg", None),
        ("event", "example-1", 12.0, "antipyretic", "paracetamol", None, None),
        ("patient", "example-2", None, "product", "liso-cel", None, None),
        ("patient", "example-2", None, "age_years", "54", None, None),
        ("observation", "example-2", 3.0, "temperature", "99.1", "degF", None),
        ("observation", "example-2", 7.0, "crp", "14", "mg/L", None),
        ("observation", "example-2", 7.0, "spo2", "97", "%", None),
        ("event", "example-2", 9.0, "oxygen_low_flow", "2 L/min", None, 11.0),
    ]
    frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    for col in ("hours", "end_hours"):
        frame[col] = frame[col].astype("float64")
    for col in ("record", "patient_id", "variable", "value", "unit"):
        frame[col] = frame[col].astype(object)
    return frame
