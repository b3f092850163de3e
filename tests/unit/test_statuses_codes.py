"""The patient position of each observation and event row (crs_ml.scoring.statuses: only the
first id of each run of equal ids is looked up) against a plain lookup per row, on tables in
a Cohort's order (runs of one patient) and on tables whose patients come back in a second run,
with ids absent from the patients table, missing ids, and both text column types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crs_ml.cohort import Cohort
from crs_ml.scoring.statuses import statuses


def _lookup(patients: list, ids: list) -> np.ndarray:
    at = {p: i for i, p in enumerate(patients)}
    return np.array([at.get(i, -1) if isinstance(i, str) else -1 for i in ids], dtype=np.int64)


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("dtype", ["str", "object"])
def test_row_codes_equal_a_lookup_per_row(grouped, dtype):
    rng = np.random.default_rng(3)
    patients = [f"p{k:03d}" for k in range(40)]
    pool = [*patients, "unknown-1", "unknown-2", None]
    ids = [pool[k] for k in np.repeat(rng.integers(0, len(pool), 120), rng.integers(1, 6, 120))]
    if not grouped:
        ids = [ids[k] for k in rng.permutation(len(ids))]
    n = len(ids)
    obs = pd.DataFrame({
        "patient_id": pd.Series(ids, dtype=dtype), "hours": rng.uniform(-24, 60, n),
        "variable": "crp", "value": rng.uniform(1, 100, n), "censored": np.int8(0),
        "out_of_range": False, "source_row": np.arange(1, n + 1),
    })  # fmt: skip
    ev_ids = ids[: n // 2][::-1]
    events = pd.DataFrame({
        "patient_id": pd.Series(ev_ids, dtype=dtype), "hours": rng.uniform(0, 60, len(ev_ids)),
        "end_hours": np.nan, "event": "antipyretic", "detail": "", "source_row":
        np.arange(1, len(ev_ids) + 1),
    })  # fmt: skip
    cohort = Cohort(pd.DataFrame({"patient_id": pd.Series(patients, dtype=dtype),
                                  "infusion_time": pd.Timestamp("2026-01-01")}), obs, events)  # fmt: skip
    st = statuses(cohort, np.array([24.0]), as_of_hours=30.0)
    assert np.array_equal(st.obs_code, _lookup(patients, ids))
    assert np.array_equal(st.ev_code, _lookup(patients, ev_ids))
    assert (st.obs_code == -1).sum() > 0 and (st.obs_code >= 0).sum() > 0


def test_ids_that_are_not_text_are_held_as_text_and_looked_up_as_text():
    """A hand-built cohort whose ids are integers (beyond float precision), integral floats
    or mixed types holds them as text (exactly, as loading would give them), and each row
    finds its patient by that text: the int 7 and the text "7" are one patient."""
    big = [2**60 + 1, 5, 2**60 + 3]
    cases = [
        (big, [2**60 + 1, None, 5, 2**60 + 1, 2**60 + 3]),
        (["a", 7], ["a", 7, "7", "b", " a "]),
        ([1.0, 2.0], [2.0, 1.0, 1.0]),
    ]
    for patients, ids in cases:
        n = len(ids)
        obs = pd.DataFrame({
            "patient_id": pd.Series(ids, dtype=object), "hours": np.linspace(0, 20, n),
            "variable": "crp", "value": 1.0, "censored": np.int8(0), "out_of_range": False,
            "source_row": np.arange(1, n + 1),
        })  # fmt: skip
        events = obs.head(0)[["patient_id", "hours"]].assign(end_hours=np.nan, event="",
                                                               detail="", source_row=0)  # fmt: skip
        cohort = Cohort(pd.DataFrame({"patient_id": pd.Series(patients, dtype=object),
                                      "infusion_time": pd.Timestamp("2026-01-01")}), obs, events)  # fmt: skip
        text = [f"{int(p)}" if isinstance(p, float) else str(p) for p in patients]
        assert cohort.patients["patient_id"].tolist() == text
        st = statuses(cohort, np.array([24.0]), as_of_hours=30.0)
        at = {p: i for i, p in enumerate(text)}
        want = [-1 if i is None else at.get(str(int(i)) if isinstance(i, float) else str(i).strip(), -1)
                for i in ids]  # fmt: skip
        assert st.obs_code.tolist() == want


def test_a_table_assigned_later_is_held_with_text_ids_and_true_false_ids_are_refused():
    cohort = Cohort(pd.DataFrame({"patient_id": ["1", "2"]}), pd.DataFrame(), pd.DataFrame())
    cohort.patients = pd.DataFrame({"patient_id": [1, 2]})
    assert cohort.patients["patient_id"].tolist() == ["1", "2"]
    with pytest.raises(ValueError, match=r"Cohort.patients: patient_id: .*true/false"):
        Cohort(pd.DataFrame({"patient_id": [True, False]}), pd.DataFrame(), pd.DataFrame())
