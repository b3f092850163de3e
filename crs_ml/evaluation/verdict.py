"""The verdict that leads every report, computed from the report's own numbers.

Thresholds are named constants here and listed in the README (section "Validation report:
the verdict"). Each finding has a level, ``ok``, ``caution`` or ``warning``, always shown as
a word (the HTML adds a colour, never colour alone):

* discrimination, AUROC: ``poor`` below :data:`AUROC_ACCEPTABLE` (0.70; warning),
  ``acceptable`` up to :data:`AUROC_GOOD` (0.80; caution), ``good`` from 0.80 (ok), the
  usual reading of the c-statistic (Hosmer & Lemeshow 2013); an interval reaching 0.5 adds
  "not distinguishable from chance" (warning), one reaching a lower band names it (at least
  a caution); with fewer than :data:`~crs_ml.evaluation.metrics.MIN_SLICE_EVENTS` (10)
  events or non-events there is no interval, and discrimination is "not assessable"
  (warning): a point estimate on so few events cannot support use.
* calibration: observed/expected (events / sum of risks) with its interval: ``under-predicts``
  when the interval lies above 1, ``over-predicts`` below 1; calibration slope: ``too
  extreme`` (predictions spread too far, typical of overfitting) when the interval lies
  below 1, ``too moderate`` above 1 (Van Calster et al. 2019). A deviation the interval
  detects is a warning when the estimate is outside :data:`OE_TOLERANCE` /
  :data:`SLOPE_TOLERANCE` (0.8 to 1.25) and a caution ("slightly") inside it. Without an
  interval (no bootstrap) the estimate alone is judged against the tolerance.
* baselines (:data:`VERDICT_BASELINES`: m-EASIX and the early fever rule), by the paired
  person-bootstrap AUROC difference model minus baseline: ``better`` than the model (the
  interval below 0; warning), ``as good or better`` (difference <= 0; warning), ``not shown
  worse`` (difference > 0, interval includes 0; caution), model better (interval above 0; ok).
* sample size: fewer than :data:`MIN_EVENTS` (100) events or non-events at a landmark is a
  caution, "few events: wide intervals" (Collins et al. 2016; Riley et al. 2021 for
  precision-based targets).
* recommendation: "recalibrate before use" for a calibration warning; "not better than
  <baseline> at L h"; "do not use for decision support at L h" for poor discrimination;
  "validate on more patients" for few events; with no warning at any landmark, "adequate
  for use as decision support alongside clinical assessment".

:func:`recalibration_warnings` and :func:`tune_warnings` apply the same "worse than where it
started" and "fewer than 100 events" checks to ``crs-ml recalibrate`` and ``crs-ml tune``.
"""

from __future__ import annotations

import math
from typing import Any

from crs_ml.evaluation.metrics import MIN_SLICE_EVENTS
from crs_ml.evaluation.performance import VALIDATION_MIN_EVENTS

AUROC_ACCEPTABLE = 0.70
AUROC_GOOD = 0.80
OE_TOLERANCE = (0.8, 1.25)
SLOPE_TOLERANCE = (0.8, 1.25)
MIN_EVENTS = VALIDATION_MIN_EVENTS
#: below this many persons with an event a recalibration fits no slope (auto tests the
#: intercept only; an explicit logistic recalibration is warned about)
MIN_EVENTS_SLOPE = 20
VERDICT_BASELINES = ("m-EASIX", "fever rule")
LEVELS = ("ok", "caution", "warning")
CHANCE_AUROC = 0.5

THRESHOLDS = {
    "auroc_poor_below": AUROC_ACCEPTABLE,
    "auroc_good_from": AUROC_GOOD,
    "observed_expected_tolerance": list(OE_TOLERANCE),
    "calibration_slope_tolerance": list(SLOPE_TOLERANCE),
    "min_events_and_non_events": MIN_EVENTS,
    "baselines": list(VERDICT_BASELINES),
}


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _ci(block: dict, name: str) -> tuple[float, float] | None:
    ci = block.get(f"{name}_ci") or [None, None]
    lo, hi = (_num(v) for v in ci) if len(ci) == 2 else (None, None)
    return (lo, hi) if lo is not None and hi is not None else None


