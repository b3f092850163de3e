"""The report verdict on hand-made metric dicts: each word and each recommendation."""

from __future__ import annotations

import pytest

from crs_ml.evaluation.verdict import (
    MIN_EVENTS,
    calibration_finding,
    discrimination_finding,
    limitations,
    recalibration_warnings,
    tune_warnings,
    validation_verdict,
)


def block(
    auroc=0.85,
    auroc_ci=(0.81, 0.89),
    oe=1.0,
    oe_ci=(0.9, 1.1),
    slope=1.0,
    slope_ci=(0.85, 1.15),
    n=2000,
    events=300,
) -> dict:
    return {
        "n": n,
        "n_events": events,
        "auroc": auroc,
        "auroc_ci": list(auroc_ci),
        "observed_expected": oe,
        "observed_expected_ci": list(oe_ci),
        "calibration_slope": slope,
        "calibration_slope_ci": list(slope_ci),
    }


def baseline(auroc: float, diff: float, ci) -> dict:
    return {
        "auroc": auroc,
        "definition": "x",
        "n_missing": 0,
        "auroc_diff_model_minus_baseline": {"diff": diff, "ci": list(ci), "p_value": 0.5},
    }


def metrics(**landmarks) -> dict:
    return {"landmarks": {k.lstrip("L"): v for k, v in landmarks.items()}}


def entry(overall: dict, baselines: dict | None = None) -> dict:
    return {"overall": overall, "baselines": baselines or {}}


def test_good_model_is_adequate():
    v = validation_verdict(metrics(L24=entry(block())))
    assert v["level"] == "ok"
    assert [r["text"] for r in v["recommendations"]] == [
        "adequate for use as decision support alongside clinical assessment"
    ]
    assert v["landmarks"]["24"]["discrimination"]["word"] == "good"
    assert limitations(v) == []


@pytest.mark.parametrize(
    ("auroc", "ci", "word", "level"),
    [
        (0.65, (0.60, 0.70), "poor", "warning"),
        (0.75, (0.71, 0.79), "acceptable", "caution"),
        (0.85, (0.81, 0.89), "good", "ok"),
        (0.85, (0.68, 0.95), "good", "caution"),  # the interval reaches 'poor'
        (0.62, (0.45, 0.78), "poor", "warning"),  # and chance
    ],
)
def test_discrimination_words(auroc, ci, word, level):
    f = discrimination_finding(block(auroc=auroc, auroc_ci=ci))
    assert (f["word"], f["level"]) == (word, level)
    assert ("0.5" in f["text"]) == (ci[0] <= 0.5)


@pytest.mark.parametrize(
    ("oe", "oe_ci", "slope", "slope_ci", "words", "level"),
    [
        (1.6, (1.3, 1.9), 1.0, (0.9, 1.1), ["under-predicts"], "warning"),
        (0.5, (0.4, 0.6), 1.0, (0.9, 1.1), ["over-predicts"], "warning"),
        (1.1, (1.02, 1.18), 1.0, (0.9, 1.1), ["slightly under-predicts"], "caution"),
        (1.0, (0.9, 1.1), 0.6, (0.5, 0.7), ["risks too extreme"], "warning"),
        (1.0, (0.9, 1.1), 1.5, (1.3, 1.7), ["risks too moderate"], "warning"),
        (1.0, (0.9, 1.1), 0.7, (0.4, 1.1), [], "ok"),  # the interval includes 1
        (1.6, (1.3, 1.9), 0.6, (0.5, 0.7), ["under-predicts", "risks too extreme"], "warning"),
    ],
)
def test_calibration_words(oe, oe_ci, slope, slope_ci, words, level):
    f = calibration_finding(block(oe=oe, oe_ci=oe_ci, slope=slope, slope_ci=slope_ci))
    assert f["words"] == words and f["level"] == level


def test_without_interval_the_estimate_is_judged_against_the_tolerance():
    nan = float("nan")
    f = calibration_finding(block(oe=0.5, oe_ci=(nan, nan), slope=0.95, slope_ci=(nan, nan)))
    assert f["words"] == ["over-predicts"] and "no interval" in f["text"]


def test_miscalibration_recommends_recalibration_and_fills_the_card():
    v = validation_verdict(
        metrics(L24=entry(block()), L48=entry(block(slope=0.6, slope_ci=(0.5, 0.7))))
    )
    texts = [r["text"] for r in v["recommendations"]]
    assert any(
        t.startswith("recalibrate before use") and "48 h" in t and "24 h" not in t for t in texts
    )
    assert not any(t.startswith("adequate") for t in texts)
    assert v["level"] == "warning"
    card = limitations(v)
    assert len(card) == 1 and "48 h" in card[0] and "too extreme" in card[0] and "0.60" in card[0]


