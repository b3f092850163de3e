"""Reading a cohort chunk by chunk (crs_ml.ingest.stream) gives what a whole load gives.

A messy simulated cohort with injected bad rows (unknown unit, unparseable time, text
values, rows of a patient absent from the patients table, a patient row without an id) is
written as Parquet grouped by patient (streamed and cut), as Parquet in shuffled row order
(spilled to per-chunk files) and as CSV (read whole, then split). For each, the chunks'
cohorts concatenated equal ``load_cohort``'s tables, and the merged report (but for which
rows are shown as examples) and rejected rows equal the whole load's, with the input file's
row numbers. Batches are made small so
chunks straddle batches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import crs_ml.ingest.stream as load_stream
from crs_ml.errors import InputError
from crs_ml.ingest.load import load_cohort
from crs_ml.ingest.stream import CohortChunks
from crs_ml.simulate.simulator import simulate_cohort

N_PATIENTS = 150
KEYS = {
    "observations": ["patient_id", "hours", "variable", "source_row"],
    "events": ["patient_id", "hours", "event", "source_row"],
}


def _tables() -> dict[str, pd.DataFrame]:
    tables = simulate_cohort(N_PATIENTS, seed=31, style="messy")
    tables.pop("truth")
    obs = tables["observations"].astype({c: "str" for c in ("value", "unit")})
    pid = obs["patient_id"].iloc[0]
    bad = obs[obs["patient_id"] == pid].head(4).copy()
    bad["unit"] = ["mg/furlong", bad["unit"].iloc[1], bad["unit"].iloc[2], bad["unit"].iloc[3]]
    bad["value"] = [bad["value"].iloc[0], "lots", bad["value"].iloc[2], bad["value"].iloc[3]]
    bad.iloc[2, bad.columns.get_loc("patient_id")] = "NOT-A-PATIENT"
    # the bad rows follow the first patient's rows: the file stays grouped by patient
    after = int(np.flatnonzero(obs["patient_id"].to_numpy() == pid)[-1]) + 1
    first = bad.iloc[[2]]  # and the file's very first row names no known patient
    tables["observations"] = pd.concat([first, obs.iloc[:after], bad, obs.iloc[after:]],
                                       ignore_index=True)  # fmt: skip
    patients = tables["patients"]
    tables["patients"] = pd.concat(
        [patients, patients.head(1).assign(patient_id="")], ignore_index=True
    ).rename(columns={"disease": "Diagnosis"})  # a column the check report must warn about
    obs = tables["observations"]  # and a lab name the catalogue lacks but resembles
    obs["variable"] = obs["variable"].replace({"Ferritin": "Ferritin, serum"})
    return tables


def _report(report) -> dict:
    """The report as a dict, each problem's examples (a few rows, which ones may differ
    by chunking) replaced by how many there are."""
    out = report.to_dict()
    for p in out["problems"]:
        p["examples"] = len(p["examples"])
    return out


def _grouped_but_for(tables: dict) -> dict:
    """The tables with the first patient's last observation moved to the end of the file."""
    obs = tables["observations"]
    pid = tables["patients"]["patient_id"].iloc[0]
    last = int(np.flatnonzero(obs["patient_id"].to_numpy() == pid)[-1])
    order = [*range(last), *range(last + 1, len(obs)), last]
    return {**tables, "observations": obs.iloc[order].reset_index(drop=True)}


def _write(tables: dict, folder, layout: str) -> None:
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name, t in tables.items():
        if layout == "shuffled" and name in ("observations", "events"):
            t = t.iloc[rng.permutation(len(t))]
        if layout == "csv":
            t.to_csv(folder / f"{name}.csv", index=False)
        else:
            t.to_parquet(folder / f"{name}.parquet", index=False)


@pytest.fixture(scope="module")
def tables():
    return _tables()


