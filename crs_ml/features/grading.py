"""ASTCT grading of CRS as derivable from vitals and support events.

Label definition ``ASTCT-2019-derived-v4`` (Lee et al., Biol Blood Marrow Transplant 2019;
the settings are :class:`crs_ml.config.LabelConfig`, section ``label`` of the config):

* only data at hours >= 0 (after infusion) count; rows before infusion are ignored;
* fever = temperature >= 38.0 degC. A time t is *fever-qualified* if a fever was recorded in
  [t - fever_window_h, t] (default 24 h; the consensus states no window), or if fever is no
  longer required at t;
* fever first, then treatment may mask it: fever is no longer required from the first
  antipyretic or anti-cytokine therapy (tocilizumab, corticosteroid, anakinra) given at or
  after the patient's first fever
  (hours >= first fever; same hour counts). A treatment before any fever (prophylaxis)
  lifts nothing, ever: it is not treatment of CRS. So a never-febrile patient is never
  graded, and the lift starts at max(first fever, first such treatment after it);
* at a fever-qualified time the grade is the worst of hypotension (sbp < 90 observed at t -> 2,
  one vasopressor running -> 3, two or more different ones running at once -> 4; vasopressin
  does not count),
  hypoxia (low-flow oxygen -> 2, high-flow oxygen -> 3, positive_pressure -> 4) and fever alone
  (a fever in the window -> 1). Organ toxicities do not change the grade;
* oxygen by flow (:func:`oxygen_flow`): an oxygen_low_flow or oxygen_high_flow event whose
  ``detail`` states a flow above low_flow_max_l_min (6 L/min; the highest stated flow
  counts), or an FiO2 above high_flow_fio2_above (0.40; an assumption), is high flow; one
  stating a flow <= 6 L/min on a nasal cannula ('cannula', 'NC', 'HFNC', 'nasal'; no mask,
  Venturi or rebreather named) and no such FiO2 is low flow. Otherwise a named facemask,
  Venturi or non-rebreather is high flow (grade 3 at any flow, whichever oxygen event it is
  recorded as), a named blow-by is low flow, and else the event name decides;
* vasopressors by drug (:func:`vasopressor_drugs`): the drug a 'vasopressor' event's
  ``detail`` names (norepinephrine or noradrenaline, epinephrine or adrenaline, ...).
  Overlapping or touching rows of one patient's same drug are one infusion (records split at
  rate changes are common), so only different drugs count as several; a row that names
  vasopressin and no other drug does not count; rows that name no known drug are each a
  drug of their own (nothing shows they are the same);
* an event runs on the closed interval [hours, end_hours]; a missing end_hours is an instant.
  Two vasopressors that touch (one stops at the hour the other starts) therefore overlap at
  that instant, exactly as the closed intervals say;
* grade 5 = the first 'death' event whose detail names CRS (:data:`CRS_DEATH_PATTERN`: 'CRS'
  as a word, 'cytokine release', or ICD-10 D89.83x, not negated in its clause: 'CRS
  excluded' and 'no evidence of CRS' do not count; :func:`names_crs`), if grade >= 3 was
  reached at or before it.

The grading is a sweep over the start and stop points of all intervals: one vectorised pass
for all patients (no per-patient loop). A closed interval [a, b] stops counting at
``numpy.nextafter(b, inf)``, the first representable time after b.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from crs_ml.cohort import OUTCOME_COLUMNS, Cohort, implausible
from crs_ml.config import LabelConfig

LABEL_DEFINITION = "ASTCT-2019-derived-v4: ASTCT 2019 as derivable from vitals and support events"
FEVER_C = 38.0
HYPOTENSION_SBP_MMHG = 90.0
DEFAULT_LABEL = LabelConfig()
FEVER_WINDOW_H = DEFAULT_LABEL.fever_window_h
#: treatments after which fever is no longer required (when given at or after a fever):
#: antipyretics and anti-cytokine therapy
FEVER_LIFTING_EVENTS = ("antipyretic", "tocilizumab", "corticosteroid", "anakinra")
#: a flow in the event detail: '8 L/min', 'NC 4lpm', '2 l/min.', '10 liters per minute'
FLOW_PATTERN = r"(?i)(\d+(?:\.\d+)?)\s*(?:l(?:iters?|itres?)?\s*(?:/|per)\s*min|lpm\b)"
#: an FiO2 in the event detail: 'FiO2 40%', 'FiO2: 0.6', 'FiO2 of 60 %'
FIO2_PATTERN = r"(?i)fio2\s*(?:[:=]|of|at)?\s*(\d+(?:\.\d+)?)\s*(%?)"
#: the detail names a nasal cannula, whose class the flow decides ...
CANNULA_PATTERN = r"(?i)cannula|\bnc\b|hfnc|nasal"
#: ... unless it names a device that is grade 3 at any flow (ASTCT: facemask, non-rebreather,
#: Venturi)
MASK_PATTERN = r"(?i)mask|venturi|rebreather"
#: the detail names blow-by oxygen (ASTCT grade 2)
BLOW_BY_PATTERN = r"(?i)blow[\s-]?by"
#: a death event's detail that names CRS as the cause
CRS_DEATH_PATTERN = r"(?i)\bcrs\b|cytokine[\s-]+release|\bD89\.?83"
#: a negation of a CRS mention in a death's detail: a cue right before it ('no CRS',
#: 'no evidence of CRS', 'not due to CRS', 'unrelated to CRS', 'non-CRS') or right after it
#: ('CRS excluded', 'CRS was ruled out'); such a mention does not name CRS as the cause.
#: Words between a cue and the mention make no negation: 'no improvement of CRS',
#: 'non-resolving CRS' and 'not controlled CRS' name CRS.
CRS_NEGATION_BEFORE = (
    r"(?i)\b(?:no|not|without|non|excluding|unrelated\s+to|other\s+than"
    r"|no\s+(?:evidence|signs?|features?)\s+of|not\s+(?:due\s+to|related\s+to|caused\s+by|from))"
    r"\W*$"
)
CRS_NEGATION_AFTER = (
    r"(?i)^\W*(?:syndrome\W*)?(?:(?:was|is|has\s+been|been)\s+)?"
    r"(?:excluded|ruled\s+out|unlikely|resolved)\b"
)
_CLAUSE_END = re.compile(r"[,;:\n]|\.(?:\s|$)")
#: vasopressor drugs by the names a 'vasopressor' event's detail may give them (whole words,
#: any case); the first named in a detail is its drug
VASOPRESSOR_DRUGS = {
    "norepinephrine": ("norepinephrine", "noradrenaline", "levophed"),
    "epinephrine": ("epinephrine", "adrenaline"),
    "phenylephrine": ("phenylephrine", "neo-synephrine", "neosynephrine"),
    "dopamine": ("dopamine",),
    "angiotensin ii": ("angiotensin ii", "angiotensin 2", "giapreza"),
    "metaraminol": ("metaraminol",),
    "vasopressin": ("vasopressin", "argipressin"),
}

# sweep counters (columns of the count matrix)
_FEVER, _TREAT, _SBP, _VASO, _LOW, _HIGH, _PP, _DEATH = range(8)
_N_COUNTERS = 8
_EVENT_COUNTER = {
    "vasopressor": _VASO,
    "oxygen_low_flow": _LOW,
    "oxygen_high_flow": _HIGH,
    "positive_pressure": _PP,
    **{name: _TREAT for name in FEVER_LIFTING_EVENTS},
}
TIMELINE_COLUMNS = [
    "hours",
    "febrile",
    "treated",
    "sbp_low",
    "vasopressors",
    "oxygen_level",
    "grade",
]


def label_definition(settings: LabelConfig | None = None) -> str:
    """:data:`LABEL_DEFINITION`, with the settings appended when they are not the defaults."""
    if settings is None or settings == DEFAULT_LABEL:
        return LABEL_DEFINITION
    return (
        f"{LABEL_DEFINITION} (fever window {settings.fever_window_h:g} h, low flow <= "
        f"{settings.low_flow_max_l_min:g} L/min, high flow FiO2 > {settings.high_flow_fio2_above:g})"
    )


_FLOW_RE, _FIO2_RE = re.compile(FLOW_PATTERN), re.compile(FIO2_PATTERN)
_CANNULA_RE, _MASK_RE = re.compile(CANNULA_PATTERN), re.compile(MASK_PATTERN)
_BLOW_BY_RE = re.compile(BLOW_BY_PATTERN)
_DRUG_NAME = {name: drug for drug, names in VASOPRESSOR_DRUGS.items() for name in names}
_DRUG_RE = re.compile(
    r"(?i)\b(" + "|".join(re.escape(n) for n in sorted(_DRUG_NAME, key=len, reverse=True)) + r")\b"
)


def _parse_detail(text: str) -> tuple[float, float, bool, bool, bool]:
    """(highest flow stated, FiO2 as a fraction, names a cannula and no mask, names a mask,
    names blow-by) of one text."""
    flows = [float(x) for x in _FLOW_RE.findall(text)]
    fio2 = float("nan")
    found = _FIO2_RE.search(text)
    if found:
        value = float(found.group(1))
        fio2 = value / 100.0 if found.group(2) == "%" or value > 1 else value
    mask = bool(_MASK_RE.search(text))
    cannula = bool(_CANNULA_RE.search(text)) and not mask
    blow_by = bool(_BLOW_BY_RE.search(text))
    return (max(flows) if flows else float("nan"), fio2, cannula, mask, blow_by)


def oxygen_flow(detail: pd.Series) -> pd.DataFrame:
    """Flow and FiO2 stated in oxygen event details (vectorised; NaN where none is stated).

    Columns: flow_l_min (the highest flow stated, see :data:`FLOW_PATTERN`), fio2 (a fraction;
    '40%' and '40' are 0.40, '0.4' is 0.40), cannula (names a nasal cannula and no mask,
    Venturi or rebreather), mask (names a facemask, Venturi or rebreather), blow_by (names
    blow-by). Each distinct text is parsed once."""
    codes, uniq = pd.factorize(detail.astype(object).where(detail.notna(), ""), sort=False)
    parsed = [_parse_detail(str(t)) for t in uniq]  # few distinct texts: plain re is fastest
    per_text = pd.DataFrame(
        {
            "flow_l_min": np.array([p[0] for p in parsed], dtype="float64"),
            "fio2": np.array([p[1] for p in parsed], dtype="float64"),
            "cannula": np.array([p[2] for p in parsed], dtype=bool),
            "mask": np.array([p[3] for p in parsed], dtype=bool),
            "blow_by": np.array([p[4] for p in parsed], dtype=bool),
        }
    )
    out = per_text.iloc[codes].reset_index(drop=True)
    out.index = detail.index
    return out


def _oxygen_counters(counter: np.ndarray, detail: pd.Series, settings: LabelConfig) -> np.ndarray:
    """_LOW / _HIGH of oxygen events by the flow or FiO2 in their detail (see the module)."""
    parsed = oxygen_flow(detail)
    flow, fio2 = parsed["flow_l_min"].to_numpy(), parsed["fio2"].to_numpy()
    with np.errstate(invalid="ignore"):
        high = (flow > settings.low_flow_max_l_min) | (fio2 > settings.high_flow_fio2_above)
        low = ~high & (flow <= settings.low_flow_max_l_min) & parsed["cannula"].to_numpy(bool)
    mask = parsed["mask"].to_numpy(bool)
    high |= ~low & mask  # a facemask, Venturi or non-rebreather: grade 3 at any flow
    low |= ~high & parsed["blow_by"].to_numpy(bool)  # blow-by: grade 2
    return np.where(high, _HIGH, np.where(low, _LOW, counter))


def names_crs(detail: str) -> bool:
    """Whether a death's detail names CRS as its cause: a mention of
    :data:`CRS_DEATH_PATTERN` that its clause does not negate (:data:`CRS_NEGATION_BEFORE`,
    :data:`CRS_NEGATION_AFTER`)."""
    for m in re.finditer(CRS_DEATH_PATTERN, detail):
        starts = [e.end() for e in _CLAUSE_END.finditer(detail, 0, m.start())]
        before = detail[starts[-1] if starts else 0 : m.start()]
        end = _CLAUSE_END.search(detail, m.end())
        after = detail[m.end() : end.start() if end else len(detail)]
        if not (re.search(CRS_NEGATION_BEFORE, before) or re.search(CRS_NEGATION_AFTER, after)):
            return True
    return False


def vasopressor_drugs(detail: pd.Series) -> np.ndarray:
    """The drug each vasopressor event's ``detail`` names (object array): the canonical name
    of the first of :data:`VASOPRESSOR_DRUGS`' names found as a word that is not
    vasopressin, 'vasopressin' when it is the only one named, None when none is named
    (dosing text such as 'titrate to MAP >= 65' names no drug). Each distinct text is read
    once."""
    codes, uniq = pd.factorize(detail.astype(object).where(detail.notna(), ""), sort=False)
    drugs = []
    for text in uniq:
        named = [_DRUG_NAME[m.lower()] for m in _DRUG_RE.findall(str(text))]
        other = [d for d in named if d != "vasopressin"]
        drugs.append(other[0] if other else (named[0] if named else None))
    return np.asarray(drugs, dtype=object)[codes]


def _one_infusion_per_drug(code: np.ndarray, drug: np.ndarray, start: np.ndarray,
                           end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(rows kept, their ends) of vasopressor rows (group code, drug, closed [start, end]):
    overlapping or touching rows of one group's same named drug become one row, the first,
    running to the latest end; rows without a drug (None) are kept as they are."""
    keep, new_end = np.ones(len(code), dtype=bool), end.copy()
    named = np.flatnonzero(pd.notna(drug))
    if len(named) < 2:
        return keep, new_end
    d = pd.DataFrame({"g": code[named], "drug": drug[named], "s": start[named],
                      "e": end[named], "i": named}).sort_values(["g", "drug", "s"], kind="stable")  # fmt: skip
    same = [d["g"], d["drug"]]
    reach = d.groupby(same, sort=False)["e"].cummax().groupby(same, sort=False).shift()
    first = (reach.isna() | (d["s"] > reach)).to_numpy()  # starts after all before it ended
    block = np.cumsum(first)
    rows = d["i"].to_numpy()
    keep[rows[~first]] = False
    new_end[rows[first]] = pd.Series(d["e"].to_numpy()).groupby(block).max().to_numpy()
    return keep, new_end


