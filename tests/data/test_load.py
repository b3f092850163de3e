"""Loading, validating and normalising cohorts: load_cohort and its check report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crs_ml.cohort import (
    EVENT_COLUMNS,
    OBSERVATION_COLUMNS,
    OUTCOME_COLUMNS,
    PATIENT_COLUMNS,
    REJECTED_COLUMNS,
)
from crs_ml.config import DataConfig
from crs_ml.errors import InputError
from crs_ml.ingest.load import CheckReport, load_cohort
from crs_ml.ingest.values import parse_number

PATIENTS = [
    {"patient_id": "007", "infusion_time": "2024-03-01T08:00:00", "product": "Yescarta",
     "age_years": "54", "sex": "female", "disease": "DLBCL", "site": "A"},
    {"patient_id": "008", "infusion_time": "2024-03-02T10:00:00+02:00", "product": "kymriah",
     "age_years": "61", "sex": "M", "disease": "MM", "site": "A"},
]  # fmt: skip


def write_csv(path: Path, rows: list[dict], sep: str = ",") -> Path:
    """Rows as text, exactly as given (empty cells for missing keys)."""
    header = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=sep)
        writer.writerow(header)
        writer.writerows([[row.get(c, "") for c in header] for row in rows])
    return path


def obs(pid, hours, variable, value, unit="", **extra) -> dict:
    return {"patient_id": pid, "hours": str(hours), "variable": variable, "value": value,
            "unit": unit, **extra}  # fmt: skip


def make(tmp_path: Path, observations, patients=PATIENTS, **tables) -> Path:
    folder = tmp_path / "cohort"
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "patients.csv", patients)
    write_csv(folder / "observations.csv", observations)
    for name, rows in tables.items():
        write_csv(folder / f"{name}.csv", rows)
    return folder


def rejected_reasons(cohort) -> list[str]:
    return cohort.rejected["reason"].tolist()


def test_output_columns_dtypes_and_sorting(tmp_path):
    rows = [
        obs("008", 5, "crp", "3", "mg/L"),
        obs("007", 12, "temperature", "38.5", "degC"),
        obs("007", 12, "crp", "10", "mg/L"),
        obs("007", -3, "il6", "4", "pg/mL"),
    ]
    events = [{"patient_id": "007", "hours": "20", "event": "tocilizumab"}]
    outcomes = [{"patient_id": "008", "crs_max_grade": "1"},
                {"patient_id": "007", "crs_max_grade": "3", "grade3_hours": "30"}]  # fmt: skip
    c = load_cohort(make(tmp_path, rows, events=events, outcomes=outcomes))
    assert list(c.patients.columns) == PATIENT_COLUMNS
    assert list(c.observations.columns) == OBSERVATION_COLUMNS
    assert list(c.events.columns) == EVENT_COLUMNS
    assert list(c.outcomes.columns) == OUTCOME_COLUMNS
    assert list(c.rejected.columns) == REJECTED_COLUMNS
    o = c.observations
    assert str(o["patient_id"].dtype) == "str" and str(o["variable"].dtype) == "str"
    assert str(o["hours"].dtype) == "float64" and str(o["value"].dtype) == "float64"
    assert str(o["censored"].dtype) == "int8" and str(o["out_of_range"].dtype) == "bool"
    assert str(o["source_row"].dtype) == "int64"
    assert str(c.patients["infusion_time"].dtype) == "datetime64[ns, UTC]"
    assert str(c.outcomes["crs_max_grade"].dtype) == "int64"
    assert list(zip(o["patient_id"], o["hours"], o["variable"], strict=True)) == [
        ("007", -3.0, "il6"), ("007", 12.0, "crp"), ("007", 12.0, "temperature"),
        ("008", 5.0, "crp"),
    ]  # fmt: skip
    assert o["source_row"].tolist() == [4, 3, 2, 1]
    assert c.outcomes["patient_id"].tolist() == ["007", "008"]
    assert c.patients["product"].tolist() == ["axi-cel", "tisa-cel"]
    assert c.patients["sex"].tolist() == ["F", "M"]
    assert c.patients["disease"].tolist() == ["LBCL", "MM"]
    assert c.patients["person_id"].tolist() == ["007", "008"]
    assert c.report.usable and c.report.n_errors == 0


def test_leading_zeros_of_ids_survive(tmp_path):
    patients = [{"patient_id": "007", "person_id": "0042"}, {"patient_id": "7"}]
    rows = [obs("007", 1, "crp", "5", "mg/L"), obs("7", 1, "crp", "6", "mg/L")]
    c = load_cohort(make(tmp_path, rows, patients=patients))
    assert c.patients["patient_id"].tolist() == ["007", "7"]
    assert c.patients["person_id"].tolist() == ["0042", "7"]
    assert dict(zip(c.observations["patient_id"], c.observations["value"], strict=True)) == {
        "007": 5.0,
        "7": 6.0,
    }


def test_absolute_and_relative_times_give_the_same_hours(tmp_path):
    relative = [obs("007", 26.5, "crp", "5", "mg/L"), obs("008", -2.25, "crp", "6", "mg/L")]
    absolute = [
        {"patient_id": "007", "time": "2024-03-02T10:30:00", "variable": "crp", "value": "5",
         "unit": "mg/L"},
        # 008 was infused 2024-03-02T08:00Z; this is 05:45Z, given in another offset
        {"patient_id": "008", "time": "2024-03-02T06:45:00+01:00", "variable": "crp",
         "value": "6", "unit": "mg/L"},
    ]  # fmt: skip
    a = load_cohort(make(tmp_path / "a", relative)).observations
    b = load_cohort(make(tmp_path / "b", absolute)).observations
    np.testing.assert_allclose(a["hours"], b["hours"], rtol=0, atol=1e-9)
    assert a["hours"].tolist() == [26.5, -2.25]


def test_censored_values_under_both_policies(tmp_path):
    rows = [
        obs("007", 1, "il6", "<1.5", "pg/mL"),
        obs("007", 2, "il6", "<= 2", "pg/mL"),
        obs("007", 3, "il6", ">5000", "pg/mL"),
        obs("007", 4, "il6", ">=5,000", "pg/mL"),
        obs("007", 5, "il6", "12", "pg/mL"),
    ]
    folder = make(tmp_path, rows)
    half = load_cohort(folder).observations
    limit = load_cohort(folder, DataConfig(censored_below="limit")).observations
    assert half["value"].tolist() == [0.75, 1.0, 5000.0, 5000.0, 12.0]
    assert limit["value"].tolist() == [1.5, 2.0, 5000.0, 5000.0, 12.0]
    assert half["censored"].tolist() == [-1, -1, 1, 1, 0]


def test_non_numeric_results_are_left_out_and_counted_by_kind(tmp_path):
    texts = ["Hemolyzed", "QNS", "---", "", "NaN", "inf", "-inf", "N/A", "pending", "see lab"]
    rows = [obs("007", i, "crp", t, "mg/L") for i, t in enumerate(texts)]
    rows += [obs("007", 50, "crp", "1,240", "mg/L"), obs("007", 51, "crp", "1 240", "mg/L")]
    c = load_cohort(make(tmp_path, rows))
    assert c.observations["value"].tolist() == [1240.0, 1240.0]
    assert np.isfinite(c.observations["value"]).all()
    problem = c.report.problem("non_numeric_result")
    assert problem.count == len(texts)
    assert problem.details == {"lab_comment": 3, "placeholder": 5, "empty": 1, "text": 1}
    assert problem.severity == "warning"
    assert len(c.rejected) == 0  # not errors: counted, not listed as rejected


def test_unknown_unit_rejects_the_row_naming_unit_and_row(tmp_path):
    rows = [obs("007", 1, "crp", "5", "mg/L"), obs("007", 2, "crp", "5", "mmol/parsec"),
            obs("007", 3, "crp", "7", "mg/dL")]  # fmt: skip
    c = load_cohort(make(tmp_path, rows))
    assert c.observations["value"].tolist() == [5.0, 70.0]
    rej = c.rejected.iloc[0]
    assert (rej["file"], rej["row"], rej["column"]) == ("observations.csv", 2, "unit")
    assert "mmol/parsec" in rej["reason"] and "crp" in rej["reason"]
    assert c.report.problem("unknown_unit").severity == "error"
    assert c.report.usable and not c.report.passes(strict=True)


def test_unknown_patient_rows_are_rejected_and_make_the_cohort_unusable(tmp_path):
    rows = [obs("007", 1, "crp", "5", "mg/L"), obs("999", 1, "crp", "5", "mg/L")]
    events = [{"patient_id": "998", "hours": "3", "event": "tocilizumab"}]
    c = load_cohort(make(tmp_path, rows, events=events))
    assert c.observations["patient_id"].tolist() == ["007"]
    assert set(c.rejected["patient_id"]) == {"999", "998"}
    assert all("unknown patient_id" in r for r in rejected_reasons(c))
    assert not c.report.usable


@pytest.mark.parametrize(
    ("table", "drop", "column"),
    [("observations", "variable", "variable"), ("observations", "value", "value"),
     ("observations", "hours", "time"), ("patients", "patient_id", "patient_id")],
)  # fmt: skip
def test_missing_required_column_names_file_and_column(tmp_path, table, drop, column):
    rows = [obs("007", 1, "crp", "5", "mg/L")]
    folder = make(tmp_path, rows)
    path = folder / f"{table}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=[drop])
    frame.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        load_cohort(folder)
    assert err.value.file == f"{table}.csv" and err.value.column == column


def test_missing_file_and_folder_are_input_errors(tmp_path):
    folder = make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")])
    (folder / "observations.csv").unlink()
    with pytest.raises(InputError, match="observations.csv"):
        load_cohort(folder)
    with pytest.raises(InputError, match="does not exist"):
        load_cohort(tmp_path / "nowhere")


def test_duplicated_patient_id_names_both_rows(tmp_path):
    patients = [{"patient_id": "007"}, {"patient_id": "008"}, {"patient_id": "007"}]
    with pytest.raises(InputError, match=r"'007' \(rows 1 and 3\)") as err:
        load_cohort(make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")], patients=patients))
    assert err.value.row == 3 and err.value.column == "patient_id"


def test_empty_patients_table_is_an_input_error(tmp_path):
    folder = make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")])
    (folder / "patients.csv").write_text("patient_id,infusion_time\n")
    with pytest.raises(InputError, match="no rows"):
        load_cohort(folder)


DUPLICATES = [
    obs("007", 1, "crp", "5", "mg/L"),
    obs("007", 1, "CRP", "0.5", "mg/dL"),  # same value after conversion: exact duplicate
    obs("007", 2, "crp", "9", "mg/L"),
    obs("007", 2, "crp", "4", "mg/L"),  # conflicting, comes last
    obs("007", 2, "crp", "5", "mg/L"),
]


@pytest.mark.parametrize(("rule", "value_at_2"), [("last_row", 5.0), ("max", 9.0), ("mean", 6.0)])
def test_exact_and_conflicting_duplicates_are_counted(tmp_path, rule, value_at_2):
    c = load_cohort(make(tmp_path, DUPLICATES), DataConfig(conflicting_duplicates=rule))
    o = c.observations
    assert o["hours"].tolist() == [1.0, 2.0]
    assert o["value"].tolist() == [5.0, pytest.approx(value_at_2)]
    assert c.report.problem("exact_duplicate").count == 1
    conflict = c.report.problem("conflicting_duplicate")
    assert conflict.count == 2 and conflict.details["groups"] == 1
    if rule == "last_row":
        assert o["source_row"].tolist() == [2, 5]


def test_csv_and_parquet_give_the_same_cohort(tmp_path):
    rows = [obs("007", 1.5, "Temp", "101.2", "degF"), obs("007", 3, "il6", "<2", "pg/mL"),
            obs("008", -1, "PLT", "150,000", "/uL"), obs("008", 2, "crp", "Hemolyzed", "mg/L")]  # fmt: skip
    events = [{"patient_id": "008", "hours": "4", "end_hours": "9", "event": "pressor"}]
    csv_folder = make(tmp_path / "csv", rows, events=events)
    pq_folder = tmp_path / "pq"
    pq_folder.mkdir()
    for name in ("patients", "observations", "events"):
        frame = pd.read_csv(csv_folder / f"{name}.csv", dtype=str, keep_default_na=False)
        for col in ("hours", "end_hours", "age_years"):
            if col in frame:
                frame[col] = pd.to_numeric(frame[col])
        frame.to_parquet(pq_folder / f"{name}.parquet")
    a, b = load_cohort(csv_folder), load_cohort(pq_folder)
    for table in ("patients", "observations", "events"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table))
    assert len(a.observations) == 3


def test_column_mapping_renames_site_columns(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    write_csv(folder / "patients.csv", [{"PID": "007", "Infusion": "2024-03-01T08:00"}])
    write_csv(folder / "observations.csv", [
        {"PID": "007", "ResultTime": "2024-03-01T20:00", "Test": "CRP", "Result": "12",
         "Units": "mg/L", "Comment": "x"},
    ])  # fmt: skip
    mapping = {
        "patients": {"PID": "patient_id", "Infusion": "infusion_time"},
        "observations": {"PID": "patient_id", "ResultTime": "time", "Test": "variable",
                         "Result": "value", "Units": "unit"},
    }  # fmt: skip
    c = load_cohort(folder, DataConfig(column_mapping=mapping))
    assert c.observations[["patient_id", "hours", "variable", "value"]].values.tolist() == [
        ["007", 12.0, "crp", 12.0]
    ]
    assert c.report.problem("unused_columns").severity == "info"


def test_strict_units_rejects_rows_without_unit(tmp_path):
    rows = [obs("007", 1, "crp", "5", ""), obs("007", 2, "crp", "6", "mg/L"),
            obs("007", 3, "inr", "1.1", "")]  # fmt: skip
    folder = make(tmp_path, rows)
    lenient = load_cohort(folder)
    assert lenient.observations["value"].tolist() == [5.0, 6.0, 1.1]
    assert lenient.report.problem("missing_unit").count == 1  # inr is dimensionless
    strict = load_cohort(folder, DataConfig(strict_units=True))
    assert strict.observations["hours"].tolist() == [2.0, 3.0]
    assert rejected_reasons(strict) == ["missing unit (strict_units) for crp"]


def test_unknown_variables_are_left_out_and_listed(tmp_path):
    rows = [obs("007", 1, "sodium", "140", "mmol/L"), obs("007", 2, "sodium", "139", "mmol/L"),
            obs("007", 3, "Na+", "139", "mmol/L"), obs("007", 1, "26881-3", "20", "pg/mL")]  # fmt: skip
    c = load_cohort(make(tmp_path, rows))
    assert c.observations["variable"].tolist() == ["il6"]
    assert c.report.problem("unknown_variable").details == {"sodium": 2, "Na+": 1}
    assert len(c.rejected) == 0


def test_bad_and_implausible_times_reject_only_their_rows(tmp_path):
    rows = [
        {"patient_id": "007", "time": "2024-03-01T09:00", "variable": "crp", "value": "1"},
        {"patient_id": "007", "time": "yesterday", "variable": "crp", "value": "2"},
        {"patient_id": "007", "time": "1850-01-01", "variable": "crp", "value": "3"},
        {"patient_id": "007", "time": "2999-01-01", "variable": "crp", "value": "4"},
        {"patient_id": "007", "hours": "abc", "variable": "crp", "value": "5"},
        {"patient_id": "007", "variable": "crp", "value": "6"},
    ]
    c = load_cohort(make(tmp_path, rows))
    assert c.observations["value"].tolist() == [1.0]
    assert c.rejected["row"].tolist() == [2, 3, 4, 5, 6]
    reasons = " | ".join(rejected_reasons(c))
    for text in ("yesterday", "before 1900", "in the future", "abc", "no time"):
        assert text in reasons


def test_events_are_normalised_and_bad_events_rejected(tmp_path):
    events = [
        {"patient_id": "007", "hours": "10", "end_hours": "20", "event": "Pressor"},
        {"patient_id": "007", "hours": "11", "event": "HFNC"},
        {"patient_id": "007", "hours": "12", "event": "BiPAP"},
        {"patient_id": "007", "hours": "13", "event": "Actemra", "detail": "8 mg/kg"},
        {"patient_id": "007", "hours": "14", "event": "dexamethasone"},
        {"patient_id": "007", "hours": "15", "event": "teleportation"},
        {"patient_id": "007", "hours": "16", "end_hours": "15", "event": "vasopressor"},
    ]
    c = load_cohort(make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")], events=events))
    assert c.events["event"].tolist() == [
        "vasopressor", "oxygen_high_flow", "positive_pressure", "tocilizumab", "corticosteroid",
    ]  # fmt: skip
    assert c.events["end_hours"].isna().tolist() == [False, True, True, True, True]
    assert c.events["detail"].isna().tolist() == [True, True, True, False, True]
    assert c.rejected["row"].tolist() == [6, 7]
    assert "teleportation" in c.rejected["reason"].iloc[0]


def test_outcomes_validation(tmp_path):
    outcomes = [
        {"patient_id": "007", "crs_max_grade": "3", "grade3_hours": "40", "death_hours": ""},
        {"patient_id": "008", "crs_max_grade": "7"},
    ]
    c = load_cohort(make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")], outcomes=outcomes))
    assert c.outcomes["patient_id"].tolist() == ["007"]
    assert c.outcomes["label_definition"].tolist() == [""]
    assert np.isnan(c.outcomes["death_hours"].iloc[0])
    assert "got '7'" in c.rejected["reason"].iloc[0]
    missing = [{"patient_id": "007", "crs_max_grade": "4"}]
    c = load_cohort(make(tmp_path / "b", [obs("007", 1, "crp", "5", "mg/L")], outcomes=missing))
    assert len(c.outcomes) == 0 and "no grade3 time" in c.rejected["reason"].iloc[0]


def test_unknown_product_sex_disease_are_normalised_and_counted(tmp_path):
    patients = [{"patient_id": "1", "product": "Breyanzi", "sex": "", "disease": ""},
                {"patient_id": "2", "product": "CAR-X", "sex": "?", "disease": "CLL"},
                {"patient_id": "3", "product": "", "sex": "f", "disease": "myeloma"}]  # fmt: skip
    c = load_cohort(make(tmp_path, [obs("1", 1, "crp", "5", "mg/L")], patients=patients))
    p = c.patients
    assert p["product"].tolist()[:2] == ["liso-cel", "other"] and pd.isna(p["product"].iloc[2])
    assert p["sex"].tolist() == ["U", "U", "F"]
    assert pd.isna(p["disease"].iloc[0]) and p["disease"].tolist()[1:] == ["other", "MM"]
    assert c.report.problem("unknown_product").details == {"CAR-X": 1}


def test_malformed_rows_are_rejected_with_their_row_number(tmp_path):
    folder = make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")])
    (folder / "observations.csv").write_text(
        "patient_id,hours,variable,value,unit\n"
        "007,1,crp,5,mg/L\n"
        "007,2,crp,5,mg/L,extra\n"
        '007,3,crp,"1,240",mg/L\n'
    )
    c = load_cohort(folder)
    assert c.observations["source_row"].tolist() == [1, 3]
    assert c.observations["value"].tolist() == [5.0, 1240.0]
    assert c.rejected[["row", "column", "reason"]].values.tolist() == [
        [2, "unit", "expected 5 fields, found 6: extra after 'unit'"]
    ]


def test_semicolon_csv_with_decimal_comma_and_bom(tmp_path):
    folder = make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")])
    (folder / "observations.csv").write_bytes(
        "\ufeffpatient_id;hours;variable;value;unit\n007;1,5;Temp;37,2;°C\n".encode()
    )
    c = load_cohort(folder)
    assert c.observations[["hours", "value"]].values.tolist() == [[1.5, 37.2]]


def test_report_is_json_serialisable_and_renders(tmp_path):
    rows = [obs("007", 1, "crp", "5", "mmol/parsec"), obs("007", 2, "crp", "QNS", "mg/L"),
            obs("007", 3, "spo2", "140", "%")]  # fmt: skip
    c = load_cohort(make(tmp_path, rows))
    d = json.loads(json.dumps(c.report.to_dict()))
    assert d["tables"]["observations"] == {
        "table": "observations", "file": "observations.csv", "rows_read": 3, "rows_used": 1,
        "rows_rejected": 1,
    }  # fmt: skip
    codes = {p["code"]: p for p in d["problems"]}
    assert codes["out_of_range"]["examples"][0]["row"] == 3
    assert c.observations["out_of_range"].tolist() == [True]
    assert d["usable"] is True and d["n_errors"] == 1
    text = c.report.to_text()
    assert "unknown_unit" in text and "observations.csv" in text


def test_report_from_structural_error():
    report = CheckReport.from_error(InputError("missing", file="x.csv", column="value"))
    assert not report.usable
    assert report.to_dict()["problems"][0]["examples"][0]["column"] == "value"


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1000, max_value=10**12),
    st.sampled_from([",", " ", "\u00a0", "'"]),
    st.integers(min_value=0, max_value=99),
)
def test_thousands_separators_parse_back(number, sep, cents):
    grouped = f"{number:,}".replace(",", sep)
    assert parse_number(grouped) == number
    assert parse_number(f"{grouped}.{cents:02d}") == pytest.approx(number + cents / 100)


def test_explicit_paths_gzip_and_truth_table(tmp_path):
    import gzip

    folder = make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")])
    gz = tmp_path / "observations.csv.gz"
    gz.write_bytes(gzip.compress((folder / "observations.csv").read_bytes()))
    truth = write_csv(tmp_path / "truth.csv", [
        {"patient_id": "008", "landmark_h": "12", "true_risk": "0.25"},
        {"patient_id": "007", "landmark_h": "6", "true_risk": "0.1"},
        {"patient_id": "007", "landmark_h": "12", "true_risk": "1.5"},
    ])  # fmt: skip
    by_list = load_cohort([folder / "patients.csv", gz, truth])
    by_dict = load_cohort({"patients": folder / "patients.csv", "observations": gz, "truth": truth})
    for c in (by_list, by_dict):
        assert c.observations["value"].tolist() == [5.0]
        assert c.truth.values.tolist() == [["007", 6.0, 0.1], ["008", 12.0, 0.25]]
        assert "not a probability" in c.rejected["reason"].iloc[0]
    with pytest.raises(InputError, match="cannot tell which table"):
        load_cohort([folder / "patients.csv", tmp_path / "labs.csv"])


# --- nothing dropped without a word ------------------------------------------------------


def test_renamed_contract_columns_are_warnings_with_the_mapping_to_use(tmp_path):
    """`Product Name` and `Age` instead of product and age_years: the data would be lost
    (every product 'other', every age missing), so the check warns and gives the mapping."""
    renamed = [
        {("Product Name" if k == "product" else "Age" if k == "age_years" else k): v
         for k, v in p.items()} | {"ward": "5B"}
        for p in PATIENTS
    ]  # fmt: skip
    folder = make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")], patients=renamed)
    report = load_cohort(folder).report
    warn = report.problem("unmapped_column", "patients")
    assert warn is not None and warn.severity == "warning" and warn.count == 2
    assert "data: {column_mapping: {patients: {'Product Name': product, Age: age_years}}}" in (
        warn.message
    )
    assert report.problem("unused_columns").message.endswith(": ward")  # unrelated: info
    mapped = DataConfig(
        column_mapping={"patients": {"Product Name": "product", "Age": "age_years"}}
    )
    fixed = load_cohort(folder, mapped)
    assert fixed.report.problem("unmapped_column") is None
    assert fixed.patients["age_years"].tolist() == [54.0, 61.0]


def test_missing_patient_id_lists_the_columns_found_and_the_mapping(tmp_path):
    renamed = [{("PatientID" if k == "patient_id" else k): v for k, v in p.items()}
               for p in PATIENTS]  # fmt: skip
    folder = make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")], patients=renamed)
    with pytest.raises(InputError, match="missing required column 'patient_id'") as err:
        load_cohort(folder)
    assert "columns found: 'PatientID', 'infusion_time'" in str(err.value)
    assert "data: {column_mapping: {patients: {PatientID: patient_id}}}" in str(err.value)
    observations = [{"who": "007", "hours": "1", "variable": "crp", "value": "5"}]
    folder = make(tmp_path / "b", observations)
    with pytest.raises(InputError, match="map a column to it with data.column_mapping.obs"):
        load_cohort(folder)
    observations = [{"Patient": "007", "t": "1", "variable": "crp", "value": "5"}]
    with pytest.raises(InputError, match="{observations: {Patient: patient_id}}") as err:
        load_cohort(make(tmp_path / "c", observations))
    assert "columns found: 'Patient', 't', 'variable', 'value'" in str(err.value)


def test_table_files_in_another_case_are_read_and_other_formats_named(tmp_path):
    folder = make(tmp_path, [obs("007", 1, "crp", "5", "mg/L")])
    (folder / "patients.csv").rename(folder / "Patients.CSV")
    cohort = load_cohort(folder)
    assert cohort.report.tables["patients"].file == "Patients.CSV"
    assert cohort.patients["patient_id"].tolist() == ["007", "008"]
    (folder / "Patients.CSV").rename(folder / "patients.xlsx")
    with pytest.raises(InputError, match="patients.xlsx is the patients table") as err:
        load_cohort(folder)
    assert "save the sheet as patients.csv" in str(err.value)
    (folder / "patients.xlsx").rename(folder / "admissions.csv")
    with pytest.raises(InputError, match=r"not found .* \(it holds: admissions.csv, obs"):
        load_cohort(folder)


def test_a_lab_name_resembling_the_catalogue_is_rejected_with_the_alias_to_add(tmp_path):
    rows = [obs("007", 1, "Ferritin, serum", "900", "ng/mL"),
            obs("007", 2, "Ferritin, serum", "950", "ng/mL"),
            obs("007", 3, "sodium", "140", "mmol/L"), obs("007", 3, "crp", "5", "mg/L")]  # fmt: skip
    folder = make(tmp_path, rows)
    cohort = load_cohort(folder)
    like = cohort.report.problem("variable_like_catalogue")
    assert like.severity == "warning" and like.details == {"Ferritin, serum -> ferritin": 2}
    assert "data.variable_aliases" in like.message
    assert (
        rejected_reasons(cohort)
        == ["variable 'Ferritin, serum' is not in the catalogue (see data.variable_aliases)"] * 2
    )
    assert cohort.report.problem("unknown_variable").details == {"sodium": 1}  # not listed
    aliased = load_cohort(folder, DataConfig(variable_aliases={"Ferritin, serum": "ferritin"}))
    assert aliased.observations["variable"].tolist() == ["ferritin", "ferritin", "crp"]
    assert len(aliased.rejected) == 0
