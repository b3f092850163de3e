"""The OMOP adapter against the contract twin: CSV, Parquet and DuckDB twins of one simulated
cohort give the same normalised cohort and the same scores; the error cases are reported with
their table, record and code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from shared_bundle import build_bundle

from crs_ml.config import DataConfig
from crs_ml.errors import InputError
from crs_ml.ingest.formats import detect_format, load_data
from crs_ml.ingest.load import load_frames
from crs_ml.ingest.omop import load_omop, omop_frames
from crs_ml.simulate.omop import omop_tables, write_omop
from crs_ml.simulate.simulator import simulate

TABLES = ("patients", "observations", "events", "outcomes")


@pytest.fixture(scope="module")
def sim():
    return simulate(250, 7, style="clean")


@pytest.fixture(scope="module")
def contract(sim):
    return load_frames({k: v for k, v in sim.tables.items() if k != "truth"})


@pytest.fixture(scope="module")
def twins(sim, tmp_path_factory):
    base = tmp_path_factory.mktemp("omop_twins")
    write_omop(sim.tables, base / "csv", "csv")
    write_omop(sim.tables, base / "parquet", "parquet")
    write_omop(sim.tables, base / "cdm.duckdb", "duckdb")
    return {"csv": base / "csv", "parquet": base / "parquet", "duckdb": base / "cdm.duckdb"}


def comparable(cohort, table: str) -> pd.DataFrame:
    """A normalised table without what only says where a row came from (``source_row``) or
    that the twin has absolute times (``infusion_time``; the hours are compared)."""
    f = getattr(cohort, table).drop(columns=["source_row", "infusion_time"], errors="ignore")
    return f.sort_values(list(f.columns[:3])).reset_index(drop=True)


def assert_same_cohort(a, b) -> None:
    for table in TABLES:
        pd.testing.assert_frame_equal(comparable(a, table), comparable(b, table),
                                      check_dtype=False, obj=table)  # fmt: skip


@pytest.mark.parametrize("kind", ["csv", "parquet", "duckdb"])
def test_omop_twin_gives_the_contract_cohort(kind, twins, contract):
    assert detect_format(twins[kind]) == "omop"
    cohort = load_data(twins[kind])
    assert len(cohort.patients) == len(contract.patients)
    assert_same_cohort(contract, cohort)
    assert cohort.patients["infusion_time"].notna().all()
    assert cohort.report.usable


def test_omop_twin_gives_the_same_scores(twins, contract, tmp_path_factory):
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.scoring.score import score

    bundle = load_bundle(build_bundle(tmp_path_factory.getbasetemp()))
    a = score(bundle, contract, as_of_hours=48.0).sort_values("patient_id")
    b = score(bundle, load_omop(twins["duckdb"]), as_of_hours=48.0).sort_values("patient_id")
    assert (a["status"] == "scored").sum() > 100
    cols = ["patient_id", "status", "landmark_h", "risk", "base_value"]
    cols += [c for c in a.columns if c.startswith("shap_")]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


def _written(sim, tmp_path, edit):
    cdm = omop_tables(sim.tables)
    edit(cdm)
    folder = tmp_path / "edited"
    folder.mkdir()
    for name, frame in cdm.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def _edited(sim, tmp_path, edit, options=None) -> object:
    return load_omop(_written(sim, tmp_path, edit), options)


def test_missing_infusion_record_names_the_person(sim, tmp_path):
    def drop_first_person(cdm):
        for t in ("procedure_occurrence", "drug_exposure"):
            cdm[t] = cdm[t][cdm[t]["person_id"] != 1]

    cohort = _edited(sim, tmp_path, drop_first_person)
    p = cohort.report.problem("missing_infusion")
    assert p is not None and p.count == 1 and p.table == "person"
    assert p.examples[0]["row"] == 1
    assert len(cohort.patients) == len(sim.tables["patients"]) - 1


def test_person_without_product_is_reported_and_kept(sim, tmp_path):
    first = sim.tables["patients"]["patient_id"].iloc[0]

    def drop_product(cdm):
        d = cdm["drug_exposure"]
        cdm["drug_exposure"] = d[~((d["person_id"] == 1) & d["drug_source_value"].str.match(r"Q2"))]

    cohort = _edited(sim, tmp_path, drop_product)
    p = cohort.report.problem("no_product")
    assert p is not None and p.count == 1
    row = cohort.patients[cohort.patients["patient_id"] == first]
    assert len(row) == 1 and pd.isna(row["product"].iloc[0])


def test_unmapped_codes_are_counted_by_code(sim, tmp_path):
    def local_code(cdm):
        m = cdm["measurement"]
        ferritin = m["measurement_source_value"] == "2276-4"
        m.loc[ferritin, "measurement_concept_id"] = 2_100_000_001
        m.loc[ferritin, "measurement_source_value"] = "FERR-LOCAL"

    cohort = _edited(sim, tmp_path, local_code)
    p = cohort.report.problem("unmapped_codes", "measurement")
    assert p is not None and p.details == {"2100000001 (FERR-LOCAL)": p.count} and p.count > 100
    assert "ferritin" not in set(cohort.observations["variable"])


def test_naive_times_and_dates_without_time(sim, tmp_path):
    def no_time(cdm):
        cdm["measurement"].loc[[0, 1], "measurement_datetime"] = None

    cohort = _edited(sim, tmp_path, no_time)
    naive = cohort.report.problem("naive_times")
    assert naive is not None and "measurement.dt" in naive.details and "UTC" in naive.message
    dated = cohort.report.problem("date_without_time", "measurement")
    assert dated is not None and dated.count == 2
    assert dated.examples[0]["file"] == "measurement" and dated.examples[0]["row"] == 1
    rejected = cohort.rejected[cohort.rejected["file"] == "measurement"]
    assert sorted(rejected["row"]) == [1, 2]
    # named by the cohort's patient_id (the episode their date falls in), not the person_id
    assert set(rejected["patient_id"]) <= set(cohort.patients["patient_id"])


def test_a_death_with_a_date_only_ends_that_day(sim, tmp_path):
    deaths = omop_tables(sim.tables)["death"]
    assert len(deaths), "the simulated cohort has deaths"
    person = int(deaths["person_id"].iloc[0])

    def date_only(cdm):
        d = cdm["death"]
        d.loc[d["person_id"] == person, "death_datetime"] = None

    cohort = _edited(sim, tmp_path, date_only)
    info = cohort.report.problem("death_date_only")
    assert info is not None and info.count == 1 and info.severity == "info"
    (tmp_path / "as_is").mkdir()
    twin = _edited(sim, tmp_path / "as_is", lambda cdm: None)
    ev, ev0 = cohort.events, twin.events
    died = ev[ev["event"] == "death"].set_index("patient_id")["hours"]
    died0 = ev0[ev0["event"] == "death"].set_index("patient_id")["hours"]
    assert list(died.index) == list(died0.index)  # no death is lost
    moved = died[died != died0]
    assert len(moved) == 1 and 0 <= moved.iloc[0] - died0[moved.index[0]] < 24
    infusion = cohort.patients.set_index("patient_id").loc[moved.index[0], "infusion_time"]
    at = pd.Timestamp(infusion) + pd.Timedelta(hours=float(moved.iloc[0]))
    assert (at.hour, at.minute, at.second) == (23, 59, 59)
    assert not (cohort.rejected["file"] == "death").any()


def test_a_detection_limit_in_the_source_text_is_read_without_an_operator(sim, tmp_path):
    picked = {}

    def limit_in_text(cdm):
        m = cdm["measurement"]
        at = m.index[m["measurement_source_value"] == "1988-5"][:2]  # two CRP results
        picked["ids"] = m.loc[at, "measurement_id"].tolist()
        m.loc[at, "value_as_number"] = 5.0
        m.loc[at, "operator_concept_id"] = 0
        m.loc[at, "value_source_value"] = ["<5", "5"]  # censored; a plain 5

    cohort = _edited(sim, tmp_path, limit_in_text)
    obs = cohort.observations[cohort.observations["variable"] == "crp"]
    rows = obs.set_index("source_row").loc[picked["ids"]]
    assert rows["censored"].tolist() == [-1, 0]
    assert rows["value"].tolist() == [2.5, 5.0]  # data.censored_below: half


def test_rows_older_than_the_baseline_window_are_not_read(sim, tmp_path):
    def one_old_result(cdm):
        m = cdm["measurement"]
        first = m.index[m["person_id"] == 1][0]
        when = pd.to_datetime(m.loc[first, "measurement_datetime"]) - pd.Timedelta(hours=400)
        m.loc[first, "measurement_datetime"] = str(when)
        m.loc[first, "measurement_date"] = str(when.date())

    cohort = _edited(sim, tmp_path, one_old_result)
    (tmp_path / "as_is").mkdir()
    as_is = _edited(sim, tmp_path / "as_is", lambda cdm: None)
    assert len(cohort.observations) == len(as_is.observations) - 1
    assert cohort.observations["hours"].min() >= -168 > as_is.observations["hours"].min() - 400
    old = cohort.report.problem("before_history")
    assert old is not None and old.count == 1 and old.severity == "info"


def test_clock_times_at_the_daylight_saving_changes_are_read_never_earlier(sim, tmp_path):
    berlin = DataConfig.model_validate({"omop": {"time_zone": "Europe/Berlin"}})
    days: list[str] = []

    def dst(cdm):
        m = cdm["measurement"]
        rows = m.index[m["person_id"] == 1][:2]
        infusion = pd.to_datetime(m.loc[rows, "measurement_datetime"]).min()
        # the spring gap and the autumn repeat of the next year (after the infusion), local:
        # the last Sundays of March and October, 02:30
        y = infusion.year + 1
        last = [pd.Timestamp(f"{y}-{month}-31") for month in ("03", "10")]
        gap, repeat = (d - pd.Timedelta(days=(d.weekday() + 1) % 7, hours=-2, minutes=-30)
                       for d in last)  # fmt: skip
        days[:] = [gap.strftime("%m-%d"), repeat.strftime("%m-%d")]
        m.loc[rows, "measurement_datetime"] = [str(gap), str(repeat)]
        m.loc[rows, "measurement_date"] = [str(gap.date()), str(repeat.date())]
        m.loc[rows, "value_as_number"] = [1111.25, 1113.25]

    cohort = _edited(sim, tmp_path, dst, berlin)
    assert cohort.report.problem("date_without_time") is None
    obs = cohort.observations.merge(cohort.patients[["patient_id", "infusion_time"]])
    when = obs["infusion_time"] + pd.to_timedelta(obs["hours"], unit="h")
    got = sorted(when[obs["value"].isin([1111.25, 1113.25])].dt.strftime("%m-%d %H:%M"))
    # 02:30 does not exist on the spring day: 03:00 CEST = 01:00 UTC; in autumn it occurs
    # twice: the later, 02:30 CET = 01:30 UTC
    assert got == [f"{days[0]} 01:00", f"{days[1]} 01:30"]


def test_rejected_rows_name_the_omop_table_and_record(sim, tmp_path):
    def bad_unit(cdm):
        cdm["measurement"].loc[4, "unit_source_value"] = "furlongs"

    cohort = _edited(sim, tmp_path, bad_unit)
    row = cohort.rejected[cohort.rejected["reason"].str.contains("furlongs")]
    assert list(row["file"]) == ["measurement"] and list(row["row"]) == [5]


def test_a_url_with_a_password_is_refused():
    with pytest.raises(InputError, match="PGPASSWORD"):
        load_omop("postgresql://someone:secret@127.0.0.1:1/db")
    # a URL that went through pathlib.Path is still recognised
    assert detect_format("postgresql:/someone@127.0.0.1/db") == "omop"


def test_disease_is_the_latest_diagnosis_before_infusion(sim, tmp_path):
    """Person 1 has a later diagnosis after the infusion (ignored); person 2's only
    diagnosis is after the infusion (used); person 3 has two earlier ones (the latest)."""
    patients = sim.tables["patients"]
    ids = patients["patient_id"].iloc[:3].tolist()
    first = patients["disease"].iloc[0]
    later, later_code = ("MM", "C90.00") if first != "MM" else ("B-ALL", "C91.00")

    def diagnoses(cdm):
        c = cdm["condition_occurrence"]
        base = {col: c[col].iloc[0] for col in c.columns}
        day = pd.to_datetime(cdm["procedure_occurrence"].groupby("person_id")[
            "procedure_datetime"].min())  # fmt: skip
        rows = [  # (person, days after infusion, ICD-10-CM code)
            (1, 30, later_code), (2, 5, "C91.00"), (3, -200, "C83.10"), (3, -10, "C82.90"),
        ]  # fmt: skip
        c = c[c["person_id"] != 2]
        extra = pd.DataFrame([
            {**base, "condition_occurrence_id": 9_000_000 + i, "person_id": p,
             "condition_start_date": (day[p] + pd.Timedelta(days=d)).date(),
             "condition_start_datetime": day[p] + pd.Timedelta(days=d),
             "condition_source_value": code}
            for i, (p, d, code) in enumerate(rows)
        ])  # fmt: skip
        cdm["condition_occurrence"] = pd.concat([c, extra], ignore_index=True)

    cohort = _edited(sim, tmp_path, diagnoses)
    got = cohort.patients.set_index("patient_id")["disease"]
    expected = patients.set_index("patient_id")["disease"]
    assert got[ids[0]] == expected[ids[0]] == first != later
    assert got[ids[1]] == "B-ALL"
    assert got[ids[2]] == "FL"


@pytest.mark.parametrize("merge_h, episodes", [(72.0, 2), (120.0, 1)])
def test_infusion_records_merge_by_the_one_setting_of_every_format(sim, tmp_path, merge_h,
                                                                    episodes):  # fmt: skip
    """A second administration record 96 h after person 1's infusion is a re-infusion (a
    second episode) with ``data.infusion_merge_h`` = 72 h, the same infusion at 120 h: the
    setting MEDS and FHIR read too."""

    def second_record(cdm):
        p = cdm["procedure_occurrence"]
        first = p[p["person_id"] == 1].sort_values("procedure_datetime").iloc[[0]].copy()
        first["procedure_occurrence_id"] = 9_500_000
        when = pd.to_datetime(first["procedure_datetime"]) + pd.Timedelta(hours=96)
        first["procedure_datetime"] = when
        first["procedure_date"] = when.dt.date
        cdm["procedure_occurrence"] = pd.concat([p, first], ignore_index=True)

    cohort = _edited(sim, tmp_path, second_record, DataConfig(infusion_merge_h=merge_h))
    assert len(cohort.patients) == len(sim.tables["patients"]) + episodes - 1


def test_the_old_omop_episode_setting_is_read_as_the_new_one():
    """Configs and model folders written before keep loading; a disagreement is an error."""
    with pytest.warns(DeprecationWarning, match="data.infusion_merge_h"):
        opts = DataConfig.model_validate({"omop": {"episode_gap_h": 48}})
    assert opts.infusion_merge_h == 48 and "episode_gap_h" not in opts.omop.model_dump()
    with pytest.warns(DeprecationWarning):
        same = DataConfig.model_validate({"omop": {"episode_gap_h": 72}, "infusion_merge_h": 72})
    assert same.infusion_merge_h == 72
    with pytest.raises(ValueError, match="disagree"):
        DataConfig.model_validate({"omop": {"episode_gap_h": 48}, "infusion_merge_h": 72})


def _concept_of(cdm, code: str) -> int:
    c = cdm["concept"]
    return int(c.loc[c["concept_code"].astype(str) == code, "concept_id"].iloc[0])


def _rows_of(cdm, event_code: str, k: int) -> list[int]:
    """The drug_exposure ids of ``k`` records of the ingredient with RxNorm ``event_code``."""
    d = cdm["drug_exposure"]
    return d.loc[d["drug_concept_id"] == _concept_of(cdm, event_code), "drug_exposure_id"].tolist()[
        :k
    ]


def _drug_events(sim, tmp_path, edit):
    """The events read from the edited twin, with the drug_exposure id each came from (None
    for other tables), and the problems found."""
    frames, found, _ = omop_frames(_written(sim, tmp_path, edit))
    table, record = found.origin["events"]
    ev = frames["events"].assign(drug=np.where(table == "drug_exposure", record, -1))
    return ev, {p.code: p for p in found.problems}


def _events_from(ev, ids) -> pd.DataFrame:
    return ev[ev["drug"].isin(ids)]


def test_products_through_concept_ancestor_are_read_except_combinations_and_local_forms(
    sim, tmp_path
):
    picked = {}
    products = {
        900001: ("norepinephrine 0.016 MG/ML Injectable Solution", "7512"),
        900002: ("epinephrine 0.01 MG/ML / lidocaine hydrochloride 20 MG/ML Injectable Solution",
                 "3992"),
        900003: ("dexamethasone 1 MG/ML Ophthalmic Suspension", "3264"),
        900004: ("acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet", "161"),
    }  # fmt: skip

    def products_of_ingredients(cdm):
        cdm["concept"] = pd.concat([cdm["concept"], pd.DataFrame({
            "concept_id": list(products), "concept_name": [n for n, _ in products.values()],
            "vocabulary_id": "RxNorm", "concept_code": ["x1", "x2", "x3", "x4"],
            "domain_id": "Drug",
        })], ignore_index=True)  # fmt: skip
        cdm["concept_ancestor"] = pd.DataFrame({
            "ancestor_concept_id": [_concept_of(cdm, c) for _, c in products.values()],
            "descendant_concept_id": list(products),
        })  # fmt: skip
        d = cdm["drug_exposure"]
        norepi = _rows_of(cdm, "7512", 3)
        steroid = _rows_of(cdm, "3264", 1)
        fever = _rows_of(cdm, "161", 1)
        picked.update(product=norepi[:1], combination=norepi[1:3], eye=steroid, antipyretic=fever)
        for cid, ids in ((900001, norepi[:1]), (900002, norepi[1:3]), (900003, steroid),
                         (900004, fever)):  # fmt: skip
            d.loc[d["drug_exposure_id"].isin(ids), "drug_concept_id"] = cid

    ev, problems = _drug_events(sim, tmp_path, products_of_ingredients)
    assert list(_events_from(ev, picked["product"])["event"]) == ["vasopressor"]
    assert _events_from(ev, picked["combination"] + picked["eye"]).empty
    # a combination is another drug only for the vasopressors: this one is an antipyretic
    assert list(_events_from(ev, picked["antipyretic"])["event"]) == ["antipyretic"]
    p = problems.get("not_systemic_products")
    assert p is not None and p.count == 3 and p.severity == "info"
    assert sorted(p.details.values()) == [1, 2]
    assert any("combination" in k and "lidocaine" in k for k in p.details)
    assert any(k.startswith("local (eye)") for k in p.details)
    unmapped = problems.get("unmapped_codes")
    assert unmapped is None or not any(str(c) in k for k in unmapped.details for c in products)


def test_drug_records_by_a_local_route_are_not_read_as_treatments(sim, tmp_path):
    picked = {}

    def routes(cdm):
        cdm["concept"] = pd.concat([cdm["concept"], pd.DataFrame({
            "concept_id": [910001], "concept_name": ["Intramuscular"],
            "vocabulary_id": "SNOMED", "concept_code": ["78421000"], "domain_id": "Route",
        })], ignore_index=True)  # fmt: skip
        d = cdm["drug_exposure"]
        steroid = _rows_of(cdm, "3264", 2)
        norepi = _rows_of(cdm, "7512", 2)
        picked.update(eye=steroid[:1], oral=steroid[1:], im=norepi[:1], iv=norepi[1:])
        d["route_concept_id"] = 0
        d["route_source_value"] = None
        d.loc[d["drug_exposure_id"].isin(steroid[:1]), "route_source_value"] = "OPHTHALMIC"
        d.loc[d["drug_exposure_id"].isin(steroid[1:]), "route_source_value"] = "PO"
        d.loc[d["drug_exposure_id"].isin(norepi[:1]), "route_concept_id"] = 910001
        d.loc[d["drug_exposure_id"].isin(norepi[1:]), "route_source_value"] = "IV infusion"

    ev, problems = _drug_events(sim, tmp_path, routes)
    assert _events_from(ev, picked["eye"] + picked["im"]).empty
    assert list(_events_from(ev, picked["oral"])["event"]) == ["corticosteroid"]
    assert list(_events_from(ev, picked["iv"])["event"]) == ["vasopressor"]
    p = problems.get("local_route")
    assert p is not None and p.count == 2 and p.table == "drug_exposure"
    assert set(p.details) == {
        "local (eye): OPHTHALMIC",
        "a single injection (not an infusion): Intramuscular",
    }