def _intervals(
    observations: pd.DataFrame, events: pd.DataFrame, key: str, settings: LabelConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.Index]:
    """(group code, start, end, counter, closes) of every interval that matters for grading."""
    fever_window_h = float(settings.fever_window_h)
    obs_hours = observations["hours"].to_numpy(dtype="float64")
    value = observations["value"].to_numpy(dtype="float64")
    variable = observations["variable"]
    plausible = ~implausible(observations)  # a value loading flagged is no measurement
    is_temp = variable.eq("temperature").fillna(False).to_numpy(dtype=bool) & plausible
    is_sbp = variable.eq("sbp").fillna(False).to_numpy(dtype=bool) & plausible
    with np.errstate(invalid="ignore"):
        fever = (obs_hours >= 0) & is_temp & (value >= FEVER_C)
        sbp_low = (obs_hours >= 0) & is_sbp & (value < HYPOTENSION_SBP_MMHG)
    obs_keep = fever | sbp_low

    ev_hours = events["hours"].to_numpy(dtype="float64")
    ev_name = events["event"].to_numpy(dtype=object)
    counter = pd.Series(ev_name).map(_EVENT_COUNTER).to_numpy(dtype="float64", copy=True)
    is_death = ev_name == "death"
    if is_death.any():  # the few deaths' details read (a Python test each)
        detail = events["detail"].to_numpy(dtype=object)[is_death]
        is_death[is_death] = [isinstance(d, str) and names_crs(d) for d in detail]
    counter[is_death] = _DEATH
    drug = np.full(len(ev_name), None, dtype=object)
    is_vaso = counter == _VASO
    if is_vaso.any():
        drug[is_vaso] = vasopressor_drugs(events["detail"][is_vaso])
        counter[drug == "vasopressin"] = np.nan  # vasopressin does not count
    ev_keep = (ev_hours >= 0) & ~np.isnan(counter)
    is_oxygen = ev_keep & ((counter == _LOW) | (counter == _HIGH))
    if is_oxygen.any():
        counter[is_oxygen] = _oxygen_counters(
            counter[is_oxygen], events["detail"][is_oxygen], settings
        )

    keys = pd.concat(
        [
            observations[key][obs_keep].reset_index(drop=True),
            events[key][ev_keep].reset_index(drop=True),
        ],
        ignore_index=True,
    )
    codes, uniques = pd.factorize(keys, sort=False)
    n_obs = int(obs_keep.sum())

    o_start = obs_hours[obs_keep]
    o_counter = np.where(fever[obs_keep], _FEVER, _SBP)
    o_end = np.where(o_counter == _FEVER, o_start + fever_window_h, o_start)

    e_start = ev_hours[ev_keep]
    e_counter = counter[ev_keep].astype(np.int64)
    e_end = events["end_hours"].to_numpy(dtype="float64")[ev_keep]
    e_end = np.where(np.isnan(e_end), e_start, np.maximum(e_end, e_start))
    # treatment and death never stop
    e_closes = (e_counter != _TREAT) & (e_counter != _DEATH)

    # fever first: a treatment lifts the fever requirement only at or after the first fever
    first_fever = np.full(len(uniques), np.inf)
    np.minimum.at(first_fever, codes[:n_obs][o_counter == _FEVER], o_start[o_counter == _FEVER])
    keep_ev = (e_counter != _TREAT) | (e_start >= first_fever[codes[n_obs:]])
    # only the first CRS death of a group counts
    death_rows = np.flatnonzero(e_counter == _DEATH)
    if len(death_rows) > 1:
        d = pd.DataFrame({"g": codes[n_obs:][death_rows], "h": e_start[death_rows]})
        first = d.sort_values(["g", "h"], kind="stable").drop_duplicates("g").index
        drop = np.setdiff1d(np.arange(len(death_rows)), first.to_numpy())
        keep_ev[death_rows[drop]] = False
    e_drug = drug[ev_keep]
    vaso = np.flatnonzero(e_counter == _VASO)
    if len(vaso) > 1:  # one drug's overlapping rows are one infusion
        kept, e_end[vaso] = _one_infusion_per_drug(codes[n_obs:][vaso], e_drug[vaso],
                                                   e_start[vaso], e_end[vaso])  # fmt: skip
        keep_ev[vaso[~kept]] = False
    if not keep_ev.all():
        codes = np.concatenate([codes[:n_obs], codes[n_obs:][keep_ev]])
        e_start, e_end, e_counter, e_closes = (
            e_start[keep_ev],
            e_end[keep_ev],
            e_counter[keep_ev],
            e_closes[keep_ev],
        )

    start = np.concatenate([o_start, e_start])
    end = np.concatenate([o_end, e_end])
    counters = np.concatenate([o_counter, e_counter]).astype(np.int64)
    closes = np.concatenate([np.ones(n_obs, dtype=bool), e_closes])
    return codes.astype(np.int64), start, end, counters, closes, pd.Index(uniques)