def test_baseline_as_good_or_better_is_named_per_landmark():
    base24 = {"m-EASIX": baseline(0.70, +0.15, (+0.08, +0.22))}  # the model is better
    base48 = {"m-EASIX": baseline(0.773, -0.019, (-0.06, +0.02))}  # demo: m-EASIX ahead
    v = validation_verdict(metrics(L24=entry(block(), base24), L48=entry(block(), base48)))
    texts = [r["text"] for r in v["recommendations"]]
    assert "not better than m-EASIX at 48 h" in texts
    assert v["landmarks"]["24"]["baselines"][0]["level"] == "ok"
    assert v["landmarks"]["48"]["baselines"][0]["word"] == "as good as or better than the model"


def test_baseline_not_shown_worse_is_a_caution_and_other_scores_are_ignored():
    base = {
        "fever rule": baseline(0.80, +0.05, (-0.01, +0.11)),
        "max early temperature": baseline(0.95, -0.10, (-0.2, -0.05)),  # not a verdict baseline
    }
    v = validation_verdict(metrics(L24=entry(block(), base)))
    assert [b["baseline"] for b in v["landmarks"]["24"]["baselines"]] == ["fever rule"]
    recs = v["recommendations"]
    assert recs[0] == {
        "level": "caution",
        "text": "not shown better than fever rule at 24 h (the difference's interval includes 0)",
    }
    assert recs[-1]["text"].startswith("adequate") and "cautions" in recs[-1]["text"]


@pytest.mark.parametrize(
    ("n", "events", "few"), [(2000, 99, True), (150, 100, True), (400, 100, False)]
)
def test_few_events_or_non_events(n, events, few):
    v = validation_verdict(metrics(L24=entry(block(n=n, events=events))))
    s = v["landmarks"]["24"]["sample_size"]
    assert s["few_events"] is few
    assert ("wide intervals" in s["text"]) is few
    assert any("validate on more patients" in r["text"] for r in v["recommendations"]) is few


def test_recalibration_warnings():
    def summary(events, before, after):
        return {
            "fit": {"n_event_persons": events},
            "evaluation": {"all": {"before": before, "after": after}},
        }

    good = {"brier": 0.08, "calibration_slope": 0.98, "calibration_intercept": 0.02}
    bad = {"brier": 0.09, "calibration_slope": 3.2, "calibration_intercept": 0.4}
    assert recalibration_warnings(summary(MIN_EVENTS, bad, good)) == []
    w = recalibration_warnings(summary(9, good, bad))
    assert len(w) == 4
    assert "9 persons with an event" in w[0]
    assert "Brier" in w[1] and "0.0800 -> 0.0900" in w[1]
    assert "slope" in w[2] and "intercept" in w[3]
    no_holdout = {"fit": {"n_event_persons": 200}, "evaluation": {}}
    assert "no held-out persons" in recalibration_warnings(no_holdout)[0]
    # an explicit logistic recalibration on fewer persons with an event than auto allows
    few = summary(9, good, good)
    few["fit"]["method"] = "logistic"
    assert any("slope was fitted on 9 persons" in x for x in recalibration_warnings(few))
    few["fit"]["method"] = "intercept"
    assert not any("slope was fitted" in x for x in recalibration_warnings(few))


def test_tune_warnings():
    assert tune_warnings(0.74, 0.73, 150) == []
    w = tune_warnings(0.685, 0.740, 150)
    assert len(w) == 1 and "0.685 vs 0.740" in w[0] and "worse" in w[0]
    assert "40 persons" in tune_warnings(0.8, 0.7, 40)[0]


def test_too_few_events_for_an_interval_is_not_assessable_and_never_adequate():
    # fewer than 10 events: the metrics keep their estimates and drop their intervals
    few = {**block(auroc=0.73, n=300, events=9), "too_few_events": True,
           "auroc_ci": [float("nan")] * 2, "observed_expected_ci": [float("nan")] * 2,
           "calibration_slope_ci": [float("nan")] * 2, "observed_expected": 0.5}  # fmt: skip
    d = discrimination_finding(few)
    assert (d["word"], d["level"]) == ("not assessable", "warning")
    c = calibration_finding(few)
    assert c["words"] == ["not assessable"] and c["level"] == "caution"
    v = validation_verdict(metrics(L24=entry(few)))
    assert v["level"] == "warning"
    texts = [r["text"] for r in v["recommendations"]]
    assert texts[0].startswith("do not use for decision support at 24 h")
    assert not any("adequate" in t for t in texts)
    # the same estimates with 12 events and an interval are judged as they are
    enough = {**block(auroc=0.73, auroc_ci=(0.71, 0.75), n=300, events=12)}
    assert discrimination_finding(enough)["word"] == "acceptable"