@pytest.mark.parametrize(
    ("layout", "spilled"),
    [("grouped", []), ("shuffled", ["observations", "events"]), ("csv", [])],
)  # fmt: skip
@pytest.mark.parametrize("chunk_size", [1, 17, 1000])
def test_chunks_equal_the_whole_load(tables, tmp_path, monkeypatch, layout, spilled, chunk_size):
    monkeypatch.setattr(load_stream, "BATCH_ROWS", 700)
    folder = tmp_path / layout
    _write(tables, folder, layout)
    if layout == "grouped":  # and a second copy with the bad rows mid-file: not grouped
        _write(_grouped_but_for(tables), tmp_path / "mixed", layout)
        mixed = CohortChunks(tmp_path / "mixed", chunk_size=chunk_size)
        list(mixed)
        assert mixed.spilled == (["observations"] if chunk_size < N_PATIENTS else [])
    whole = load_cohort(folder)
    chunks = CohortChunks(folder, chunk_size=chunk_size)
    assert chunks.n_patients == N_PATIENTS + 1
    parts = list(chunks)
    assert len(parts) == len(chunks) == -(-N_PATIENTS // chunk_size)
    assert all(len(p.patients) <= chunk_size for p in parts)
    assert sorted(chunks.spilled) == sorted(spilled if chunk_size < N_PATIENTS else [])
    for name in ("patients", "observations", "events", "outcomes"):
        got = pd.concat([getattr(p, name) for p in parts], ignore_index=True)
        want = getattr(whole, name)
        if name in KEYS:  # a chunk holds its patients' rows in file order
            got = got.sort_values(KEYS[name], kind="stable").reset_index(drop=True)
            want = want.sort_values(KEYS[name], kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    for p in parts:  # every row of a chunk belongs to a patient of that chunk
        assert set(p.observations["patient_id"]) <= set(p.patients["patient_id"])
    pd.testing.assert_frame_equal(chunks.rejected, whole.rejected, check_exact=True)
    assert _report(chunks.report) == _report(whole.report)
    reasons = " ".join(whole.rejected["reason"])
    assert "mg/furlong" in reasons and "NOT-A-PATIENT" in reasons
    assert "Ferritin, serum" in reasons  # kept as a message in every layout and chunking
    assert chunks.report.problem("unmapped_column").count == 1
    assert list(chunks.report.problem("variable_like_catalogue").details) == [
        "Ferritin, serum -> ferritin"
    ]
    assert (whole.rejected["column"] == "patient_id").sum() >= 3
    if layout != "shuffled":  # the unknown patient on the file's first row is rejected too
        assert 1 in set(whole.rejected.loc[whole.rejected["file"].str.startswith("obs"), "row"])


def test_structural_problems_raise_before_any_chunk(tables, tmp_path):
    folder = tmp_path / "c"
    _write(tables, folder, "grouped")
    obs = pd.read_parquet(folder / "observations.parquet").drop(columns=["variable"])
    obs.to_parquet(folder / "observations.parquet", index=False)
    with pytest.raises(InputError) as err:
        CohortChunks(folder)
    assert err.value.file == "observations.parquet" and err.value.column == "variable"
    patients = pd.read_parquet(folder / "patients.parquet")
    patients = pd.concat([patients, patients.iloc[[3]]], ignore_index=True)
    patients.to_parquet(folder / "patients.parquet", index=False)
    with pytest.raises(InputError, match="duplicated patient_id"):
        CohortChunks(folder)
    with pytest.raises(InputError, match="chunk_size"):
        CohortChunks(folder, chunk_size=0)


def test_no_usable_observation_is_reported_once_for_the_cohort(tables, tmp_path):
    folder = tmp_path / "c"
    _write(tables, folder, "grouped")
    obs = pd.read_parquet(folder / "observations.parquet")
    obs.assign(unit="mg/furlong").to_parquet(folder / "observations.parquet", index=False)
    chunks = CohortChunks(folder, chunk_size=40)
    list(chunks)
    fatal = [p for p in chunks.report.problems if p.code == "no_observations"]
    assert len(fatal) == 1 and fatal[0].count == 1
    assert _report(chunks.report) == _report(load_cohort(folder).report)


def test_chunks_without_outcome_rows_are_no_problem_but_a_cohort_without_any_is(tables, tmp_path):
    """A chunk whose patients have no outcome row is no problem (the whole load is usable);
    an outcomes table with no usable row at all is reported once, as by the whole load."""
    folder = tmp_path / "c"
    _write(tables, folder, "grouped")
    outcomes = pd.read_parquet(folder / "outcomes.parquet")
    pids = list(tables["patients"]["patient_id"])
    outcomes[~outcomes["patient_id"].isin(pids[40:80])].to_parquet(
        folder / "outcomes.parquet", index=False
    )
    whole = load_cohort(folder)
    chunks = CohortChunks(folder, chunk_size=40)  # chunk 1's 40 patients: no outcome row
    assert sum(len(c.outcomes) for c in chunks) == len(whole.outcomes)
    assert "no_outcomes" not in {p.code for p in chunks.report.problems}
    assert chunks.report.usable == whole.report.usable
    assert _report(chunks.report) == _report(whole.report)
    outcomes.assign(crs_max_grade="high").to_parquet(folder / "outcomes.parquet", index=False)
    chunks = CohortChunks(folder, chunk_size=40)
    list(chunks)
    fatal = [p for p in chunks.report.problems if p.code == "no_outcomes"]
    assert len(fatal) == 1 and fatal[0].count == 1 and fatal[0].severity == "fatal"
    assert _report(chunks.report) == _report(load_cohort(folder).report)


@pytest.mark.parametrize("batch_rows", [7, 64, 700])
def test_grouped_files_are_cut_where_each_chunk_starts(tables, tmp_path, monkeypatch, batch_rows):
    """A file grouped by patient is cut at the rows where each chunk starts, found from the
    first row of each run of equal ids: missing and unknown ids (first rows, mid-file, a whole
    batch of them), patients without observations (empty chunks), runs split across batches.
    The chunks equal the whole load; an id that comes back after other patients' rows (here
    as the first row of a batch) makes the file ungrouped (spilled), found the same way."""
    monkeypatch.setattr(load_stream, "BATCH_ROWS", batch_rows)
    obs = tables["observations"].copy()
    pids = list(tables["patients"]["patient_id"])
    obs = obs[~obs["patient_id"].isin(pids[20:45])]  # patients 20-44: no observations
    obs = obs.astype({"patient_id": object})
    cut = int(np.flatnonzero(obs["patient_id"].to_numpy() == pids[10])[0])
    obs.iloc[[0, 1, cut], obs.columns.get_loc("patient_id")] = [None, None, "NOBODY"]
    nameless = np.flatnonzero(obs["patient_id"].to_numpy() == pids[5])[:15]  # a whole batch
    obs.iloc[nameless, obs.columns.get_loc("patient_id")] = None
    tables = {**tables, "observations": obs.reset_index(drop=True)}
    folder = tmp_path / "runs"
    _write(tables, folder, "grouped")
    whole = load_cohort(folder)
    for chunk_size in (10, 11, 12):
        chunks = CohortChunks(folder, chunk_size=chunk_size)
        parts = list(chunks)
        assert chunks.spilled == []
        assert any(len(p.observations) == 0 for p in parts)  # the empty chunks
        got = pd.concat([p.observations for p in parts], ignore_index=True)
        want = whole.observations
        key = KEYS["observations"]
        pd.testing.assert_frame_equal(
            got.sort_values(key, kind="stable").reset_index(drop=True),
            want.sort_values(key, kind="stable").reset_index(drop=True),
            check_exact=True,
        )
        for p in parts:
            assert set(p.observations["patient_id"]) <= set(p.patients["patient_id"])
        pd.testing.assert_frame_equal(chunks.rejected, whole.rejected, check_exact=True)
    # patient 0 again, later in the file, as the first row of a batch
    back = obs.iloc[[5]].assign(patient_id=pids[0])
    at = batch_rows * (len(obs) // 2 // batch_rows)
    again = pd.concat([obs.iloc[:at], back, obs.iloc[at:]], ignore_index=True)
    _write({**tables, "observations": again}, tmp_path / "again", "grouped")
    chunks = CohortChunks(tmp_path / "again", chunk_size=1)
    list(chunks)
    assert chunks.spilled == ["observations"]


def test_spilled_chunks_with_a_column_mapping_an_index_and_an_unnamed_column(tables, tmp_path,
                                                                              monkeypatch):  # fmt: skip
    """Spilled tables (rows in no order) are read with the site's column names mapped, a
    stored pandas index left out and a column with an empty name reported as unused, as a
    whole load reads them."""
    from crs_ml.config import DataConfig

    monkeypatch.setattr(load_stream, "BATCH_ROWS", 500)
    folder = tmp_path / "site"
    folder.mkdir()
    rng = np.random.default_rng(9)
    obs = tables["observations"].iloc[rng.permutation(len(tables["observations"]))]
    obs = obs.rename(columns={"patient_id": "MRN", "value": "result"}).assign(**{"": "x"})
    obs.index = pd.Index([f"r{i}" for i in range(len(obs))], name="row_label")
    obs.to_parquet(folder / "observations.parquet")  # the index is stored as a column
    events = tables["events"].iloc[rng.permutation(len(tables["events"]))]
    events.to_parquet(folder / "events.parquet", index=False)
    tables["patients"].to_parquet(folder / "patients.parquet", index=False)
    options = DataConfig(column_mapping={"observations": {"MRN": "patient_id",
                                                          "result": "value"}})  # fmt: skip
    whole = load_cohort(folder, options)
    chunks = CohortChunks(folder, options, chunk_size=40)
    parts = list(chunks)
    assert chunks.spilled == ["observations", "events"]
    for name in ("observations", "events"):
        got = pd.concat([getattr(p, name) for p in parts], ignore_index=True)
        got = got.sort_values(KEYS[name], kind="stable").reset_index(drop=True)
        want = getattr(whole, name).sort_values(KEYS[name], kind="stable")
        pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_exact=True)
    assert len(whole.observations) > 1000
    pd.testing.assert_frame_equal(chunks.rejected, whole.rejected, check_exact=True)
    assert _report(chunks.report) == _report(whole.report)
    assert "row_label" not in " ".join(map(str, whole.report.problem("unmapped_column").details))
