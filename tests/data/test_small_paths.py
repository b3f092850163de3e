"""The loader's small-input paths (one patient's rows: numpy and eager polars instead of lazy
queries) give exactly what the general path gives: on the simulator's messy cohort, as the
one-table model input of each patient alone and of all patients at once, with bad cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crs_ml.ingest import load, observations, records
from crs_ml.simulate.simulator import simulate_cohort

TABLES = ("patients", "observations", "events", "rejected")


def _assert_same(a, b) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True,
                                      obj=name)  # fmt: skip
    assert a.report.to_dict() == b.report.to_dict()


def _messy_records() -> pd.DataFrame:
    frame = records.cohort_to_records(load.load_frames(simulate_cohort(25, seed=8, style="messy")))
    obs = np.flatnonzero((frame["record"] == "observation").to_numpy())
    frame.loc[obs[0], "unit"] = "mg/furlong"
    frame.loc[obs[1:6], "value"] = ["lots", " 1,240 ", "<0.5", "---", "Hemolyzed"]
    frame.loc[obs[6], "variable"] = " Ferritin, serum "
    frame.loc[obs[7], "hours"] = 1e9
    # unsorted rows and a duplicate (exact) of another row of the same patient
    pid = frame.loc[obs[10], "patient_id"]
    rows = np.flatnonzero(((frame["patient_id"] == pid) & (frame["record"] == "observation")))
    frame = pd.concat([frame, frame.iloc[[rows[3]]]], ignore_index=True)
    frame.iloc[rows[:4]] = frame.iloc[rows[:4][::-1]].to_numpy()
    return frame


@pytest.mark.parametrize("strict", [False, True])
def test_one_patient_loads_as_the_general_path(monkeypatch, strict):
    frame = _messy_records()
    assert observations.SMALL_ROWS > 500  # one patient's rows take the small path ...
    n = 0
    for _, one in frame.groupby("patient_id", sort=False):
        one = one.reset_index(drop=True)
        assert len(one) < observations.SMALL_ROWS
        try:
            fast = records.records_to_cohort(one, strict=strict)
        except Exception as e:  # noqa: BLE001 - compared with the general path's below
            fast = e
        with monkeypatch.context() as m:
            m.setattr(observations, "SMALL_ROWS", 0)  # ... and here not
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


def test_batch_loads_as_the_general_path(monkeypatch):
    frame = _messy_records()
    with monkeypatch.context() as m:
        m.setattr(observations, "SMALL_ROWS", 10**9)
        fast = records.records_to_cohort(frame, strict=False)
    with monkeypatch.context() as m:
        m.setattr(observations, "SMALL_ROWS", 0)
        slow = records.records_to_cohort(frame, strict=False)
    assert len(slow.rejected) > 0 and slow.report.problem("exact_duplicate") is not None
    _assert_same(fast, slow)
