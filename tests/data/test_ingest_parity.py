"""The polars loader gives what the pandas loader it replaced gives (issue 13, part 3).

The oracle is the pandas/numpy ingest as it was, frozen under ``tests/oracle/ingest_pandas``.
On the simulator's clean and messy cohorts (with injected bad rows: unknown unit, text
values, an unparseable time, rows of a patient not in the patients table, a lab name that
resembles a catalogue one, exact and conflicting duplicates), written as Parquet and as CSV,
given in memory, and read chunk by chunk, and on the fuzz corpus of ``test_fuzz_load``
(random and adversarial tables, CSV and Parquet), both loaders give

- the same patients, observations, events, outcomes and truth frames: same columns, same
  dtypes, same values exactly (NaN where NaN);
- the same check report (counts, details and examples) and the same rejected rows (file, row,
  column, reason, patient_id);
- or the same error (type and message) for a structurally broken input.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_fuzz_load as fuzz
from hypothesis import given
from hypothesis import strategies as st
from oracle.ingest_pandas import load as oracle_load
from oracle.ingest_pandas import stream as oracle_stream

from crs_ml.config import DataConfig
from crs_ml.errors import CrsMlError
from crs_ml.ingest import load, stream
from crs_ml.simulate.simulator import simulate_cohort

TABLES = ("patients", "observations", "events", "outcomes", "truth", "rejected")


def assert_same_cohort(new, old) -> None:
    for name in TABLES:
        a, b = getattr(new, name), getattr(old, name)
        if b is None:
            assert a is None, name
            continue
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    assert_same_report(new.report, old.report)


def assert_same_report(new, old) -> None:
    """The same report; ``n_rejected`` (every rejected row, added after the oracle was
    frozen) is the sum of the tables' rejected rows, which are compared."""
    mine = new.to_dict()
    assert mine.pop("n_rejected") == sum(t.rows_rejected for t in old.tables.values())
    assert mine == old.to_dict()


def _messy_tables(style: str, seed: int) -> dict[str, pd.DataFrame]:
    """A simulated cohort with bad rows of every kind the report counts."""
    tables = simulate_cohort(120, seed=seed, style=style)
    obs = tables["observations"].astype({c: "str" for c in ("value", "unit")})
    pid = obs["patient_id"].iloc[0]
    bad = obs[obs["patient_id"] == pid].head(6).copy()
    bad["unit"] = ["mg/furlong", *bad["unit"].iloc[1:]]
    bad["value"] = [bad["value"].iloc[0], "lots", "Hemolyzed", "1,240", "<0.5", "---"]
    bad.iloc[2, bad.columns.get_loc("patient_id")] = "NOT-A-PATIENT"
    if "time" in bad:
        bad.iloc[3, bad.columns.get_loc("time")] = "03/02/2024"
    else:
        bad.iloc[3, bad.columns.get_loc("hours")] = 1e9
    dups = obs.iloc[10:14].copy()  # exact duplicates and a conflicting one
    conflict = obs.iloc[20:21].copy()
    conflict["value"] = "999"
    obs = pd.concat([bad, obs, dups, conflict], ignore_index=True)
    obs["variable"] = obs["variable"].replace({"Ferritin": "Ferritin, serum"})
    tables["observations"] = obs
    events = tables["events"]
    tables["events"] = pd.concat([events, events.head(3)], ignore_index=True)
    patients = tables["patients"]
    tables["patients"] = pd.concat(
        [patients, patients.head(1).assign(patient_id="")], ignore_index=True
    ).rename(columns={"disease": "Diagnosis"})
    return tables


