"""MEDS 0.4 and FHIR R4 bulk twins of one simulated cohort read back into the same cohort.

The simulator writes the same patients as contract CSV files, as a MEDS dataset and as a FHIR
bulk export; each adapter must give the contract twin's normalised observations, events,
patients and outcomes, hence the same features and scores. Every twin subject is one
infusion episode (see crs_ml.simulate.coded_twin), so person_id is the one column compared
apart. Then the error cases: unmapped codes, a subject without an infusion record, an
infusion naming no product, times without a time zone, dates without a time, broken lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crs_ml.config import DataConfig  # noqa: E402
from crs_ml.errors import InputError  # noqa: E402
from crs_ml.ingest.coded.detect import coded_format  # noqa: E402
from crs_ml.ingest.coded.fhir import load_fhir  # noqa: E402
from crs_ml.ingest.coded.meds import load_meds  # noqa: E402
from crs_ml.ingest.load import load_cohort  # noqa: E402
from crs_ml.simulate.coded_twin import twin_records  # noqa: E402
from crs_ml.simulate.fhir_twin import write_fhir  # noqa: E402
from crs_ml.simulate.meds_twin import write_meds  # noqa: E402
from crs_ml.simulate.simulator import simulate, write_cohort  # noqa: E402

SEED = 23
N = 160


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    base = tmp_path_factory.mktemp("coded_twins")
    tables = simulate(N, SEED).tables
    write_cohort(tables, base / "contract")
    write_meds(tables, base / "meds", SEED)
    write_fhir(tables, base / "fhir", SEED)
    contract = load_cohort(base / "contract")
    subject_to_patient = {
        str(i + 1): p for i, p in enumerate(tables["patients"]["patient_id"].astype(str))
    }
    return {
        "base": base,
        "tables": tables,
        "contract": contract,
        "meds": load_meds(base / "meds"),
        "fhir": load_fhir(base / "fhir"),
        # MEDS subject ids are integers (1..n in simulation order); FHIR keeps the ids
        "ids": {"meds": subject_to_patient, "fhir": None},
    }


def _renamed(frame: pd.DataFrame, ids: dict | None) -> pd.DataFrame:
    out = frame.copy()
    if ids is not None:
        out["patient_id"] = out["patient_id"].map(ids)
    return out


def _same(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], drop=()) -> None:
    a = a.drop(columns=list(drop)).sort_values(keys, kind="stable").reset_index(drop=True)
    b = b.drop(columns=list(drop)).sort_values(keys, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


@pytest.mark.parametrize("fmt", ["meds", "fhir"])
def test_twin_gives_the_contract_cohort(twins, fmt):
    got, want, ids = twins[fmt], twins["contract"], twins["ids"][fmt]
    assert got.report.usable and got.report.n_errors == 0 and got.report.n_warnings == 0
    assert len(got.rejected) == 0
    _same(
        _renamed(got.patients, ids),
        want.patients,
        ["patient_id"],
        drop=("person_id", "infusion_time"),
    )
    _same(
        _renamed(got.observations, ids),
        want.observations,
        ["patient_id", "hours", "variable"],
        drop=("source_row",),
    )
    _same(_renamed(got.events, ids), want.events, ["patient_id", "hours", "event"],
          drop=("source_row",))  # fmt: skip
    _same(_renamed(got.outcomes, ids), want.outcomes, ["patient_id"])
    assert len(got.observations) == len(want.observations) > 1000
    # the infusion time read is the one the twin wrote
    ep = twin_records(twins["tables"], SEED).episodes
    written = ep.set_index("patient_id")["infusion_time"]
    read = _renamed(got.patients, ids).set_index("patient_id")["infusion_time"]
    pd.testing.assert_series_equal(
        read.sort_index(), written.sort_index(), check_names=False, check_index_type=False
    )


def test_twin_has_reinfused_persons_and_deaths(twins):
    """The comparison above covers the hard rows: deaths with causes, oxygen with flows,
    vasopressors with an end, censored IL-6, grade >= 3 outcomes, early end of follow-up."""
    c = twins["contract"]
    assert (c.events["event"] == "death").any()
    assert c.events["end_hours"].notna().any()
    assert (c.observations["censored"] != 0).any()
    assert (c.outcomes["crs_max_grade"] >= 3).any() and c.outcomes["followup_hours"].notna().any()


@pytest.mark.parametrize("fmt", ["meds", "fhir"])
def test_twin_gives_the_same_features_and_scores(twins, fmt, tmp_path_factory):
    from shared_bundle import build_bundle

    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.scoring.score import score

    got, want, ids = twins[fmt], twins["contract"], twins["ids"][fmt]
    got_X, got_y, got_meta = build_landmark_dataset(got, [12, 24, 48])
    want_X, want_y, want_meta = build_landmark_dataset(want, [12, 24, 48])
    key = ["landmark_h", "patient_id"]
    gm = _renamed(got_meta, ids)[key].reset_index()
    wm = want_meta[key].reset_index()
    order_got = gm.sort_values(key)["index"].to_numpy()
    order_want = wm.sort_values(key)["index"].to_numpy()
    assert len(got_X) == len(want_X) > 100
    pd.testing.assert_frame_equal(
        got_X.iloc[order_got].reset_index(drop=True),
        want_X.iloc[order_want].reset_index(drop=True),
    )
    np.testing.assert_array_equal(got_y[order_got], want_y[order_want])

    model = load_bundle(build_bundle(tmp_path_factory.getbasetemp()))
    s_got = _renamed(score(model, got), ids).set_index("patient_id").sort_index()
    s_want = score(model, want).set_index("patient_id").sort_index()
    assert len(s_got) == N and (s_got["status"] == "scored").sum() > N / 2
    for column in ("status", "landmark_h", "risk"):
        pd.testing.assert_series_equal(s_got[column], s_want[column], check_index_type=False)


def test_meds_twin_validates_against_the_meds_schema(twins):
    from meds import CodeMetadataSchema, DataSchema

    root = twins["base"] / "meds"
    files = sorted((root / "data").glob("*.parquet"))
    assert files
    codes = pq.read_table(root / "metadata" / "codes.parquet")
    CodeMetadataSchema.validate(codes)
    listed = set(codes.column("code").to_pylist())
    for f in files:
        table = pq.read_table(f)
        DataSchema.validate(table)
        assert set(table.column("code").to_pylist()) <= listed
        frame = table.select(["subject_id", "time"]).to_pandas()
        # each subject contiguous and sorted by time (static rows first)
        assert frame["subject_id"].is_monotonic_increasing
        by = frame.assign(static=frame["time"].isna()).groupby("subject_id")
        assert by["static"].is_monotonic_decreasing.all()
        timed = frame.dropna(subset=["time"]).groupby("subject_id")["time"]
        assert timed.is_monotonic_increasing.all()
    meta = json.loads((root / "metadata" / "dataset.json").read_text())
    assert meta["meds_version"].startswith("0.4")


def test_formats_are_detected(twins):
    base = twins["base"]
    assert coded_format(base / "meds") == "meds"
    assert coded_format(base / "fhir") == "fhir"
    assert coded_format(base / "contract") is None


# ---- error cases ------------------------------------------------------------------------

T0 = pd.Timestamp("2024-05-01 08:00:00")


def _meds(root: Path, rows: list[tuple], time_type=None) -> Path:
    """A small MEDS dataset from (subject_id, time, code, numeric_value, text_value)."""
    (root / "data").mkdir(parents=True)
    (root / "metadata").mkdir()
    sid, time, code, num, text = zip(*rows, strict=True)
    table = pa.table(
        {
            "subject_id": pa.array(sid, pa.int64()),
            "time": pa.array(time, time_type or pa.timestamp("us")),
            "code": pa.array(code, pa.string()),
            "numeric_value": pa.array(num, pa.float32()),
            "text_value": pa.array(text, pa.large_string()),
        }
    )
    pq.write_table(table, root / "data" / "0.parquet")
    codes = sorted(set(code))
    pq.write_table(
        pa.table(
            {
                "code": pa.array(codes, pa.string()),
                "description": pa.array([None] * len(codes), pa.string()),
                "parent_codes": pa.array([[]] * len(codes), pa.list_(pa.string())),
            }
        ),
        root / "metadata" / "codes.parquet",
    )
    return root


def _h(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def _basic(subject: int, infusion_code: str = "HCPCS/Q2041") -> list[tuple]:
    return [
        (subject, None, "GENDER//F", None, None),
        (subject, pd.Timestamp("1960-02-01"), "MEDS_BIRTH", None, None),
        (subject, _h(-2), "LOINC/1988-5", 4.0, None),
        (subject, _h(0), infusion_code, None, None),
        (subject, _h(10), "LOINC/8310-5", 38.6, None),
        (subject, _h(12), "LOINC/26881-3", None, "<1.5"),
    ]


def test_meds_reports_unmapped_codes_missing_infusion_and_missing_product(tmp_path):
    rows = _basic(1) + _basic(3, infusion_code="CPT4/0540T")
    rows += [(1, _h(5 + i), "LOINC/99999-9", 1.0, None) for i in range(3)]
    rows += [(2, _h(1), "LOINC/8310-5", 37.0, None), (2, _h(2), "LOINC/8310-5", 37.5, None)]
    cohort = load_meds(_meds(tmp_path / "m", rows))
    rep = cohort.report
    unmapped = rep.problem("unmapped_codes")
    assert unmapped.details == {"LOINC/99999-9": 3}
    assert unmapped.examples[0]["file"] == "data/0.parquet" and unmapped.examples[0]["row"] == 13
    missing = rep.problem("no_infusion_record")
    assert missing.count == 1 and missing.details == {"2": 2}
    no_product = rep.problem("infusion_without_product")
    assert no_product.count == 1 and no_product.details == {"CPT4/0540T": 1}
    p = cohort.patients.set_index("patient_id")
    assert list(p.index) == ["1", "3"]
    assert p.loc["3", "product"] == "other" and p.loc["1", "product"] == "axi-cel"
    assert p.loc["1", "age_years"] == 64 and p.loc["1", "sex"] == "F"
    obs = cohort.observations
    il6 = obs[(obs["patient_id"] == "1") & (obs["variable"] == "il6")]
    assert il6["censored"].tolist() == [-1] and il6["value"].tolist() == [0.75]
    # float32 storage: 38.6 is read as 38.6, not 38.599998...
    assert 38.6 in obs["value"].tolist()


def test_meds_grade_records_unreadable_or_rejected_leave_the_grade_unknown(tmp_path):
    grade = "SNOMED/1290005006"
    rows = _basic(1) + _basic(2) + _basic(3) + _basic(4)
    rows += [
        (1, _h(30), grade, 3.0, "ASTCT"),  # grade 3 at 30 h
        (2, _h(30), grade, None, "ASTCT grade IV"),  # no readable grade: unknown
        (3, None, grade, 4.0, "ASTCT"),  # no time: rejected
    ]  # subject 4: no grade record, so no CRS (a CRS is recorded when it happens)
    cohort = load_meds(_meds(tmp_path / "m", rows))
    oc = cohort.outcomes.set_index("patient_id")
    assert sorted(oc.index) == ["1", "4"]  # never grade 0 made up for 2 and 3
    assert oc.loc["1", "crs_max_grade"] == 3 and oc.loc["1", "grade3_hours"] == 30
    assert oc.loc["4", "crs_max_grade"] == 0
    rep = cohort.report
    assert rep.problem("bad_crs_grade").count == 1
    assert rep.problem("crs_grade_rejected").count == 1
    assert rep.problem("bad_time").count == 1


def test_meds_reinfusion_makes_two_episodes_of_one_person(tmp_path):
    rows = _basic(7)
    second = pd.Timedelta(days=90)
    rows += [
        (7, _h(-48) + second, "LOINC/1988-5", 9.0, None),  # baseline of the re-infusion
        (7, _h(0) + second, "HCPCS/Q2056", None, None),
        (7, _h(6) + second, "LOINC/1988-5", 30.0, None),
    ]
    cohort = load_meds(_meds(tmp_path / "m", rows))
    p = cohort.patients.set_index("patient_id")
    assert list(p.index) == ["7", "7-2"]
    assert set(p["person_id"]) == {"7"}
    assert p.loc["7-2", "product"] == "cilta-cel"
    crp = cohort.observations[cohort.observations["variable"] == "crp"]
    assert crp.groupby("patient_id")["hours"].apply(list).to_dict() == {
        "7": [-2.0], "7-2": [-48.0, 6.0],
    }  # fmt: skip


def test_meds_file_outside_the_schema_is_refused_naming_the_file(tmp_path):
    rows = _basic(1)
    root = _meds(tmp_path / "m", rows, time_type=pa.timestamp("us", tz="UTC"))
    with pytest.raises(InputError, match="not a MEDS 0.4 data file") as err:
        load_meds(root)
    assert "0.parquet" in str(err.value)


def _ndjson(path: Path, lines: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def _obs(pid: str, loinc: str, when: str, value: float, unit: str) -> dict:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit},
    }  # fmt: skip


def _axicel(pid: str, when: str) -> dict:
    """An axi-cel infusion record (RxNorm 1992404): the start of ``pid``'s episode."""
    return {
        "resourceType": "MedicationAdministration", "status": "completed",
        "medicationCodeableConcept": {"coding": [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1992404"}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
    }  # fmt: skip


def test_fhir_blood_pressure_panel_is_read_from_its_components(tmp_path):
    root = tmp_path / "f"
    _ndjson(root / "Patient.ndjson", [{"resourceType": "Patient", "id": "p1"}])
    _ndjson(root / "MedicationAdministration.ndjson", [_axicel("p1", "2024-05-01T08:00:00Z")])
    loinc = "http://loinc.org"
    panel = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-05-01T14:00:00Z",
        "component": [
            {"code": {"coding": [{"system": loinc, "code": "8480-6"}]},
             "valueQuantity": {"value": 84, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": loinc, "code": "8462-4"}]},
             "valueQuantity": {"value": 51, "unit": "mm[Hg]"}},
        ],
    }  # fmt: skip
    _ndjson(root / "Observation.ndjson", [panel])
    cohort = load_fhir(root)
    obs = cohort.observations.set_index("variable")
    assert obs.loc["sbp", "value"] == 84 and obs.loc["dbp", "value"] == 51
    assert obs.loc["sbp", "hours"] == obs.loc["dbp", "hours"] == 6.0
    assert cohort.report.problem("unmapped_codes") is None  # the panel has no value of its own


def test_fhir_death_with_a_date_only_ends_that_day(tmp_path):
    root = tmp_path / "f"
    _ndjson(root / "Patient.ndjson", [
        {"resourceType": "Patient", "id": "p1", "deceasedDateTime": "2024-05-03"},
    ])  # fmt: skip
    _ndjson(root / "MedicationAdministration.ndjson", [_axicel("p1", "2024-05-01T08:00:00Z")])
    _ndjson(
        root / "Observation.ndjson", [_obs("p1", "8310-5", "2024-05-01T18:00:00Z", 38.9, "Cel")]
    )
    cohort = load_fhir(root)
    ev = cohort.events
    assert ev.loc[ev["event"] == "death", "hours"].tolist() == [pytest.approx(64 - 1 / 3600)]
    assert cohort.report.problem("death_date_only").count == 1
    assert len(cohort.rejected) == 0


def test_fhir_reports_time_zones_dates_bad_lines_and_missing_infusion(tmp_path):
    root = tmp_path / "f"
    _ndjson(root / "Patient.ndjson", [
        {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1970-06-15"},
        {"resourceType": "Patient", "id": "p2", "gender": "female"},
    ])  # fmt: skip
    _ndjson(root / "MedicationAdministration.ndjson", [
        {"resourceType": "MedicationAdministration", "status": "completed",
         "medicationCodeableConcept": {"coding": [
             {"system": "http://example.org/local", "code": "CART-1"},
             {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1992404"}]},
         "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-05-01T08:00:00Z"},
    ])  # fmt: skip
    _ndjson(root / "Observation.ndjson", [
        _obs("p1", "8310-5", "2024-05-01T18:00:00+02:00", 38.9, "Cel"),
        _obs("p1", "1988-5", "2024-05-01T20:00:00", 40, "mg/L"),  # line 2: no time zone
        _obs("p1", "2276-4", "2024-05-02", 900, "ng/mL"),  # line 3: a date only
        "{not json",  # line 4
        _obs("p1", "12345-6", "2024-05-01T21:00:00Z", 1, "U/L"),  # line 5: unmapped
        _obs("p2", "8310-5", "2024-05-01T10:00:00Z", 37.0, "Cel"),  # p2: no infusion
    ])  # fmt: skip
    cohort = load_fhir(root)
    rep = cohort.report
    assert list(cohort.patients["patient_id"]) == ["p1"]
    p1 = cohort.patients.iloc[0]
    assert p1["product"] == "axi-cel" and p1["age_years"] == 53 and p1["sex"] == "M"
    obs = cohort.observations.set_index("variable")
    assert obs.loc["temperature", "hours"] == 8.0  # 18:00+02:00 = 16:00 UTC
    assert obs.loc["crp", "hours"] == 12.0  # naive read as UTC, kept, warned
    naive = rep.problem("time_without_zone")
    assert naive.severity == "warning" and naive.count == 1
    assert naive.examples[0]["file"] == "Observation.ndjson" and naive.examples[0]["row"] == 2
    bad = rep.problem("bad_time")
    assert bad.count == 1 and bad.details == {"date without a time of day": 1}
    rej = cohort.rejected
    assert rej[["file", "row"]].values.tolist() == [["Observation.ndjson", 3]]
    broken = rep.problem("not_json")
    assert broken.severity == "warning" and broken.examples[0]["row"] == 4
    assert rep.problem("unmapped_codes").details == {"LOINC/12345-6": 1}
    assert rep.problem("no_infusion_record").details == {"p2": 1}
    assert "ferritin" not in obs.index


def test_fhir_reader_streams_lines(tmp_path, monkeypatch):
    """The reader never reads a whole file at once (no read()/readlines() on the handle)."""
    import builtins

    root = tmp_path / "f"
    _ndjson(root / "Patient.ndjson", [{"resourceType": "Patient", "id": "p"}] * 3)
    real_open = builtins.open

    class LinesOnly:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def __iter__(self):
            return iter(self.fh)

    def guarded_open(file, *args, **kwargs):
        fh = real_open(file, *args, **kwargs)
        return LinesOnly(fh) if str(file).endswith(".ndjson") else fh

    monkeypatch.setattr(builtins, "open", guarded_open)
    from crs_ml.ingest.coded.fhir import resource_lines

    got = list(resource_lines(root / "Patient.ndjson"))
    assert [line for _, line, _, _ in got] == [1, 2, 3]


def test_simulate_cli_writes_meds_and_fhir(tmp_path):
    from crs_ml.cli import main

    main(["simulate", "--n-patients", "30", "--seed", "4", "--out", str(tmp_path / "m"),
          "--format", "meds"])  # fmt: skip
    main(["simulate", "--n-patients", "30", "--seed", "4", "--out", str(tmp_path / "f"),
          "--format", "fhir"])  # fmt: skip
    m, f = load_meds(tmp_path / "m"), load_fhir(tmp_path / "f")
    assert m.n_patients == f.n_patients == 30
    np.testing.assert_array_equal(
        np.sort(m.observations["value"].to_numpy()), np.sort(f.observations["value"].to_numpy())
    )


def test_site_codes_from_the_config_are_used(tmp_path):
    rows = _basic(1)
    rows += [(1, _h(5), "LOCAL/CRP-X", 12.0, None)]
    root = _meds(tmp_path / "m", rows)
    plain = load_meds(root)
    assert plain.report.problem("unmapped_codes").details == {"LOCAL/CRP-X": 1}
    opts = DataConfig(
        codes=[{"kind": "variable", "target": "crp", "vocabulary_id": "LOCAL",
                "concept_code": "CRP-X"}]
    )  # fmt: skip
    mapped = load_meds(root, opts)
    assert mapped.report.problem("unmapped_codes") is None
    assert len(mapped.observations) == len(plain.observations) + 1


@pytest.mark.parametrize("fmt", ["meds", "fhir"])
def test_check_cli_reads_the_twin_by_detection(twins, fmt, tmp_path):
    from crs_ml.cli import main

    report_path = tmp_path / "report.json"
    main(["check", "--data", str(twins["base"] / fmt), "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    assert report["usable"] and report["tables"]["patients"]["rows_used"] == N
    assert report["tables"]["observations"]["rows_used"] == len(twins["contract"].observations)
    source = report["tables"][fmt.upper()]  # the source's own line: records read and used
    assert source["rows_read"] > source["rows_used"] > len(twins["contract"].observations)


@pytest.mark.parametrize("fmt", ["meds", "fhir"])
def test_chunked_scoring_reads_the_contract_tables_of_the_twin(twins, fmt, tmp_path):
    from crs_ml.ingest.formats import as_contract_folder, detect_format

    assert detect_format(twins["base"] / fmt) == fmt
    folder = as_contract_folder(twins["base"] / fmt, DataConfig(), tmp_path / "contract")
    again = load_cohort(folder)
    got = _renamed(again.observations, twins["ids"][fmt])
    _same(got, twins["contract"].observations, ["patient_id", "hours", "variable"],
          drop=("source_row",))  # fmt: skip
