"""The simulator's truth covers exactly the builder's at-risk sets (before 'no data')."""

from __future__ import annotations

import pytest

from crs_ml.features.landmarks import landmark_status


def _load(tmp_path_factory, n, seed, **kw):
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp(f"truth_{seed}")
    write_cohort(simulate_cohort(n, seed=seed, style="clean", **kw), out)
    return load_cohort(out)


@pytest.mark.parametrize(
    ("n", "seed", "horizon_h", "landmarks_h"),
    [(600, 21, 336.0, None), (300, 22, 200.0, [12.0, 30.0, 47.0])],
)
def test_truth_rows_are_the_at_risk_sets(tmp_path_factory, n, seed, horizon_h, landmarks_h):
    kw = {"horizon_h": horizon_h} | ({"landmarks_h": landmarks_h} if landmarks_h else {})
    cohort = _load(tmp_path_factory, n, seed, **kw)
    truth = cohort.truth
    landmarks = sorted(truth["landmark_h"].unique())
    if landmarks_h:
        assert landmarks == landmarks_h
    status = landmark_status(cohort, landmarks, horizon_h)
    at_risk = status[status["status"].isin(["included", "no_data"])]
    ours = set(zip(at_risk["patient_id"], at_risk["landmark_h"], strict=True))
    theirs = set(zip(truth["patient_id"], truth["landmark_h"], strict=True))
    assert len(theirs) == len(truth)  # one truth row per patient and landmark
    assert ours == theirs
    # the exclusions that decide the sets really happen in these cohorts
    excluded = set(status["status"]) - {"included", "no_data"}
    assert {"already_grade3", "died"} <= excluded, excluded
