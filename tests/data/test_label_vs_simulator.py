"""Derived ASTCT labels equal the simulator's outcomes for every patient of a clean cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crs_ml.features.grading import LABEL_DEFINITION, derive_outcomes


@pytest.fixture(scope="module")
def clean_cohort(tmp_path_factory):
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp("label_vs_sim")
    write_cohort(simulate_cohort(1200, seed=7, style="clean"), out)
    return load_cohort(out)


def test_derived_labels_equal_the_simulator_outcomes(clean_cohort):
    sim = clean_cohort.outcomes.set_index("patient_id")
    derived = derive_outcomes(clean_cohort, horizon_h=336.0).set_index("patient_id")
    assert derived.index.equals(pd.Index(clean_cohort.patients["patient_id"]))
    sim = sim.loc[derived.index]
    # the cohort exercises every grade, CRS deaths and deaths from other causes
    grades = set(sim["crs_max_grade"])
    assert {0, 1, 2, 3, 4, 5} <= grades, grades
    assert sim["death_hours"].notna().sum() > sim["crs_max_grade"].eq(5).sum()
    assert (derived["crs_max_grade"] == sim["crs_max_grade"]).all()
    for col in ("grade3_hours", "death_hours"):
        a, b = derived[col].to_numpy(), sim[col].to_numpy(dtype=float)
        assert np.array_equal(a, b, equal_nan=True), col
    assert (derived["label_definition"] == LABEL_DEFINITION).all()