def _sweep(code, start, end, counter, closes):
    """Counts of every counter at each distinct (group, hours) point, in time order.

    Closed intervals stop "just after" their end: at ``numpy.nextafter(end, inf)``, the next
    representable time, so that one float orders every open and close exactly."""
    n_close = int(closes.sum())
    p_code = np.concatenate([code, code[closes]])
    p_hours = np.concatenate([start, np.nextafter(end[closes], np.inf)])
    p_counter = np.concatenate([counter, counter[closes]])
    p_delta = np.concatenate([np.ones(len(code), np.int32), -np.ones(n_close, np.int32)])
    order = np.lexsort((p_hours, p_code))
    p_code, p_hours = p_code[order], p_hours[order]
    delta = np.zeros((len(order), _N_COUNTERS), dtype=np.int32)
    delta[np.arange(len(order)), p_counter[order]] = p_delta[order]
    if len(order) == 0:
        return p_code, p_hours, delta
    new_key = np.ones(len(order), dtype=bool)
    new_key[1:] = (p_code[1:] != p_code[:-1]) | (p_hours[1:] != p_hours[:-1])
    first = np.flatnonzero(new_key)
    per_key = np.add.reduceat(delta, first, axis=0)
    k_code = p_code[first]
    running = np.cumsum(per_key, axis=0, dtype=np.int32)
    group_start = np.ones(len(first), dtype=bool)
    group_start[1:] = k_code[1:] != k_code[:-1]
    start_idx = np.maximum.accumulate(np.where(group_start, np.arange(len(first)), 0))
    counts = running - (running[start_idx] - per_key[start_idx])
    return k_code, p_hours[first], counts