def _write(tables: dict, folder: Path, fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, t in tables.items():
        if fmt == "csv":
            t.to_csv(folder / f"{name}.csv", index=False)
        else:
            t.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


OPTIONS = {
    "default": {},
    "max-strict": {"conflicting_duplicates": "max", "strict_units": True},
    "mean-limit": {"conflicting_duplicates": "mean", "censored_below": "limit"},
}


@pytest.mark.parametrize("style", ["clean", "messy"])
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("options", list(OPTIONS), ids=list(OPTIONS))
def test_simulated_cohorts_load_the_same(tmp_path, style, fmt, options):
    opts = DataConfig(**OPTIONS[options])
    folder = _write(_messy_tables(style, seed=41), tmp_path / "cohort", fmt)
    new = load.load_cohort(folder, opts)
    old = oracle_load.load_cohort(folder, opts)
    assert len(new.observations) > 1000 and len(new.rejected) > 0  # the test has teeth
    assert new.report.problem("conflicting_duplicate") is not None
    assert_same_cohort(new, old)


@pytest.mark.parametrize("style", ["clean", "messy"])
def test_in_memory_frames_load_the_same(style):
    tables = _messy_tables(style, seed=43)
    assert_same_cohort(load.load_frames(tables), oracle_load.load_frames(tables))


def test_unmessed_simulator_tables_load_the_same():
    """The simulator's tables as they come (typed columns, no injected rows)."""
    for style in ("clean", "messy"):
        tables = simulate_cohort(80, seed=44, style=style)
        assert_same_cohort(load.load_frames(tables), oracle_load.load_frames(tables))


@pytest.mark.parametrize("fmt", ["parquet", "shuffled", "csv"])
def test_chunked_reads_give_the_same_chunks_report_and_rejected_rows(tmp_path, fmt):
    tables = _messy_tables("messy", seed=45)
    if fmt == "shuffled":  # not grouped by patient: spilled per chunk
        rng = np.random.default_rng(3)
        obs = tables["observations"]
        tables["observations"] = obs.iloc[rng.permutation(len(obs))]
    folder = _write(tables, tmp_path / "cohort", "csv" if fmt == "csv" else "parquet")
    new = stream.CohortChunks(folder, chunk_size=37, workdir=tmp_path)
    old = oracle_stream.CohortChunks(folder, chunk_size=37, workdir=tmp_path)
    chunks = list(zip(new, old, strict=True))
    assert len(chunks) == 4
    for a, b in chunks:
        assert_same_cohort(a, b)
    assert_same_report(new.report, old.report)
    pd.testing.assert_frame_equal(new.rejected, old.rejected, check_exact=True)
    assert new.spilled == old.spilled


# ---------------------------------------------------------------- the fuzz corpus
def _load_both(folder: Path):
    """(new cohort or error, oracle cohort or error)."""
    out = []
    for loader in (load.load_cohort, oracle_load.load_cohort):
        try:
            out.append(loader(folder))
        except CrsMlError as exc:
            out.append(exc)
    return out


def _assert_same_outcome(folder: Path) -> None:
    new, old = _load_both(folder)
    if isinstance(old, Exception):
        assert type(new) is type(old) and str(new) == str(old)
        return
    assert not isinstance(new, Exception), new
    assert_same_cohort(new, old)


@fuzz.FUZZ
@given(data=st.data())
def test_fuzz_corpus_loads_the_same(data):
    """test_fuzz_load's random cohorts (every column may hold garbage)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ids = data.draw(st.lists(fuzz.IDS, min_size=1, max_size=4), label="ids")
        fuzz._table(data, folder, "patients", ids, 5, fuzz.FILE_MODES)
        fuzz._table(data, folder, "observations", ids, 12, fuzz.FILE_MODES)
        if data.draw(st.booleans(), label="events?"):
            fuzz._table(data, folder, "events", ids, 6, fuzz.FILE_MODES)
        _assert_same_outcome(folder)


@fuzz.FUZZ
@given(data=st.data())
def test_fuzz_mostly_valid_corpus_loads_the_same(data):
    """test_fuzz_load's well-formed files with bad cells (past the structural checks)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ids = data.draw(st.lists(fuzz.IDS, min_size=1, max_size=4, unique=True), label="ids")
        pat_rows = [[i, *(fuzz._cell(data, c) for c in fuzz.PATIENT_COLUMNS[1:])] for i in ids]
        mode = data.draw(st.sampled_from(fuzz.DATA_MODES), label="patients mode")
        fuzz._write(folder / "patients", fuzz.PATIENT_COLUMNS, pat_rows, mode, data)
        cols = ["patient_id", "hours", "variable", "value", "unit"]
        if data.draw(st.booleans(), label="time column?"):
            cols[1] = "time"
        n = data.draw(st.integers(1, 25), label="n obs")
        rows = [
            [
                data.draw(st.sampled_from([*ids, "ghost"])) if c == "patient_id"
                else fuzz._cell(data, c)
                for c in cols
            ]
            for _ in range(n)
        ]  # fmt: skip
        mode = data.draw(st.sampled_from(fuzz.DATA_MODES), label="observations mode")
        fuzz._write(folder / "observations", cols, rows, mode, data)
        if data.draw(st.booleans(), label="events?"):
            ev_cols = ["patient_id", cols[1], "end_" + cols[1], "event", "detail"]
            ev_rows = [
                [data.draw(st.sampled_from(ids)) if c == "patient_id" else fuzz._cell(data, c)
                 for c in ev_cols]
                for _ in range(data.draw(st.integers(1, 6)))
            ]  # fmt: skip
            fuzz._write(folder / "events", ev_cols, ev_rows, "csv", data)
        if data.draw(st.integers(0, 2), label="outcomes?") == 0:
            oc_cols = ["patient_id", "crs_max_grade", "grade3_hours", "followup_hours",
                       "death_hours"]  # fmt: skip
            oc_rows = [[i, *(fuzz._cell(data, c) for c in oc_cols[1:])] for i in ids]
            fuzz._write(folder / "outcomes", oc_cols, oc_rows, "csv", data)
        _assert_same_outcome(folder)


# ---------------------------------------------------------------- every adversarial cell
TIMES = ["2024-03-01T10:00:00Z", "2024-03-01 10:00", "2024-03-01T10:00", "2024-02-30T00:00:00",
         "2024-03-01T24:00:00", "2024-03-01T10:00:60", "1899-12-31T23:59:59", "2099-01-01T00:00",
         "2024-03-01", " 2024-03-01T10:00:00Z ", "2024-03-01T10:00:00+01:00", "1/2/2024"]  # fmt: skip
CELLS = [*fuzz.ADVERSARIAL, *TIMES, " p1", "p1 ", "\x1cp1", "1 240", "≤ 0,5", "١٢", "12 ", "3."]


def _adversarial_tables() -> dict[str, pd.DataFrame]:
    """Each adversarial text in each column of otherwise valid rows."""
    patients = pd.DataFrame({"patient_id": ["p1", "p2", "p3"],
                             "infusion_time": ["2024-03-01T08:00:00", "2024-03-01", ""],
                             "age_years": ["61", "1,240", "<5"]})  # fmt: skip
    patients[""] = "x"  # an empty column name (polars would rename it)
    base = {"patient_id": "p1", "time": "2024-03-01T12:00:00", "hours": "",
            "variable": "il6", "value": "12", "unit": "pg/mL"}  # fmt: skip
    obs = []
    for column in ("patient_id", "time", "hours", "variable", "value", "unit"):
        for k, cell in enumerate(CELLS):
            row = {**base, column: cell, "patient_id": ("p1", "p2", "p3")[k % 3]}
            obs.append(row if column != "patient_id" else {**row, "patient_id": cell})
    base_ev = {"patient_id": "p1", "hours": "3", "end_hours": "", "event": "tocilizumab",
               "detail": "8 mg/kg"}  # fmt: skip
    events = [{**base_ev, c: cell} for c in base_ev for cell in CELLS]
    outcomes = pd.DataFrame({"patient_id": ["p1", "p2", "p3"], "crs_max_grade": ["3", "2", "x"],
                             "grade3_hours": ["30", "", ""], "followup_hours": ["", "1e309", ""]})  # fmt: skip
    return {"patients": patients, "observations": pd.DataFrame(obs),
            "events": pd.DataFrame(events), "outcomes": outcomes}  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_every_adversarial_cell_loads_the_same(tmp_path, fmt):
    tables = _adversarial_tables()
    folder = _write(tables, tmp_path / "cohort", fmt)
    new, old = _load_both(folder)
    assert len(old.rejected) > 100  # the test has teeth
    assert_same_cohort(new, old)
    assert_same_cohort(load.load_frames(tables), oracle_load.load_frames(tables))


# ---------------------------------------------------------------- the one-table input
@pytest.mark.parametrize("style", ["clean", "messy"])
def test_records_load_the_same(style):
    """The one-table model input (crs_ml.ingest.records, handed to the loader as polars
    frames) gives the oracle's cohort, rejected rows and report: for many patients at once,
    with bad cells, and for each of the first patients alone (the single-patient path)."""
    from oracle.ingest_pandas import records as oracle_records

    from crs_ml.ingest import records

    frame = records.cohort_to_records(load.load_frames(simulate_cohort(30, seed=5, style=style)))
    obs = np.flatnonzero((frame["record"] == "observation").to_numpy())
    frame.loc[obs[0], "unit"] = "mg/furlong"
    frame.loc[obs[1:6], "value"] = ["lots", " 1,240 ", "<0.5", "---", "Hemolyzed"]
    frame.loc[obs[6], "variable"] = " Ferritin, serum "
    frame.loc[obs[7], "hours"] = 1e9
    assert_same_cohort(records.records_to_cohort(frame, strict=False),
                       oracle_records.records_to_cohort(frame, strict=False))  # fmt: skip
    for _, one in list(frame.groupby("patient_id", sort=False))[:6]:
        one = one.reset_index(drop=True)
        assert_same_cohort(records.records_to_cohort(one, strict=False),
                           oracle_records.records_to_cohort(one, strict=False))  # fmt: skip
