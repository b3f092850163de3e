"""Normalisation of the secondary tables (events, outcomes, truth) and the row helpers the
loaders share. The rules are documented in :mod:`crs_ml.ingest.load`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.cohort import (
    EVENT_COLUMNS,
    OUTCOME_COLUMNS,
    TRUTH_COLUMNS,
    TRUTH_HORIZONS_COLUMNS,
    pandas_table,
)
from crs_ml.ingest.problems import CodedText, Collector, ColumnText, RowChecks, counts_by
from crs_ml.ingest.rows import Patients, row_hours, sorted_frame
from crs_ml.ingest.tables import RawTable
from crs_ml.ingest.values import (
    EVENT_VOCAB,
    factorize,
    pandas_text,
    parse_values,
    strip_text,
)
from crs_ml.variables import name_key


def column_of(frame: pl.DataFrame, name: str) -> pl.Series:
    if name in frame.columns:
        return frame.get_column(name)
    return pl.Series(name, [""] * len(frame), pl.String)


def text_of(frame: pl.DataFrame, name: str) -> np.ndarray:
    return strip_text(pandas_text(column_of(frame, name))).to_numpy().astype(object)


def coded_text_of(frame: pl.DataFrame, name: str) -> CodedText:
    """:func:`text_of` as codes into the distinct texts (each distinct text cleaned once)."""
    codes, uniques = factorize(pandas_text(column_of(frame, name)))
    return CodedText(codes, strip_text(uniques).to_numpy().astype(object))


@dataclass
class TableRows:
    raw: RawTable
    rc: RowChecks
    pcode: np.ndarray


def start_table(raw: RawTable, pat: Patients, col: Collector) -> TableRows:
    """Row checks with malformed rows recorded and patient ids resolved."""
    ids = pandas_text(column_of(raw.frame, "patient_id"))
    text = ColumnText(ids, strip=True)  # ids are compared without surrounding whitespace
    rc = RowChecks(col, raw.name, raw.file, raw.source_row, text)
    record_malformed(raw, col)
    pcode = pat.codes(ids)  # patients' ids are stripped: padded ids are looked up again
    unknown = pcode < 0
    if unknown.any():
        at = np.flatnonzero(unknown)
        stripped = strip_text(ids.gather(at))
        pcode = pcode.copy()
        pcode[at] = pat.codes(stripped)
        unknown = pcode < 0
        at = np.flatnonzero(unknown)
        empty = np.zeros(len(pcode), dtype=bool)
        empty[at] = text[at] == ""
        rc.reject(
            empty,
            "patient_id",
            "missing_patient_id",
            "rows without a patient_id",
            "missing patient_id",
        )
        rc.reject(
            unknown,
            "patient_id",
            "unknown_patient_id",
            "rows naming a patient_id that is not in the patients table",
            "unknown patient_id '{value}' (not in patients)",
            text,
            severity="fatal",
        )
    return TableRows(raw, rc, pcode)


def record_malformed(raw: RawTable, col: Collector) -> None:
    if not raw.malformed:
        return
    rows = np.array([r for r, _, _ in raw.malformed], dtype="int64")
    reasons = [reason for _, reason, _ in raw.malformed]
    columns = [column for _, _, column in raw.malformed]
    col.add_rejected(
        raw.name,
        pd.DataFrame(
            {"file": raw.file, "row": rows, "column": columns, "reason": reasons, "patient_id": ""}
        ),
    )
    examples = [
        {"file": raw.file, "row": int(r), "column": c, "value": why}
        for r, why, c in raw.malformed[:5]
    ]
    col.add(
        raw.name,
        "malformed_row",
        "error",
        "rows with the wrong number of fields",
        len(rows),
        examples,
    )


def events_table(raw: RawTable, pat: Patients, col: Collector) -> pd.DataFrame:
    """Validate and normalise the events table: names resolved once per distinct text,
    duplicates found and rows sorted by polars, taken over by pandas through Arrow."""
    t = start_table(raw, pat, col)
    f, rc = t.raw.frame, t.rc
    hours = row_hours(f, rc, pat, t.pcode, "hours", "time", required=True)
    end = row_hours(f, rc, pat, t.pcode, "end_hours", "end_time", required=False)
    codes, distinct = factorize(pandas_text(column_of(f, "event")))
    keys = [name_key(u) for u in distinct.to_list()]
    canon = [EVENT_VOCAB.get(k) if k else None for k in keys]
    raw_event = CodedText(codes, np.asarray(strip_text(distinct).to_list(), dtype=object))
    rc.reject(
        (raw_event.uniques == "")[codes],
        "event",
        "missing_event",
        "rows without an event name",
        "missing event",
    )
    unknown = np.array([bool(k) and k not in EVENT_VOCAB for k in keys], dtype=bool)[codes]
    if unknown.any():
        rc.reject(
            unknown,
            "event",
            "unknown_event",
            "event names not recognised",
            "unknown event '{value}'",
            raw_event,
            details=counts_by(raw_event.to_numpy(), unknown & rc.ok),
        )
    end_col = "end_hours" if "end_hours" in f else "end_time"
    rc.reject(
        end < hours,
        end_col,
        "end_before_start",
        "events that end before they start",
        "event ends before it starts",
    )
    ok = rc.ok
    detail = strip_text(pandas_text(column_of(f, "detail"))).filter(pl.Series(ok))
    frame = pl.DataFrame(
        {
            "p": t.pcode[ok],
            "hours": hours[ok],
            "end_hours": end[ok],
            "event": pl.Series(canon, dtype=pl.String).gather(codes[ok]),
            "detail": detail.set(detail == "", None) if len(detail) else detail,
            "source_row": raw.source_row[ok],
        }
    )
    columns = ["p", "hours", "end_hours", "event", "detail"]
    dup = frame.select(pl.struct(columns).is_first_distinct().not_()).to_series()
    if dup.any():
        first = frame.filter(dup).head(5)
        examples = [
            {"file": raw.file, "row": int(r), "column": "event", "value": str(e)}
            for r, e in zip(first["source_row"], first["event"], strict=True)
        ]
        col.add(
            "events",
            "exact_duplicate",
            "warning",
            "identical event rows: the first kept",
            int(dup.sum()),
            examples,
        )
        frame = frame.filter(~dup)
    out = (
        frame.with_columns(rank=pat.rank_series.gather(frame.get_column("p")))
        .sort("rank", "hours", "event", "source_row", nulls_last=True)  # as pandas
        .select(
            patient_id=pl.lit(pat.id_series).gather(pl.col("p")),
            hours=pl.col("hours"),
            end_hours=pl.col("end_hours"),
            event=pl.col("event"),
            detail=pl.col("detail"),
            source_row=pl.col("source_row").cast(pl.Int64),
        )
    )
    return pandas_table(out)[EVENT_COLUMNS]


def outcomes_table(raw: RawTable, pat: Patients, col: Collector) -> pd.DataFrame:
    t = start_table(raw, pat, col)
    f, rc = t.raw.frame, t.rc
    raw_grade = column_of(f, "crs_max_grade")
    grade, censored, kind = parse_values(raw_grade)
    bad = (kind != "") | (censored != 0) | ~np.isin(grade, np.arange(6))
    rc.reject(
        bad,
        "crs_max_grade",
        "bad_grade",
        "crs_max_grade not an integer 0-5",
        "crs_max_grade must be an integer 0-5, got '{value}'",
        raw_grade,
    )
    g3 = row_hours(f, rc, pat, t.pcode, "grade3_hours", "grade3_time", required=False)
    follow = row_hours(f, rc, pat, t.pcode, "followup_hours", "followup_end_time", required=False)
    death = row_hours(f, rc, pat, t.pcode, "death_hours", "death_time", required=False)
    rc.reject(
        (grade >= 3) & np.isnan(g3),
        "crs_max_grade",
        "grade3_time_missing",
        "crs_max_grade >= 3 without the time grade 3 was reached",
        "crs_max_grade {value} but no grade3 time",
        raw_grade,
    )
    rc.reject(
        (grade < 3) & ~np.isnan(g3),
        "crs_max_grade",
        "grade3_time_inconsistent",
        "a grade3 time given with crs_max_grade < 3",
        "grade3 time given but crs_max_grade is {value}",
        raw_grade,
    )
    frame = pd.DataFrame(
        {
            "patient_id": pat.ids[np.maximum(t.pcode, 0)],
            "crs_max_grade": np.nan_to_num(grade).astype("int64"),
            "grade3_hours": g3,
            "followup_hours": follow,
            "death_hours": death,
            "label_definition": text_of(f, "label_definition"),
            "_row": np.arange(len(f)),
        }
    )[rc.ok]
    same = frame.duplicated(OUTCOME_COLUMNS, keep="last").to_numpy()
    col.add(
        "outcomes",
        "exact_duplicate",
        "warning",
        "identical outcome rows: one kept",
        int(same.sum()),
    )
    frame = frame[~same]
    conflict = frame["patient_id"].duplicated(keep=False).to_numpy()
    if conflict.any():
        mask = np.zeros(len(f), dtype=bool)
        mask[frame["_row"].to_numpy()[conflict]] = True
        rc.reject(
            mask,
            "patient_id",
            "conflicting_outcomes",
            "patients with several different outcome rows: all of them left out",
            "several different outcome rows for patient '{value}'",
            text_of(f, "patient_id"),
        )
        frame = frame[~conflict]
    # a hash lookup (numpy's isin compares object arrays pair by pair: minutes at 100k)
    given = pl.Series(frame["patient_id"].to_numpy(dtype=object), dtype=pl.String)
    missing = int((~pl.Series(pat.ids, dtype=pl.String).is_in(given.implode())).sum())
    col.add("outcomes", "no_outcome", "warning", "patients without a usable outcome row", missing)
    rank = pat.rank[t.pcode[frame["_row"].to_numpy()]]
    return sorted_frame(frame, rank, [], OUTCOME_COLUMNS)


def truth_table(raw: RawTable, pat: Patients, col: Collector) -> pd.DataFrame:
    t = start_table(raw, pat, col)
    f, rc = t.raw.frame, t.rc
    landmark, c1, k1 = parse_values(column_of(f, "landmark_h"))
    risk, c2, k2 = parse_values(column_of(f, "true_risk"))
    rc.reject(
        (k1 != "") | (c1 != 0),
        "landmark_h",
        "bad_number",
        "numbers that do not parse",
        "landmark_h not a number: '{value}'",
        column_of(f, "landmark_h"),
    )
    rc.reject(
        (k2 != "") | (c2 != 0) | (risk < 0) | (risk > 1),
        "true_risk",
        "bad_number",
        "numbers that do not parse",
        "true_risk not a probability: '{value}'",
        column_of(f, "true_risk"),
    )
    ok = rc.ok
    frame = pd.DataFrame(
        {"patient_id": pat.ids[t.pcode[ok]], "landmark_h": landmark[ok], "true_risk": risk[ok]}
    )
    out = sorted_frame(frame, pat.rank[t.pcode[ok]], ["landmark_h"], TRUTH_COLUMNS)
    return out.astype({"landmark_h": "float64", "true_risk": "float64"})


def truth_horizons_table(raw: RawTable, pat: Patients, col: Collector) -> pd.DataFrame:
    """The simulator's true risk per short horizon (``truth_horizons``): numbers checked as
    in :func:`truth_table`, the horizon label kept as text."""
    t = start_table(raw, pat, col)
    f, rc = t.raw.frame, t.rc
    values = {}
    for name in ("landmark_h", "horizon_end_h", "true_risk"):
        v, c, k = parse_values(column_of(f, name))
        bad = (k != "") | (c != 0)
        if name == "true_risk":
            bad |= (v < 0) | (v > 1)
        rc.reject(bad, name, "bad_number", "numbers that do not parse",
                  f"{name} not a number in range: '{{value}}'", column_of(f, name))  # fmt: skip
        values[name] = v
    horizon = text_of(f, "horizon")
    rc.reject(horizon == "", "horizon", "missing_value", "rows without a horizon",
              "horizon missing", column_of(f, "horizon"))  # fmt: skip
    ok = rc.ok
    frame = pd.DataFrame({"patient_id": pat.ids[t.pcode[ok]], "horizon": horizon[ok],
                          **{k: v[ok] for k, v in values.items()}})  # fmt: skip
    out = sorted_frame(frame, pat.rank[t.pcode[ok]], ["landmark_h", "horizon_end_h"],
                       TRUTH_HORIZONS_COLUMNS)  # fmt: skip
    return out.astype({"landmark_h": "float64", "horizon_end_h": "float64",
                       "true_risk": "float64", "horizon": "str"})  # fmt: skip