def _settings(settings: LabelConfig | None, fever_window_h: float | None) -> LabelConfig:
    """The grading settings: ``settings`` (default :class:`LabelConfig`) with
    ``fever_window_h`` laid over it when given."""
    out = DEFAULT_LABEL if settings is None else settings
    if fever_window_h is not None and float(fever_window_h) != out.fever_window_h:
        out = LabelConfig(**{**out.model_dump(), "fever_window_h": float(fever_window_h)})
    return out


def _timeline(observations, events, key, settings: LabelConfig):
    """(codes, uniques, hours, state columns) of the timeline, sorted by code then hours."""
    code, start, end, counter, closes, uniques = _intervals(observations, events, key, settings)
    k_code, hours, c = _sweep(code, start, end, counter, closes)
    febrile = c[:, _FEVER] > 0
    qualified = febrile | (c[:, _TREAT] > 0)
    vaso = c[:, _VASO].astype(np.int64)
    level = np.select(
        [(vaso >= 2) | (c[:, _PP] > 0), (vaso >= 1) | (c[:, _HIGH] > 0)], [4, 3], default=0
    )
    level = np.maximum(level, np.where((c[:, _SBP] > 0) | (c[:, _LOW] > 0), 2, 0))
    level = np.maximum(level, febrile.astype(np.int64))
    grade = np.where(qualified, level, 0)
    oxygen = np.select([c[:, _PP] > 0, c[:, _HIGH] > 0, c[:, _LOW] > 0], [3, 2, 1], default=0)
    cols = {
        "febrile": febrile,
        "treated": c[:, _TREAT] > 0,
        "sbp_low": c[:, _SBP] > 0,
        "vasopressors": vaso,
        "oxygen_level": oxygen,
        "grade": grade,
    }
    dead = c[:, _DEATH] > 0
    if dead.any():
        # the death key is the first one with the counter set (it never stops)
        prev_dead = np.zeros(len(dead), dtype=bool)
        prev_dead[1:] = dead[:-1] & (k_code[1:] == k_code[:-1])
        first_death = dead & ~prev_dead
        reached3 = pd.Series(grade).groupby(k_code).cummax().to_numpy() >= 3
        crs_death = first_death & reached3
        grade[crs_death] = 5
        seen = pd.Series(crs_death.astype(np.int64)).groupby(k_code).cumsum().to_numpy()
        keep = (seen - crs_death) == 0  # drop what follows a grade-5 death
        k_code, hours = k_code[keep], hours[keep]
        cols = {k: v[keep] for k, v in cols.items()}
    return k_code, uniques, hours, cols


