"""The loader's small-input paths (one patient's rows: numpy and eager polars instead of lazy
queries) give exactly what the general path gives: on the simulator's messy cohort, as the
one-table model input of each patient alone and of all patients at once, with bad cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crs_ml.ingest import load, observations, records, rows, values
from crs_ml.simulate.simulator import simulate_cohort

TABLES = ("patients", "observations", "events", "rejected")
#: the row counts below which the loader takes its small paths
THRESHOLDS = ((observations, "SMALL_ROWS"), (rows, "SMALL_LOOKUP"), (values, "SMALL"))


def _general(m) -> None:
    """Every small path off."""
    for module, name in THRESHOLDS:
        m.setattr(module, name, 0)


def _assert_same(a, b) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True,
                                      obj=name)  # fmt: skip
    assert a.report.to_dict() == b.report.to_dict()


def _messy_records(duplicate: bool = True) -> pd.DataFrame:
    frame = records.cohort_to_records(load.load_frames(simulate_cohort(25, seed=8, style="messy")))
    obs = np.flatnonzero((frame["record"] == "observation").to_numpy())
    frame.loc[obs[0], "unit"] = "mg/furlong"
    frame.loc[obs[1:6], "value"] = ["lots", " 1,240 ", "<0.5", "---", "Hemolyzed"]
    frame.loc[obs[6], "variable"] = " Ferritin, serum "
    frame.loc[obs[7], "hours"] = 1e9
    # unsorted rows and a duplicate (exact) of another row of the same patient
    pid = frame.loc[obs[10], "patient_id"]
    rows = np.flatnonzero((frame["patient_id"] == pid) & (frame["record"] == "observation"))
    if duplicate:
        frame = pd.concat([frame, frame.iloc[[rows[3]]]], ignore_index=True)
    frame.iloc[rows[:4]] = frame.iloc[rows[:4][::-1]].to_numpy()
    return frame


@pytest.mark.parametrize("strict", [False, True])
def test_one_patient_loads_as_the_general_path(monkeypatch, strict):
    frame = _messy_records()
    assert observations.SMALL_ROWS > 500 and rows.SMALL_LOOKUP > 500  # one patient: small

    n = 0
    for _, one in frame.groupby("patient_id", sort=False):
        one = one.reset_index(drop=True)
        assert len(one) < observations.SMALL_ROWS
        try:
            fast = records.records_to_cohort(one, strict=strict)
        except Exception as e:  # noqa: BLE001 - compared with the general path's below
            fast = e
        with monkeypatch.context() as m:
            _general(m)
            try:
                slow = records.records_to_cohort(one, strict=strict)
            except Exception as e:  # noqa: BLE001
                slow = e
        if isinstance(slow, Exception):
            assert type(fast) is type(slow) and str(fast) == str(slow)
            n += 1
            continue
        _assert_same(fast, slow)
        n += len(fast.observations) > 0
    assert n == frame["patient_id"].nunique()


@pytest.mark.parametrize("duplicate", [True, False])
def test_batch_loads_as_the_general_path(monkeypatch, duplicate):
    frame = _messy_records(duplicate)
    with monkeypatch.context() as m:
        for module, name in THRESHOLDS:
            m.setattr(module, name, 10**9)
        fast = records.records_to_cohort(frame, strict=False)
    with monkeypatch.context() as m:
        _general(m)
        slow = records.records_to_cohort(frame, strict=False)
    assert len(slow.rejected) > 0
    assert (slow.report.problem("exact_duplicate") is not None) == duplicate
    _assert_same(fast, slow)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from shared_bundle import build_bundle

    from crs_ml.modeling.bundle import load_bundle

    return load_bundle(build_bundle(tmp_path_factory.getbasetemp()))


def test_one_patient_scores_as_in_the_batch(bundle, monkeypatch):
    """Each patient of the messy cohort scored alone (as a Cohort and as the model's one-table
    input, with the small paths) gives its row of the whole cohort scored at once (small
    paths off): same statuses, scores, SHAP values, driver texts and messages."""
    from crs_ml.features import builder
    from crs_ml.scoring import statuses
    from crs_ml.scoring.score import score

    frame = _messy_records(duplicate=False)
    cohort = records.records_to_cohort(frame, strict=False)
    with monkeypatch.context() as m:
        _general(m)
        m.setattr(statuses, "SMALL_ROWS", 0)
        m.setattr(builder, "SMALL_QUERY_ROWS", 0)
        batch = score(bundle, cohort, as_of_hours=40)
    assert set(batch["status"]) >= {"scored"} and batch["top_drivers"].str.len().gt(0).any()
    for i, (pid, one) in enumerate(frame.groupby("patient_id", sort=False)):
        alone = score(bundle, cohort.subset([pid]), as_of_hours=40)
        pd.testing.assert_frame_equal(alone, batch.iloc[[i]].reset_index(drop=True))
        one = records.records_to_cohort(one.reset_index(drop=True), strict=False)
        pd.testing.assert_frame_equal(score(bundle, one, as_of_hours=40), alone)


@pytest.mark.parametrize("as_of_hours", [None, 48])
def test_one_patient_statuses_as_in_the_batch(monkeypatch, as_of_hours):
    """statuses() of each patient alone (the small path) equal the whole cohort's (general
    path), not_at_risk ones included."""
    from crs_ml.scoring import statuses

    tables = simulate_cohort(300, seed=2024)
    tables.pop("outcomes", None)  # graded from the data, not read from known outcomes
    tables.pop("truth", None)
    cohort = load.load_frames(tables)
    landmarks = np.array([12.0, 24.0, 36.0, 48.0, 72.0])
    with monkeypatch.context() as m:
        m.setattr(statuses, "SMALL_ROWS", 0)
        batch = statuses.statuses(cohort, landmarks, as_of_hours=as_of_hours)
    assert (batch.status == "not_at_risk").sum() >= 3
    for i, pid in enumerate(batch.pid_values):
        alone = statuses.statuses(cohort.subset([pid]), landmarks, as_of_hours=as_of_hours)
        assert (alone.status[0], alone.message[0]) == (batch.status[i], batch.message[i])
        assert alone.landmark_h[0] == batch.landmark_h[i] or np.isnan(batch.landmark_h[i])