def _ci_text(value: float, ci, digits: int = 2) -> str:
    if ci is None:
        return f"{value:.{digits}f} (no interval)"
    return f"{value:.{digits}f} (95% CI {ci[0]:.{digits}f} to {ci[1]:.{digits}f})"


def _worst(levels) -> str:
    return max(levels, key=LEVELS.index, default="ok")


def auroc_word(auroc: float) -> str:
    """'poor', 'acceptable' or 'good' (thresholds :data:`AUROC_ACCEPTABLE`, :data:`AUROC_GOOD`)."""
    if auroc < AUROC_ACCEPTABLE:
        return "poor"
    return "acceptable" if auroc < AUROC_GOOD else "good"


def discrimination_finding(block: dict) -> dict[str, Any]:
    auroc = _num(block.get("auroc"))
    if auroc is None:
        return {"level": "warning", "word": "not assessable", "text": "AUROC not assessable"}
    ci = _ci(block, "auroc")
    if block.get("too_few_events"):  # no interval can be given: the estimate alone proves nothing
        return {"level": "warning", "word": "not assessable", "auroc": auroc, "auroc_ci": None,
                "text": f"AUROC {auroc:.3f} (no interval: fewer than {MIN_SLICE_EVENTS} events "
                "or non-events): not assessable"}  # fmt: skip
    word = auroc_word(auroc)
    level = {"poor": "warning", "acceptable": "caution", "good": "ok"}[word]
    text = f"AUROC {_ci_text(auroc, ci, 3)}: {word}"
    if ci is not None and ci[0] <= CHANCE_AUROC:
        text += "; the interval reaches 0.5 (not distinguishable from chance)"
        level = "warning"
    elif ci is not None and auroc_word(ci[0]) != word:
        text += f"; the interval reaches {auroc_word(ci[0])}"
        level = "caution" if level == "ok" else level
    return {"level": level, "word": word, "auroc": auroc, "auroc_ci": ci, "text": text}


def _deviation(value: float, ci, tolerance, low_word: str, high_word: str):
    """(word, level) of a ratio-like estimate whose ideal is 1, or (None, 'ok')."""
    lo_tol, hi_tol = tolerance
    if ci is not None:
        if ci[1] < 1.0:
            word, outside = low_word, value < lo_tol
        elif ci[0] > 1.0:
            word, outside = high_word, value > hi_tol
        else:
            return None, "ok"
    elif value < lo_tol:
        word, outside = low_word, True
    elif value > hi_tol:
        word, outside = high_word, True
    else:
        return None, "ok"
    return (word, "warning") if outside else (f"slightly {word}", "caution")


def calibration_finding(block: dict) -> dict[str, Any]:
    oe, slope = _num(block.get("observed_expected")), _num(block.get("calibration_slope"))
    oe_ci, slope_ci = _ci(block, "observed_expected"), _ci(block, "calibration_slope")
    words, levels, parts = [], [], []
    if oe is not None:
        word, level = _deviation(oe, oe_ci, OE_TOLERANCE, "over-predicts", "under-predicts")
        parts.append(f"observed/expected {_ci_text(oe, oe_ci)}")
        if word:
            words.append(word)
            levels.append(level)
    if slope is not None:
        word, level = _deviation(slope, slope_ci, SLOPE_TOLERANCE, "too extreme", "too moderate")
        parts.append(f"slope {_ci_text(slope, slope_ci)}")
        if word:
            words.append(f"risks {word}")
            levels.append(level)
    if not parts:
        return {
            "level": "warning",
            "words": ["not assessable"],
            "text": "calibration not assessable",
        }
    if block.get("too_few_events"):  # no interval: a deviation of the estimate proves nothing
        return {"level": "caution", "words": ["not assessable"], "observed_expected": oe,
                "observed_expected_ci": None, "calibration_slope": slope,
                "calibration_slope_ci": None,
                "text": f"{'; '.join(parts)}: not assessable (fewer than {MIN_SLICE_EVENTS} "
                "events or non-events)"}  # fmt: skip
    summary = ", ".join(words) if words else "no miscalibration detected"
    return {
        "level": _worst(levels),
        "words": words,
        "observed_expected": oe,
        "observed_expected_ci": oe_ci,
        "calibration_slope": slope,
        "calibration_slope_ci": slope_ci,
        "text": f"{'; '.join(parts)}: {summary}",
    }


