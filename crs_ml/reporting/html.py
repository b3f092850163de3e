"""HTML rendering of the validation report: one self-contained page.

Only the standard library: every value is escaped, figures arrive as ``data:image/png``
URIs, the stylesheet is inline and uses the system font stack, and there is no script, so
the page opens offline and can be attached to a manuscript or an e-mail as it is.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from crs_ml.evaluation.metrics import MIN_SLICE_EVENTS
from crs_ml.features.landmarks import horizon_label

CSS = """
:root { --ink:#1d2733; --muted:#5b6875; --line:#d9dee4; --band:#f4f6f9; --accent:#1f5f99;
  --warn:#9a5b00; --warnbg:#fff4e0; --ok:#1d6b3a; --okbg:#e6f4ea; }
* { box-sizing:border-box; }
body { margin:0; background:#eef1f5; color:var(--ink);
  font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 36px 48px; background:#fff; }
header { border-bottom:3px solid var(--accent); padding-bottom:14px; margin-bottom:8px; }
h1 { font-size:26px; margin:0 0 4px; letter-spacing:-0.01em; }
h2 { font-size:19px; margin:34px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--line); }
h3 { font-size:15px; margin:20px 0 8px; color:var(--accent); }
p, li { max-width:920px; }
.sub, .note { color:var(--muted); font-size:13px; }
.cards { display:grid; grid-template-columns:repeat(4, 1fr); gap:12px; margin:18px 0 6px; }
.card { background:var(--band); border-radius:8px; padding:10px 14px; }
.card .k { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
.card .c { font-size:12.5px; color:var(--muted); }
nav { font-size:13px; margin:10px 0 0; }
nav a { color:var(--accent); text-decoration:none; margin-right:14px; }
table { border-collapse:collapse; margin:6px 0 12px; font-size:13px; }
th, td { padding:4px 9px; border-bottom:1px solid var(--line); text-align:right;
  font-variant-numeric:tabular-nums; white-space:nowrap; }
th { background:var(--band); font-weight:600; border-bottom:2px solid var(--line); }
.t { text-align:left; }
tr.group td { background:#fafbfc; font-weight:600; color:var(--accent); text-align:left; }
.scroll { overflow-x:auto; }
.pair { display:flex; flex-wrap:wrap; gap:8px 28px; align-items:flex-start; }
.pair h3 { margin-top:0; }
.kv td { white-space:normal; max-width:300px; }
.badge { display:inline-block; padding:1px 7px; border-radius:9px; font-size:11.5px;
  font-weight:600; background:var(--warnbg); color:var(--warn); }
.badge.ok { background:var(--okbg); color:var(--ok); }
.badge.bad { background:#fde8e8; color:#a11d1d; border:1px solid #a11d1d; }
.verdict { border:2px solid var(--ink); border-radius:8px; padding:10px 16px; margin:16px 0 6px; }
.verdict.warning { border:4px double #a11d1d; background:#fff7f7; }
.verdict.caution { border:2px dashed var(--warn); background:#fffaf0; }
.verdict.ok { border:2px solid var(--ok); background:#f6fbf7; }
.verdict h2 { margin:2px 0 6px; border:0; font-size:18px; }
.verdict ul { margin:4px 0; padding-left:20px; }
.verdict li { margin:2px 0; }
.lvl { font-weight:700; letter-spacing:.04em; font-size:11.5px; padding:1px 6px; border-radius:4px;
  display:inline-block; min-width:64px; text-align:center; margin-right:6px; }
.lvl.ok { color:var(--ok); border:1px solid var(--ok); }
.lvl.caution { color:var(--warn); border:1px dashed var(--warn); }
.lvl.warning { color:#fff; background:#a11d1d; border:1px solid #a11d1d; }
.figs { display:grid; grid-template-columns:repeat(2, 1fr); gap:14px; max-width:1000px; }
.figs img, .wide img { width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
.wide img { max-width:760px; }
dl.mc { display:grid; grid-template-columns:190px 1fr; gap:6px 16px; margin:8px 0; }
dl.mc dt { font-weight:600; color:var(--muted); }
dl.mc dd { margin:0; max-width:900px; }
footer { margin-top:36px; font-size:12px; color:var(--muted); border-top:1px solid var(--line);
  padding-top:8px; }
"""

_SLICES = (("overall", "all at risk"), ("untreated", "untreated at L"), ("treated", "treated at L"))
NA = "&ndash;"
DRIFT_ROWS = 25


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _ok(x) else NA


def fmt_ci(x, ci, digits: int = 3) -> str:
    """``x (lo to hi)``; the interval is left out when unknown."""
    if not _ok(x):
        return NA
    if ci and len(ci) == 2 and _ok(ci[0]) and _ok(ci[1]):
        return f"{x:.{digits}f} <span class='sub'>({ci[0]:.{digits}f} to {ci[1]:.{digits}f})</span>"
    return f"{x:.{digits}f}"


def _row(cells: list[str], left: int = 1) -> str:
    tds = "".join(f"<td{' class=t' if i < left else ''}>{c}</td>" for i, c in enumerate(cells))
    return f"<tr>{tds}</tr>"


def _group(label: str, span: int) -> str:
    return f"<tr class='group'><td colspan={span}>{label}</td></tr>"


def table(headers: list[str] | str, rows: list, left: int = 1) -> str:
    """An HTML table; headers as a list or a '|'-separated string; a row is a list of cells
    (trusted HTML: escape values first) or an already rendered ``<tr>`` string."""
    heads = headers.split("|") if isinstance(headers, str) else headers
    th = "".join(f"<th{' class=t' if i < left else ''}>{h}</th>" for i, h in enumerate(heads))
    body = "".join(r if isinstance(r, str) else _row(r, left) for r in rows)
    return f"<div class='scroll'><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"


def _events(n_events: int) -> str:
    if n_events >= 100:
        return f"{n_events} <span class='badge ok'>&ge; 100</span>"
    return f"{n_events} <span class='badge'>&lt; 100</span>"


LEVEL_WORDS = {"ok": "OK", "caution": "CAUTION", "warning": "WARNING"}


def level_tag(level: str) -> str:
    """The level as a word in a box (colour adds to the word, never replaces it)."""
    return f"<span class='lvl {_e(level)}'>{LEVEL_WORDS.get(level, _e(level).upper())}</span>"


def _verdict(m: dict) -> str:
    v = m.get("verdict")
    if not v:
        return ""
    recs = "".join(f"<li>{level_tag(r['level'])}{_e(r['text'])}</li>" for r in v["recommendations"])
    rows = []
    for key, lv in v["landmarks"].items():
        items = [lv["discrimination"], lv["calibration"], *lv["baselines"], lv["sample_size"]]
        labels = ["discrimination", "calibration"]
        labels += ["baseline"] * len(lv["baselines"]) + ["sample size"]
        rows.append(_group(f"landmark {_e(key)} h", 3))
        rows += [
            [lab, level_tag(f["level"]), _e(f["text"])]
            for lab, f in zip(labels, items, strict=True)
        ]
    t = v["thresholds"]
    rule = (
        f"AUROC poor &lt; {t['auroc_poor_below']:g} &le; acceptable &lt; {t['auroc_good_from']:g}"
        f" &le; good; calibration flagged when the 95% interval of observed/expected or slope "
        f"excludes 1 (warning outside {t['observed_expected_tolerance'][0]:g} to "
        f"{t['observed_expected_tolerance'][1]:g}); at least {t['min_events_and_non_events']} "
        "events and non-events per landmark; baselines by the paired bootstrap AUROC difference."
    )
    return (
        f"<section id='verdict' class='verdict {_e(v['level'])}'><h2>Verdict: "
        f"{level_tag(v['level'])}</h2><ul>{recs}</ul>"
        + table("at each landmark|level|finding", rows, left=3)
        + f"<p class='note'>{rule}</p></section>"
    )


def _few(b: dict) -> str:
    """A visible flag for a slice with too few events or non-events (when the key exists)."""
    return " <span class='badge bad'>too few events</span>" if b.get("too_few_events") else ""


def _cards(m: dict) -> str:
    key = next(iter(m["landmarks"]), None)
    if key is None:
        return ""
    o, a = m["landmarks"][key]["overall"], m["alerts"]
    ci = o["auroc_ci"]
    cards = [
        (f"AUROC at {key} h", fmt(o["auroc"]), f"95% CI {fmt(ci[0])} to {fmt(ci[1])}"),
        (
            "Calibration intercept / slope",
            f"{fmt(o['calibration_intercept'], 2)} / {fmt(o['calibration_slope'], 2)}",
            "ideal 0 / 1",
        ),
        (f"Events at {key} h", _events(o["n_events"]), f"of {o['n']} patients at risk"),
        (
            "Median lead time",
            f"{fmt(a['lead_time_h']['median'], 0)} h",
            f"first alert at risk &ge; {a['threshold']:g} to grade &ge; 3",
        ),
    ]
    inner = "".join(
        f"<div class='card'><div class='k'>{k}</div><div class='v'>{v}</div>"
        f"<div class='c'>{c}</div></div>"
        for k, v, c in cards
    )
    return f"<div class='cards'>{inner}</div>"


def _mix(d: dict) -> str:
    return ", ".join(f"{_e(k)} {_e(v)}" for k, v in d.items()) or NA


def _cohort(m: dict) -> str:
    c = m["cohort"]
    rows = [
        ["patients (persons)", f"{c['n_patients']} ({c['n_persons']})"],
        ["products", _mix(c["products"])],
        ["sites", _mix(c["sites"])],
        ["landmark rows (all model landmarks)", str(c["n_landmark_rows"])],
        ["patients with grade &ge; 3 after a landmark", str(c["n_event_patients"])],
        ["label definition", _e(", ".join(c["label_definition"]) or "not recorded")],
        ["dataset digest", _e(c.get("dataset_digest", ""))],
    ]
    att = m["attrition"]
    cols = list(att[0]) if att else []
    att_rows = [[fmt(r[k], 0) if k == "landmark_h" else _e(r[k]) for k in cols] for r in att]
    return (
        "<div class='pair'><div class='kv'>"
        + table(["cohort", ""], rows, left=2)
        + "</div><div><h3>Attrition per landmark</h3>"
        + table([_e(k.replace("_", " ")) for k in cols], att_rows)
        + "</div></div><p class='note'>Exclusions in rule order: already grade &ge; 3, died, follow-up ended, "
        "follow-up ending before the horizon other than by death (with or without an event), "
        "no data up to L; the rest are at risk "
        "and evaluated at that landmark.</p>"
    )


def _perf_cells(b: dict) -> list[str]:
    return [
        fmt_ci(b["auroc"], b["auroc_ci"]) + _few(b),
        fmt_ci(b["auprc"], b["auprc_ci"]),
        fmt_ci(b["brier"], b["brier_ci"], 4),
        fmt_ci(b["calibration_intercept"], b["calibration_intercept_ci"], 2),
        fmt_ci(b["calibration_slope"], b["calibration_slope_ci"], 2),
        fmt_ci(b.get("observed_expected"), b.get("observed_expected_ci"), 2),
    ]


def _performance(m: dict) -> str:
    rows = []
    for key, entry in m["landmarks"].items():
        extra = "" if entry.get("training_landmark", True) else " (not a training landmark)"
        rows.append(_group(f"landmark {_e(key)} h{extra}", 9))
        for part, label in _SLICES:
            b = entry[part]
            events = _events(b["n_events"]) if part == "overall" else str(b["n_events"])
            rows.append([label, str(b["n"]), events, *_perf_cells(b)])
    b = m["all_landmarks"]
    rows.append(
        _group("all model landmarks, stacked (rows of one person bootstrapped together)", 9)
    )
    rows.append(["all rows", str(b["n"]), str(b["n_events"]), *_perf_cells(b)])
    head = (
        "slice|n|events|AUROC (95% CI)|AUPRC (95% CI)|Brier|calibration intercept|"
        "calibration slope|observed / expected"
    )
    return table(head, rows) + f"<p class='note'>{_e(m['intervals_condition_on'])}</p>"


WEIGHTS_BY = {"risk_decile": "deciles of predicted risk", "site": "each site"}


def _censored(m: dict, figs: dict[str, str]) -> str:
    blocks = m.get("censored") or {}
    if not blocks:
        return "<p class='note'>No patient at risk at the report landmarks.</p>"
    rows = []
    for key, b0 in blocks.items():
        windows = list((b0.get("windows") or {}).values())
        for b in [*windows, b0]:
            rows.append([
                f"{_e(key)} h", _e(b.get("horizon", horizon_label(None, b["horizon_h"]))),
                str(b["n"]), str(b["n_events"]), str(b["n_competing"]),
                str(b["n_censored"]), fmt_ci(b["auroc"], b["auroc_ci"]),
                fmt_ci(b["brier"], b["brier_ci"], 4), fmt_ci(b["observed"], b["observed_ci"], 3),
                fmt(b["expected"]), fmt_ci(b["oe_ratio"], b["oe_ratio_ci"], 2),
            ])  # fmt: skip
    head = (
        "landmark|horizon|at risk|grade &ge; 3 seen|deaths first|censored before horizon|"
        "AUROC, IPCW (95% CI)|Brier, IPCW|observed (Aalen-Johansen)|expected|observed / expected"
    )
    windows_note = (
        "<p class='note'>The short horizons (the model's window risks, "
        "capped by the longer horizons as scoring caps them) are scored against grade &ge; 3 "
        "by L + w with the weights refit at that end.</p>"
        if any(b.get("windows") for b in blocks.values())
        else ""
    )
    if any(b.get("too_few_events") for b0 in blocks.values()
           for b in [*(b0.get("windows") or {}).values(), b0]):  # fmt: skip
        windows_note += (
            f"<p class='note'>A row with fewer than {MIN_SLICE_EVENTS} grade &ge; 3 events by its "
            "horizon (or as few rows without one) has no interval: resampling so few events "
            "gives intervals that look certain and are not.</p>"
        )
    return (
        table(head, rows, left=2)
        + windows_note
        + (
            "<p class='note'>Everyone at risk at the landmark with data, including patients whose "
            "follow-up ended before the horizon (the table above drops them): inverse probability "
            "of censoring weights from a reverse Kaplan-Meier; deaths before grade &ge; 3 are "
            "controls (Blanche 2013). Observed = Aalen-Johansen cumulative incidence within risk "
            "deciles, averaged by size. Censoring is assumed independent of the outcome (within "
            "risk decile for the observed; for the weights within "
            f"{_e(WEIGHTS_BY.get(next(iter(blocks.values())).get('censoring_by'), 'the whole cohort'))}"
            ").</p>"
        )
        + "".join(
            f"<div class='figs'><img src='{figs[f'incidence_{k}']}' alt='incidence at {_e(k)} h'>"
            "</div>"
            for k in blocks
            if f"incidence_{k}" in figs
        )
    )


def _baselines(m: dict) -> str:
    rows, defs = [], {}
    for key, entry in m["landmarks"].items():
        o = entry["overall"]
        rows.append(_group(f"landmark {_e(key)} h", 5))
        rows.append(
            ["model", fmt_ci(o["auroc"], o["auroc_ci"]), fmt_ci(o["auprc"], o["auprc_ci"]), "", ""]
        )
        for name, b in entry.get("baselines", {}).items():
            d = b.get("auroc_diff_model_minus_baseline", {})
            defs.setdefault(name, [b["definition"]]).append(f"{b['n_missing']} missing at {key} h")
            rows.append(
                [
                    _e(name),
                    fmt_ci(b["auroc"], b.get("auroc_ci")),
                    fmt_ci(b["auprc"], b.get("auprc_ci")),
                    fmt_ci(d.get("diff"), d.get("ci")),
                    fmt(d.get("p_value"), 3),
                ]
            )
    notes = "".join(f"<li><b>{_e(k)}</b>: {_e('; '.join(v))}</li>" for k, v in defs.items())
    return (
        table("score|AUROC (95% CI)|AUPRC (95% CI)|AUROC model &minus; baseline (95% CI)|p", rows)
        + "<p class='note'>Same rows as the model; differences by a paired person-level "
        f"bootstrap.</p><ul class='note'>{notes}</ul>"
    )


def _curves(key: str, entry: dict, figs: dict[str, str]) -> str:
    names = ("roc", "pr", "calibration", "decision")
    imgs = "".join(
        f"<img src='{figs[f'{n}_{key}']}' alt='{n} at {_e(key)} h'>"
        for n in names
        if f"{n}_{key}" in figs
    )
    out = (
        f"<div class='figs'>{imgs}</div>" if imgs else "<p class='note'>One outcome class only.</p>"
    )
    rows = [
        [f"{r['threshold']:g}", *(fmt(r[k]) for k in ("sensitivity", "specificity", "ppv", "npv"))]
        + [fmt(r["alerts_per_100"], 1), str(r["n_flagged"])]
        for r in entry["overall"].get("threshold_table", [])
    ]
    nb = entry["overall"].get("net_benefit", [])
    nb_rows = [
        ["model", *(fmt(r["net_benefit_model"], 4) for r in nb)],
        ["treat all", *(fmt(r["net_benefit_treat_all"], 4) for r in nb)],
        ["treat none", *("0" for _ in nb)],
    ]
    return (
        out
        + "<p class='note'>Calibration: deciles of predicted risk with Wilson 95% intervals and a "
        "spline-smoothed curve. Decision curve: net benefit = TP/n &minus; FP/n &times; t/(1&minus;t)."
        f"</p><h3>Operating points at {_e(key)} h</h3>"
        + table("risk &ge;|sensitivity|specificity|PPV|NPV|alerts per 100 patients|flagged", rows)
        + f"<h3>Net benefit at {_e(key)} h</h3>"
        + table(["threshold", *(f"{r['threshold']:g}" for r in nb)], nb_rows)
    )


def _alerts(m: dict) -> str:
    a = m["alerts"]
    rows = []
    for r in a["by_threshold"]:
        lt = r["lead_time_h"]
        band = " (high band)" if r["threshold"] == a["threshold"] else ""
        rows.append(
            [
                f"{r['threshold']:g}{band}",
                f"{fmt(lt['median'], 0)} ({fmt(lt['iqr'][0], 0)} to {fmt(lt['iqr'][1], 0)})",
                f"{lt['n_alerted_events']} / {lt['n_events']}",
                fmt(r["alerts_per_patient_day"], 3),
                fmt(r["new_alerts_per_patient_day"], 3),
                fmt(r["number_needed_to_evaluate"], 1),
            ]
        )
    head = (
        "alert at risk &ge;|lead time, h: median (IQR)|event patients alerted before onset|"
        "alerts per patient-day|new alerts per patient-day|number needed to evaluate"
    )
    lms = ", ".join(f"{h:g}" for h in a["landmarks_h"])
    return table(head, rows) + (
        f"<p class='note'>Patients scored at every model landmark ({_e(lms)} h), each row standing "
        f"for {a['landmark_spacing_h']:g} h of monitoring. Lead time runs from the first alert to "
        "grade &ge; 3 onset; number needed to evaluate = alerted patients per alerted patient "
        "with an event.</p>"
    )


def _subgroups(m: dict) -> str:
    parts = []
    for key, entry in m["landmarks"].items():
        sg = entry.get("subgroups")
        if not sg:
            continue
        rows = [
            [f"{_e(r['variable'].replace('_', ' '))}: {_e(r['level'])}", str(r["n"])]
            + [str(r["n_events"]), fmt_ci(r["auroc"], r["auroc_ci"]) + _few(r)]
            + [fmt(r["mean_risk"]), fmt(r["event_rate"])]
            + [fmt_ci(r["calibration_intercept"], r["calibration_intercept_ci"], 2)]
            + [fmt_ci(r["calibration_slope"], r["calibration_slope_ci"], 2)]
            for r in sg["rows"]
        ]
        head = "subgroup|n|events|AUROC (95% CI)|mean risk|event rate|calibration intercept|calibration slope"
        parts.append(f"<h3>{_e(key)} h</h3>")
        parts.append(table(head, rows) if rows else "<p class='note'>No subgroup qualifies.</p>")
        if sg["skipped"]:
            skipped = "; ".join(
                f"{_e(r['variable'].replace('_', ' '))} {_e(r['level'])} ({r['n_events']} events"
                f" in {r['n']}; {_e(r.get('reason', ''))})"
                for r in sg["skipped"]
            )
            parts.append(f"<p class='note'>Not evaluated: {skipped}.</p>")
    return "".join(parts)


def _drift(m: dict) -> str:
    d = m["drift"]
    if not d["table"]:
        return "<p class='note'>The model carries no training feature fingerprint.</p>"
    rows = [
        [f"<code>{_e(r['feature'])}</code>", fmt(r["train_mean"], 2), fmt(r["val_mean"], 2)]
        + [fmt(r["smd"], 2), fmt(r["train_share_measured"], 2), fmt(r["val_share_measured"], 2)]
        + [
            fmt(r["measured_diff"], 2),
            f"<span class='badge'>{_e(r['reason'])}</span>" * r["flagged"],
        ]
        for r in d["table"][:DRIFT_ROWS]
    ]
    head = "feature|training mean|validation mean|SMD|training measured|validation measured|change|flag"
    more = len(d["table"]) - DRIFT_ROWS
    tail = f"<p class='note'>{more} more rows in drift.csv.</p>" if more > 0 else ""
    intro = f"<p>{d['n_flagged']} of {d['n_features']} features flagged; {_e(d['rule'])}.</p>"
    return intro + table(head, rows) + tail


def _model_card(card: dict) -> str:
    def val(v):
        if isinstance(v, dict):
            return _mix(v)
        return fmt(v) if isinstance(v, float) else _e(v if v is not None else "not recorded")

    train = "<br>".join(f"{_e(k)}: {val(v)}" for k, v in card["training_data"].items())
    dev = "; ".join(f"{k} h: {fmt_ci(v, [lo, hi])}" for k, v, lo, hi in card["development_auroc"])
    items = [
        ("Intended use", _e(card["intended_use"])),
        ("Outcome", _e(card["outcome"])),
        ("Model", _e(card["model"])),
        ("Training data", train),
        ("Development AUROC", f"{dev or 'not recorded'} (internal validation by person)"),
        (
            "Known limitations",
            "<ul>" + "".join(f"<li>{_e(x)}</li>" for x in card["limitations"]) + "</ul>",
        ),
    ]
    return "<dl class='mc'>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def render_report(metrics: dict, card: dict, figures: dict[str, str]) -> str:
    """The whole page as one string."""
    m = metrics
    model = m.get("model", {})
    name = model.get("model_name") or "model"
    version = f" version {model['model_version']}" if model.get("model_version") else ""
    shap = (
        f"<div class='wide'><img src='{figures['shap']}' alt='SHAP summary'></div>"
        if "shap" in figures
        else "<p class='note'>No SHAP summary for this model type.</p>"
    )
    sections = [
        ("cohort", "Cohort and attrition", _cohort(m)),
        ("performance", "Discrimination and calibration", _performance(m)),
        ("censored", "With the censored weighted, not dropped", _censored(m, figures)),
        ("baselines", "Comparison with published baselines", _baselines(m)),
    ]
    for key, entry in m["landmarks"].items():
        sections.append((f"curves-{key}", f"Curves at {key} h", _curves(key, entry, figures)))
    sections += [
        ("alerts", "Alerts over repeated scoring", _alerts(m)),
        ("subgroups", "Subgroups", _subgroups(m)),
        (
            "shap",
            "What drives the predictions in this cohort",
            shap + "<p class='note'>TreeSHAP contributions to the calibrated log-odds (scaled by "
            "the calibration slope for xgboost) on up to 2,000 landmark rows of this cohort.</p>",
        ),
        ("drift", "Drift against the training data", _drift(m)),
        ("card", "Model card (TRIPOD+AI summary)", _model_card(card)),
    ]
    nav = "".join(f"<a href='#{sid}'>{_e(t)}</a>" for sid, t, _ in sections)
    body = "".join(
        f"<section id='{sid}'><h2>{i}. {_e(t)}</h2>{content}</section>"
        for i, (sid, t, content) in enumerate(sections, 1)
    )
    try:
        pkg = metadata.version("crs_ml")
    except metadata.PackageNotFoundError:  # pragma: no cover
        pkg = "unknown"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"External validation report: {_e(name)}{_e(version)}"
    sites = _e(", ".join(m["cohort"]["sites"]) or "unknown sites")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><style>{CSS}</style></head><body><main>"
        f"<header><h1>{title}</h1><div class='sub'>Model <code>{_e(model.get('uri', ''))}</code>"
        f" &middot; grade &ge; 3 CRS within {m['settings']['horizon_h']:g} h &middot; "
        f"{m['cohort']['n_patients']} patients from site(s) {sites}</div><nav>{nav}</nav></header>"
        f"{_verdict(m)}{_cards(m)}{body}<footer>crs_ml {_e(pkg)} &middot; generated {stamp} &middot; "
        "aggregates only, no patient identifiers.</footer></main></body></html>"
    )


def _recalibration_warnings_html(warnings: list[str]) -> str:
    if not warnings:
        return (
            "<section class='verdict ok'><h2>Verdict: " + level_tag("ok") + "</h2><p>Held-out "
            "Brier and calibration are not worse after the update, and it rests on at least "
            "100 persons with an event.</p></section>"
        )
    items = "".join(f"<li>{level_tag('warning')}{html.escape(w)}</li>" for w in warnings)
    return (
        "<section class='verdict warning'><h2>Verdict: " + level_tag("warning") + "</h2>"
        f"<ul>{items}</ul><p class='note'>Measured on the held-out persons, which the map "
        "never saw (no optimism).</p></section>"
    )


def render_recalibration(summary: dict[str, Any], figure: str | None = None) -> str:
    """A self-contained HTML page: the chosen update and calibration before / after on the
    held-out persons."""
    rows = []
    for key, ev in summary["evaluation"].items():
        for when in ("before", "after"):
            b = ev[when]
            rows.append(
                [
                    f"{key} h, {when}" if key != "all" else f"all landmarks, {when}",
                    str(b["n"]),
                    str(b["n_events"]) + (" (too few events)" if b.get("too_few_events") else ""),
                    fmt_ci(b["calibration_intercept"], b["calibration_intercept_ci"], 2),
                    fmt_ci(b["calibration_slope"], b["calibration_slope_ci"], 2),
                    fmt_ci(b["brier"], b["brier_ci"], 4), fmt_ci(b["auroc"], b["auroc_ci"]),
                ]
            )  # fmt: skip
    head = ["held-out slice", "n", "events", "calibration intercept", "calibration slope"]
    before, after = summary["calibration_before"], summary["calibration_after"]
    tests = summary["fit"]["tests"]
    test_rows = [
        [k.replace("_", " "), fmt(t["statistic"], 2), str(t["df"]), fmt(t["p_value"], 4)]
        for k, t in tests.items()
        if t
    ]
    e = html.escape
    hold = summary["holdout"]
    img = f"<img src='{figure}' alt='calibration before and after' style='max-width:520px'>"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Site recalibration</title><style>{CSS}</style></head><body><main>"
        "<header><h1>Site recalibration</h1>"
        f"<div class='sub'>Model <code>{e(str(summary['source_model'].get('uri')))}</code> "
        f"&middot; sites {e(', '.join(summary['sites']) or 'unknown')}</div></header>"
        + _recalibration_warnings_html(summary.get("warnings", []))
        + f"<h2>Update chosen: {e(summary['method'])}</h2><p>{e(summary['rule'])}.</p>"
        f"<p>Calibration map of {e(summary.get('margin', 'the raw booster margin'))}: slope "
        f"{before['slope']:.4f} &rarr; {after['slope']:.4f}, intercept "
        f"{before['intercept']:.4f} &rarr; {after['intercept']:.4f}. The model and its "
        "unscaled SHAP values are unchanged."
        f" Fitted on {summary['fit']['n_persons']} persons ({summary['fit']['n_event_persons']} "
        f"with an event, {summary['fit']['n_rows']} landmark rows)"
        + ("; then refitted on all persons." if summary["refit_on_all_persons"] else ".")
        + "</p>"
        + table(["likelihood-ratio test", "statistic", "df", "p"], test_rows)
        + f"<h2>Calibration on held-out persons ({hold['n_persons']} persons, not used to fit)</h2>"
        + (table(head + ["Brier", "AUROC"], rows) if rows else "<p>No held-out persons.</p>")
        + (f"<div class='wide'>{img}</div>" if figure else "")
        + f"<p class='note'>95% intervals: bootstrap of held-out persons ({hold['bootstrap']} "
        "replicates), conditional on the fitted map.</p></main></body></html>"
    )
