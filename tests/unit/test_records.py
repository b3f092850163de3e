"""The one-table MLflow model input <-> Cohort (crs_ml.ingest.records)."""

import numpy as np
import pandas as pd
import pytest

from crs_ml.errors import InputError
from crs_ml.ingest.records import (
    RECORD_COLUMNS,
    cohort_to_records,
    records_to_cohort,
    synthetic_example,
)


def _obs(cohort, pid, variable):
    o = cohort.observations
    return o[(o["patient_id"] == pid) & (o["variable"] == variable)].reset_index(drop=True)


def test_example_is_normalised_like_files():
    cohort = records_to_cohort(synthetic_example())
    assert list(cohort.patients["patient_id"]) == ["example-1", "example-2"]
    p1 = cohort.patients.iloc[0]
    assert (p1["product"], p1["sex"], p1["disease"], p1["age_years"]) == (
        "axi-cel",
        "F",
        "LBCL",
        61,
    )
    crp = _obs(cohort, "example-1", "crp")
    assert crp["value"].tolist() == [12.0]  # 1.2 mg/dL -> mg/L
    il6 = _obs(cohort, "example-1", "il6")
    assert il6["censored"].tolist() == [-1, 0] and il6["value"].tolist() == [0.75, 1240.0]
    temp = _obs(cohort, "example-2", "temperature")
    assert temp["value"].iloc[0] == pytest.approx((99.1 - 32) * 5 / 9)
    # source rows point at the 1-based rows of the input table
    assert crp["source_row"].tolist() == [6]
    ev = cohort.events
    assert ev["event"].tolist() == ["antipyretic", "oxygen_low_flow"]
    assert ev["end_hours"].iloc[1] == 11.0 and ev["detail"].iloc[0] == "paracetamol"
    assert ev["source_row"].tolist() == [12, 18]
    assert len(cohort.rejected) == 0


def test_round_trip_keeps_every_value():
    first = records_to_cohort(synthetic_example())
    records = cohort_to_records(first)
    assert list(records.columns) == RECORD_COLUMNS
    again = records_to_cohort(records)
    cols = ["patient_id", "hours", "variable", "value", "censored"]
    a = first.observations[cols].assign(censored=0)
    b = again.observations[cols].assign(censored=0)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    pd.testing.assert_frame_equal(
        first.events[["patient_id", "hours", "end_hours", "event"]],
        again.events[["patient_id", "hours", "end_hours", "event"]],
        check_dtype=False,
    )
    cols = ["patient_id", "product", "age_years", "sex"]
    pd.testing.assert_frame_equal(first.patients[cols], again.patients[cols], check_dtype=False)


def test_patient_without_patient_rows_and_loose_spelling():
    frame = pd.DataFrame(
        {
            "Record": [" Observation", "EVENT", "patient"],
            "patient_id": ["a", "a", "b"],
            "hours": ["1,5", "2", None],
            "variable": ["IL-6", "Tocilizumab", "Product"],
            "value": [12, None, "Yescarta"],
        }
    )
    cohort = records_to_cohort(frame)
    assert list(cohort.patients["patient_id"]) == ["a", "b"]
    assert cohort.patients["product"].tolist()[1] == "axi-cel"
    assert _obs(cohort, "a", "il6")["hours"].tolist() == [1.5]
    assert cohort.events["event"].tolist() == ["tocilizumab"]


def _bad(row, col, value):
    frame = synthetic_example()
    frame[col] = frame[col].astype(object)
    frame.loc[row, col] = value
    return frame


@pytest.mark.parametrize(
    ("frame", "row", "column", "reason"),
    [
        (synthetic_example().drop(columns="record"), None, "record", "missing required column"),
        (synthetic_example().drop(columns="hours"), None, "hours", "missing required column"),
        (_bad(3, "record", "lab"), 4, "record", "unknown record type 'lab'"),
        (_bad(6, "hours", "soon"), 7, "hours", "cannot read hours 'soon'"),
        (_bad(6, "hours", np.nan), 7, "hours", "hours is required for observation"),
        (_bad(5, "unit", "mg/furlong"), 6, "unit", "unknown unit 'mg/furlong' for crp"),
        (_bad(11, "variable", "lunch"), 12, "variable", "unknown event 'lunch'"),
        (_bad(1, "variable", "height"), 2, "variable", "unknown patient attribute"),
        (_bad(0, "patient_id", " "), 1, "patient_id", "missing patient_id"),
        (_bad(17, "end_hours", 1.0), 18, "end_hours", "ends before it starts"),
    ],
)
def test_malformed_input_names_row_column_and_reason(frame, row, column, reason):
    with pytest.raises(InputError) as info:
        records_to_cohort(frame)
    err = info.value
    assert err.column == column
    assert err.row == row
    assert reason in str(err)


def test_conflicting_patient_attribute_is_an_error():
    frame = synthetic_example()
    extra = frame.iloc[[0]].assign(value="tisa-cel")
    with pytest.raises(InputError, match="two different values for 'product'"):
        records_to_cohort(pd.concat([frame, extra], ignore_index=True))


def test_lenient_mode_keeps_the_patient_and_lists_the_row():
    frame = _bad(5, "unit", "mg/furlong")
    cohort = records_to_cohort(frame, strict=False)
    assert len(cohort.rejected) == 1
    r = cohort.rejected.iloc[0]
    assert (r["file"], r["row"], r["column"], r["patient_id"]) == ("input", 6, "unit", "example-1")
    assert _obs(cohort, "example-1", "crp").empty
    assert not _obs(cohort, "example-1", "ldh").empty


def test_empty_and_non_table_inputs():
    with pytest.raises(InputError, match="no rows"):
        records_to_cohort(synthetic_example().iloc[:0])
    with pytest.raises(InputError, match="table"):
        records_to_cohort([1, 2, 3])