def baseline_findings(entry: dict) -> list[dict[str, Any]]:
    out = []
    model_auroc = _num(entry["overall"].get("auroc"))
    for name in VERDICT_BASELINES:
        b = (entry.get("baselines") or {}).get(name)
        if not b:
            continue
        base = _num(b.get("auroc"))
        d = b.get("auroc_diff_model_minus_baseline") or {}
        diff = _num(d.get("diff"))
        if diff is None and base is not None and model_auroc is not None:
            diff = model_auroc - base
        if diff is None:
            continue
        ci = d.get("ci") or [None, None]
        lo, hi = _num(ci[0]), _num(ci[1])
        if hi is not None and hi < 0:
            word, level = "better than the model", "warning"
        elif diff <= 0:
            word, level = "as good as or better than the model", "warning"
        elif lo is None or lo <= 0:
            word, level = "not shown worse than the model", "caution"
        else:
            word, level = "worse than the model", "ok"
        interval = f" (95% CI {lo:+.3f} to {hi:+.3f})" if lo is not None and hi is not None else ""
        p = _num(d.get("p_value"))
        out.append(
            {
                "baseline": name,
                "level": level,
                "word": word,
                "diff": diff,
                "text": f"{name} AUROC {base:.3f}: {word}; model minus {name} {diff:+.3f}"
                f"{interval}" + (f", p = {p:.3f}" if p is not None else ""),
            }
        )
    return out


def sample_size_finding(block: dict) -> dict[str, Any]:
    n, events = int(block.get("n") or 0), int(block.get("n_events") or 0)
    non_events = n - events
    few = events < MIN_EVENTS or non_events < MIN_EVENTS
    text = f"{events} events and {non_events} non-events"
    if few:
        text += f": few events (< {MIN_EVENTS}), wide intervals"
    return {
        "level": "caution" if few else "ok",
        "few_events": few,
        "n_events": events,
        "n_non_events": non_events,
        "text": text,
    }


def landmark_verdict(key: str, entry: dict) -> dict[str, Any]:
    """The findings at one reported landmark (its overall slice)."""
    o = entry["overall"]
    found = {
        "discrimination": discrimination_finding(o),
        "calibration": calibration_finding(o),
        "baselines": baseline_findings(entry),
        "sample_size": sample_size_finding(o),
    }
    levels = [found["discrimination"]["level"], found["calibration"]["level"]]
    levels += [b["level"] for b in found["baselines"]] + [found["sample_size"]["level"]]
    return {"landmark_h": key, "level": _worst(levels), **found}


def recommendations(per_landmark: dict[str, dict]) -> list[dict[str, str]]:
    """Actions, each naming the landmarks it concerns."""

    def where(keys) -> str:
        return ", ".join(f"{k} h" for k in keys)

    out: list[dict[str, str]] = []
    poor = [k for k, v in per_landmark.items() if v["discrimination"]["level"] == "warning"]
    if poor:
        out.append(
            {
                "level": "warning",
                "text": f"do not use for decision support at {where(poor)}: discrimination "
                "poor, not distinguishable from chance or not assessable",
            }
        )
    miscal = [k for k, v in per_landmark.items() if v["calibration"]["level"] == "warning"]
    if miscal:
        out.append(
            {
                "level": "warning",
                "text": f"recalibrate before use (calibration off at {where(miscal)}; "
                "crs-ml recalibrate on this site's data)",
            }
        )
    for name in VERDICT_BASELINES:
        beaten = [
            k
            for k, v in per_landmark.items()
            for b in v["baselines"]
            if b["baseline"] == name and b["level"] == "warning"
        ]
        if beaten:
            out.append({"level": "warning", "text": f"not better than {name} at {where(beaten)}"})
        unclear = [
            k
            for k, v in per_landmark.items()
            for b in v["baselines"]
            if b["baseline"] == name and b["level"] == "caution"
        ]
        if unclear:
            out.append(
                {
                    "level": "caution",
                    "text": f"not shown better than {name} at {where(unclear)} "
                    "(the difference's interval includes 0)",
                }
            )
    few = [k for k, v in per_landmark.items() if v["sample_size"]["few_events"]]
    if few:
        out.append(
            {
                "level": "caution",
                "text": f"validate on more patients: fewer than {MIN_EVENTS} events or "
                f"non-events at {where(few)}",
            }
        )
    if not any(r["level"] == "warning" for r in out):
        out.append(
            {
                "level": "ok" if not out else "caution",
                "text": "adequate for use as decision support alongside clinical assessment"
                + (" (with the cautions above)" if out else ""),
            }
        )
    return out


