"""The simulator's true cumulative incidence of grade >= 3 at each horizon (issue 18)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from crs_ml.features.landmarks import at_risk_status, competing_risk_times, horizon_outcome
from crs_ml.simulate.params import default_params
from crs_ml.simulate.simulator import horizon_truth, simulate

N, SEED, LANDMARKS = 2500, 11, [24, 48]


@pytest.fixture(scope="module")
def no_dropout():
    params = default_params()
    params = replace(params, course=replace(params.course, dropout_rate=0.0))
    truth = horizon_truth(N, SEED, LANDMARKS, [24, 72], params=params)
    return simulate(N, SEED, landmarks_h=LANDMARKS, params=params), truth


def test_by_day_14_rows_equal_truth_csv_and_risk_grows_with_the_horizon(no_dropout):
    result, ht = no_dropout
    truth = result.tables["truth"]
    last = ht[ht["horizon"] == "by day 14"]
    both = last.merge(truth, on=["patient_id", "landmark_h"], suffixes=("", "_csv"))
    assert len(both) == len(truth)  # every truth.csv row, same value
    np.testing.assert_array_equal(both["true_risk"], both["true_risk_csv"])
    wide = ht.pivot_table(index=["patient_id", "landmark_h"], columns="horizon",
                          values="true_risk")  # fmt: skip
    assert list(ht["horizon"].unique()) == ["next 24 h", "next 72 h", "by day 14"]
    assert (wide["next 24 h"] <= wide["next 72 h"] + 1e-12).all()
    assert (wide["next 72 h"] <= wide["by day 14"] + 1e-12).all()
    assert (wide["next 24 h"] < wide["by day 14"] - 1e-3).any()  # the windows differ
    ends = ht.groupby(["landmark_h", "horizon"])["horizon_end_h"].unique()
    assert ends[(48.0, "next 72 h")].tolist() == [120.0]


def test_true_risk_per_horizon_matches_simulated_events(no_dropout):
    """Without loss to follow-up the mean true risk by each horizon is the observed share
    of grade >= 3 by it (within 4 binomial standard errors)."""
    result, ht = no_dropout
    oc = result.tables["outcomes"].set_index("patient_id")
    for (L, label), rows in ht.groupby(["landmark_h", "horizon"]):
        o = oc.loc[rows["patient_id"]]
        time, cause = competing_risk_times(
            o["grade3_hours"], o["death_hours"], o["followup_hours"], 336.0
        )
        observed = horizon_outcome(time, cause, rows["horizon_end_h"].to_numpy()) == "event"
        p = rows["true_risk"].to_numpy()
        se = np.sqrt(np.sum(p * (1 - p))) / len(p)
        assert abs(observed.mean() - p.mean()) < 4 * se + 1e-9, (L, label)


def test_rows_keep_patients_censored_before_the_horizon():
    ht = horizon_truth(800, 5, [24], [24])  # default 3% dropout
    oc = simulate(800, 5, landmarks_h=[24]).tables["outcomes"]
    status, _, _ = at_risk_status(*(oc[c] for c in ("grade3_hours", "death_hours",
                                                   "followup_hours")), 24.0, 336.0)  # fmt: skip
    lost = set(oc["patient_id"][status == "censored_before_horizon"])
    assert lost and lost <= set(ht["patient_id"])
    assert pd.Series(list(lost)).isin(ht.loc[ht.horizon == "next 24 h", "patient_id"]).all()


def test_window_risk_is_the_true_risk_of_a_shorter_horizon():
    """P(grade >= 3 in (L, L + w]) is what the simulator's truth gives with horizon L + w:
    the same transition probabilities and paths up to L + w, so equal to rounding."""
    ht = horizon_truth(600, 2, [24, 48], [24])
    for L in (24, 48):
        short = simulate(600, 2, horizon_h=L + 24, landmarks_h=[L]).tables["truth"]
        rows = ht[(ht.landmark_h == L) & (ht.horizon == "next 24 h")]
        both = rows.merge(short, on=["patient_id", "landmark_h"], suffixes=("", "_short"))
        assert len(both) > 0.9 * len(short)
        np.testing.assert_allclose(both["true_risk"], both["true_risk_short"], rtol=1e-12)


def test_simulate_cli_writes_truth_horizons_and_load_reads_it(tmp_path):
    """``crs-ml simulate`` writes truth_horizons.csv (the true risk by each short horizon),
    which ``load_cohort`` reads into ``cohort.truth_horizons``; a bad row is rejected with
    its file, row, column and reason."""
    from crs_ml.cli import main
    from crs_ml.ingest.load import load_cohort

    out = tmp_path / "cohort"
    main(["simulate", "--n-patients", "60", "--seed", "3", "--landmarks-h", "24,48",
          "--out", str(out)])  # fmt: skip
    expected = horizon_truth(60, 3, [24, 48], [24, 72])
    cohort = load_cohort(out)
    got = cohort.truth_horizons
    assert set(got["horizon"]) == {"next 24 h", "next 72 h", "by day 14"}
    key = ["patient_id", "landmark_h", "horizon"]
    both = got.merge(expected.astype({"patient_id": str}), on=key, suffixes=("", "_sim"))
    assert len(both) == len(got) == len(expected) > 0
    np.testing.assert_allclose(both["true_risk"], both["true_risk_sim"], atol=1e-9)
    np.testing.assert_array_equal(both["horizon_end_h"], both["horizon_end_h_sim"])

    raw = pd.read_csv(out / "truth_horizons.csv", dtype=str, keep_default_na=False)
    raw.loc[0, "true_risk"], raw.loc[1, "horizon"] = "1.5", ""
    raw.to_csv(out / "truth_horizons.csv", index=False)
    c = load_cohort(out)
    assert len(c.truth_horizons) == len(expected) - 2
    bad = c.rejected[c.rejected["file"] == "truth_horizons.csv"]
    # rows numbered as the file's data rows (1 = first after the header)
    assert sorted(zip(bad["row"], bad["column"], strict=True)) == [(1, "true_risk"),
                                                                    (2, "horizon")]  # fmt: skip
    assert "1.5" in bad["reason"].iloc[0] or "1.5" in bad["reason"].iloc[1]
