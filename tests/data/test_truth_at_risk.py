"""The simulator's truth covers exactly the builder's at-risk sets (before 'no data'), at
landmarks up to day 7 (168 h) by default."""

from __future__ import annotations

from dataclasses import replace

import pytest

from crs_ml.config import SIMULATOR_TRUTH_LANDMARKS_H
from crs_ml.features.landmarks import landmark_status


def _load(tmp_path_factory, n, seed, **kw):
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp(f"truth_{seed}")
    write_cohort(simulate_cohort(n, seed=seed, style="clean", **kw), out)
    return load_cohort(out)


def _dropout(rate: float):
    from crs_ml.simulate import default_params

    params = default_params()
    return replace(params, course=replace(params.course, dropout_rate=rate))


@pytest.mark.parametrize(
    ("n", "seed", "horizon_h", "landmarks_h", "dropout_rate"),
    [
        (600, 21, 336.0, None, None),
        (300, 22, 200.0, [12.0, 30.0, 47.0], None),
        (300, 24, 336.0, [72.0, 120.0, 168.0], None),  # days 3-7 (4-1BB products)
        (400, 23, 336.0, [24.0, 48.0], 0.5),  # much loss to follow-up: rule 4 decides
    ],
)
def test_truth_rows_are_the_at_risk_sets(
    tmp_path_factory, n, seed, horizon_h, landmarks_h, dropout_rate
):
    kw = {"horizon_h": horizon_h} | ({"landmarks_h": landmarks_h} if landmarks_h else {})
    if dropout_rate is not None:
        kw["params"] = _dropout(dropout_rate)
    cohort = _load(tmp_path_factory, n, seed, **kw)
    truth = cohort.truth
    landmarks = sorted(truth["landmark_h"].unique())
    if landmarks_h:
        assert landmarks == landmarks_h
    else:  # the default truth grid: every 6 h up to day 7
        assert landmarks == SIMULATOR_TRUTH_LANDMARKS_H and landmarks[-1] == 168.0
    status = landmark_status(cohort, landmarks, horizon_h)
    at_risk = status[status["status"].isin(["included", "no_data"])]
    ours = set(zip(at_risk["patient_id"], at_risk["landmark_h"], strict=True))
    theirs = set(zip(truth["patient_id"], truth["landmark_h"], strict=True))
    assert len(theirs) == len(truth)  # one truth row per patient and landmark
    assert ours == theirs
    # the exclusions that decide the sets really happen in these cohorts
    excluded = set(status["status"]) - {"included", "no_data"}
    assert {"already_grade3", "died"} <= excluded, excluded
    if dropout_rate is not None:
        # patients with grade >= 3 seen before their follow-up ended early are excluded from
        # both sets, like those without (rule 4 does not look at the outcome)
        oc = cohort.outcomes.set_index("patient_id")
        cens = status[status["status"] == "censored_before_horizon"]
        g3 = cens["patient_id"].map(oc["grade3_hours"])
        seen_event = cens[(g3 > cens["landmark_h"]) & (g3 <= horizon_h)]
        assert len(seen_event) >= 5, len(seen_event)
        lost = zip(seen_event["patient_id"], seen_event["landmark_h"], strict=True)
        assert not set(lost) & theirs