def validation_verdict(metrics: dict[str, Any]) -> dict[str, Any]:
    """The verdict of a validation report from its metrics (``metrics['landmarks']``)."""
    per = {k: landmark_verdict(k, e) for k, e in metrics["landmarks"].items()}
    recs = recommendations(per)
    level = _worst([v["level"] for v in per.values()] + [r["level"] for r in recs])
    return {
        "level": level,
        "headline": "; ".join(r["text"] for r in recs),
        "recommendations": recs,
        "landmarks": per,
        "thresholds": THRESHOLDS,
    }


def limitations(verdict: dict[str, Any]) -> list[str]:
    """Model-card limitations from the verdict's non-ok findings (same numbers, same words)."""
    out = []
    for key, v in verdict["landmarks"].items():
        for topic in ("discrimination", "calibration", "sample_size"):
            if v[topic]["level"] != "ok":
                out.append(f"At {key} h, {topic.replace('_', ' ')}: {v[topic]['text']}.")
        for b in v["baselines"]:
            if b["level"] != "ok":
                out.append(f"At {key} h, {b['text']}.")
    return out


# --------------------------------------------------------------------------- recalibrate, tune
def recalibration_warnings(summary: dict[str, Any]) -> list[str]:
    """Warnings about a site recalibration: too few events in the fitting persons, no held-out
    persons to measure it on, or held-out Brier / calibration worse after than before.

    Measured without optimism on the held-out persons (stacked landmark rows), which the
    fitted map never saw: Brier (a proper score) after > before, or the calibration slope or
    intercept further from ideal (1, 0) after than before by more than 0.05.
    """
    out = []
    fit = summary["fit"]
    if fit["n_event_persons"] < MIN_EVENTS:
        out.append(
            f"the map rests on {fit['n_event_persons']} persons with an event (fewer than "
            f"{MIN_EVENTS}): it may move risks more than the data support"
        )
    if fit.get("method") == "logistic" and fit["n_event_persons"] < MIN_EVENTS_SLOPE:
        out.append(
            f"a calibration slope was fitted on {fit['n_event_persons']} persons with an event "
            f"(fewer than {MIN_EVENTS_SLOPE}, below which --method auto fits none): prefer "
            "--method intercept"
        )
    ev = (summary.get("evaluation") or {}).get("all")
    if not ev:
        out.append(
            "no held-out persons: whether the update improves calibration is not measured "
            "(use --holdout > 0)"
        )
        return out
    b, a = ev["before"], ev["after"]
    brier_b, brier_a = _num(b.get("brier")), _num(a.get("brier"))
    if brier_b is not None and brier_a is not None and brier_a > brier_b:
        out.append(
            f"held-out Brier score is worse after recalibration ({brier_b:.4f} -> {brier_a:.4f})"
        )
    for name, ideal in (("calibration_slope", 1.0), ("calibration_intercept", 0.0)):
        vb, va = _num(b.get(name)), _num(a.get(name))
        if vb is not None and va is not None and abs(va - ideal) > abs(vb - ideal) + 0.05:
            out.append(
                f"held-out {name.replace('_', ' ')} moved away from {ideal:g} "
                f"({vb:.2f} -> {va:.2f})"
            )
    return out


def tune_warnings(tuned_auroc: float, default_auroc: float, n_event_persons: int) -> list[str]:
    """Warnings about a tuning result: the tuned configuration scores below the starting
    (default) configuration on the same inner folds, or the search saw fewer than 100
    persons with an event."""
    out = []
    t, d = _num(tuned_auroc), _num(default_auroc)
    if t is not None and d is not None and t < d:
        out.append(
            f"the tuned configuration is worse than the starting one on the same inner folds "
            f"(inner-CV AUROC {t:.3f} vs {d:.3f}): keep the starting configuration"
        )
    if n_event_persons < MIN_EVENTS:
        out.append(
            f"the search rests on {n_event_persons} persons with an event (fewer than "
            f"{MIN_EVENTS}): inner-CV scores are noisy and the winner may be chance"
        )
    return out