def state_timeline(
    observations: pd.DataFrame,
    events: pd.DataFrame,
    key: str = "patient_id",
    fever_window_h: float | None = None,
    settings: LabelConfig | None = None,
) -> pd.DataFrame:
    """The CRS state at every time where it may change, per ``key`` (patient or point).

    Columns: ``key``, hours (from this time on; a support that stopped at b stops counting
    at ``numpy.nextafter(b, inf)``), febrile (a fever in the window), treated (fever no longer
    required: a lifting treatment was given at or after the first fever), sbp_low, vasopressors (number running), oxygen_level (0 none, 1 low flow,
    2 high flow, 3 positive pressure), grade (0-5). Rows after a grade-5 death are dropped;
    keys without any relevant data have no rows.
    """
    k_code, uniques, hours, cols = _timeline(
        observations, events, key, _settings(settings, fever_window_h)
    )
    out = pd.DataFrame({"hours": hours, **cols})
    out.insert(0, key, uniques.take(k_code).to_numpy())
    return out


def grade_events(
    observations: pd.DataFrame,
    events: pd.DataFrame,
    fever_window_h: float | None = None,
    settings: LabelConfig | None = None,
) -> pd.DataFrame:
    """Grade changes: (patient_id, hours, grade), time-ordered per patient.

    Each row gives the grade from ``hours`` on (inclusive) until the patient's next row; every
    patient starts at grade 0. Because supports run on closed intervals, a fall in grade after a
    support stopped at ``b`` is reported at ``numpy.nextafter(b, inf)``, the first time after b.
    """
    k_code, uniques, hours, cols = _timeline(
        observations, events, "patient_id", _settings(settings, fever_window_h)
    )
    grade = cols["grade"]
    prev = np.zeros_like(grade)
    if len(grade):
        prev[1:] = np.where(k_code[1:] == k_code[:-1], grade[:-1], 0)
    change = grade != prev
    return pd.DataFrame(
        {
            "patient_id": pd.Series(uniques.take(k_code[change]).to_numpy(), dtype=object),
            "hours": hours[change],
            "grade": grade[change].astype(np.int64),
        }
    )


def grade_summary(
    observations: pd.DataFrame,
    events: pd.DataFrame,
    key: str = "patient_id",
    until: pd.Series | float | None = None,
    fever_window_h: float | None = None,
    settings: LabelConfig | None = None,
) -> pd.DataFrame:
    """Per ``key`` over [0, until]: max grade, first time at grade >= 1 (CRS onset) and >= 3,
    highest oxygen level and vasopressor count. ``until`` is a number or a Series indexed by
    ``key`` (None = no limit). Keys without any relevant data are absent: treat them as 0/NaN.
    """
    k_code, uniques, hours, cols = _timeline(
        observations, events, key, _settings(settings, fever_window_h)
    )
    if until is None:
        limit = np.full(len(uniques), np.inf)
    elif np.isscalar(until):
        limit = np.full(len(uniques), float(until))
    else:
        limit = pd.Series(uniques).map(until).to_numpy(dtype="float64")
    inside = np.flatnonzero(hours <= limit[k_code])
    k_code, hours = k_code[inside], hours[inside]
    grade = cols["grade"][inside]
    if len(k_code) == 0:
        starts = np.empty(0, dtype=np.int64)
    else:
        starts = np.flatnonzero(np.append(True, k_code[1:] != k_code[:-1]))

    def reduce(ufunc, values):
        out = ufunc.reduceat(values, starts) if len(starts) else np.empty(0)
        return np.where(np.isinf(out), np.nan, out)

    return pd.DataFrame(
        {
            "max_grade": reduce(np.maximum, grade),
            "crs_onset_hours": reduce(np.minimum, np.where(grade >= 1, hours, np.inf)),
            "grade3_hours": reduce(np.minimum, np.where(grade >= 3, hours, np.inf)),
            "oxygen_level": reduce(np.maximum, cols["oxygen_level"][inside]),
            "vasopressors": reduce(np.maximum, cols["vasopressors"][inside]),
        },
        index=pd.Index(uniques.take(k_code[starts]).to_numpy(), name=key),
    )


def derive_outcomes(
    cohort: Cohort,
    horizon_h: float | None = 336.0,
    fever_window_h: float | None = None,
    settings: LabelConfig | None = None,
) -> pd.DataFrame:
    """Outcomes of every patient of ``cohort`` from its temperatures, sbp and events.

    ``settings`` are the grading settings (config section ``label``; default
    :class:`LabelConfig`); ``fever_window_h``, when given, replaces its fever window.
    label_definition is :func:`label_definition` of the settings used.

    crs_max_grade and grade3_hours are graded over [0, horizon_h] (None: all data);
    death_hours is the first 'death' event at hours >= 0 (any cause); followup_hours is kept
    from ``cohort.outcomes`` when present, else NaN (= followed through the horizon).
    """
    settings = _settings(settings, fever_window_h)
    summary = grade_summary(
        cohort.observations, cohort.events, "patient_id", horizon_h, settings=settings
    )
    pids = cohort.patients["patient_id"].astype(object)
    ev = cohort.events
    deaths = ev[(ev["event"] == "death") & (ev["hours"] >= 0)].groupby("patient_id")["hours"].min()
    followup = pd.Series(np.nan, index=pd.Index(pids))
    if cohort.outcomes is not None and "followup_hours" in cohort.outcomes:
        known = cohort.outcomes.drop_duplicates("patient_id").set_index("patient_id")
        followup = pids.map(known["followup_hours"]).astype("float64")
    out = pd.DataFrame(
        {
            "patient_id": pids.to_numpy(),
            "crs_max_grade": pids.map(summary["max_grade"]).fillna(0).astype(np.int64).to_numpy(),
            "grade3_hours": pids.map(summary["grade3_hours"]).astype("float64").to_numpy(),
            "followup_hours": np.asarray(followup, dtype="float64"),
            "death_hours": pids.map(deaths).astype("float64").to_numpy(),
            "label_definition": label_definition(settings),
        }
    )
    out["patient_id"] = out["patient_id"].astype(object)
    out["label_definition"] = out["label_definition"].astype(object)
    return out[OUTCOME_COLUMNS]
