"""Parsing of cell values: numbers, censored results, times, and categorical vocabularies.

Numbers: the fast path is :func:`pandas.to_numeric`; only the cells it cannot read (or reads
as NaN/inf) go through the text parser, once per distinct text. The text parser accepts

- thousands separators when every group has exactly three digits: ``1,240``, ``1 240``,
  ``12'345``, ``1,240.5``, ``1.240,5`` (dot groups with a decimal comma);
- a decimal comma when it cannot be a thousands separator: ``37,2``, ``0,125`` (a number with
  one comma followed by exactly three digits, like ``1,240``, is read as thousands);
- censored results ``<x``, ``<=x``, ``≤x`` (below a detection limit: value ``x/2`` or ``x`` by
  policy, censored -1) and ``>x``, ``>=x``, ``≥x`` (value ``x``, censored +1).

Anything else is a non-numeric result, classified as ``empty``, ``placeholder`` (``---``,
``N/A``, ``NaN``, ``inf`` ...), ``lab_comment`` (``Hemolyzed``, ``QNS``, ``pending`` ...) or
``text``. ``inf`` and ``nan`` strings are never turned into float inf/NaN values.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from crs_ml.errors import InputError
from crs_ml.variables import name_key

_SPACES = re.compile(r"[\s\u00a0\u2009\u202f]+")
_PLAIN = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED = re.compile(r"([+-]?)([1-9]\d{0,2})((?:([,' ])\d{3})(?:\4\d{3})*)([.,]\d+)?")
_GROUPED_EU = re.compile(r"([+-]?)([1-9]\d{0,2})((?:\.\d{3})+),(\d+)")
_DECIMAL_COMMA = re.compile(r"([+-]?\d+),(\d+)")
_CENSOR = re.compile(r"(<=|>=|=<|=>|≤|≥|<|>)\s*(.+)")
_PLACEHOLDERS = {
    "nan", "inf", "+inf", "-inf", "infinity", "-infinity", "n/a", "na", "n.a.", "null",
    "none", "nil", "?", "x", "missing", "not available", "#n/a", "#value!", "#div/0!",
}  # fmt: skip
_LAB_COMMENTS = (
    "hemoly", "haemoly", "qns", "quantity not sufficient", "insufficient", "pending",
    "cancel", "clotted", "lipem", "lipaem", "icteric", "not done", "not performed",
    "see comment", "see note", "comment", "error", "invalid", "redraw", "tnp",
)  # fmt: skip

NON_NUMERIC_KINDS = ("empty", "placeholder", "lab_comment", "text")


def parse_number(text: str) -> float | None:
    """A finite number written as text (thousands separators, decimal comma), else None."""
    s = _SPACES.sub(" ", str(text)).strip()
    if not s:
        return None
    out: str | None = None
    if _PLAIN.fullmatch(s):
        out = s
    elif (m := _GROUPED.fullmatch(s)) and not (m.group(5) or "").startswith(m.group(4)):
        decimal = (m.group(5) or "").replace(",", ".")
        out = m.group(1) + m.group(2) + re.sub(r"[,' ]", "", m.group(3)) + decimal
    elif m := _GROUPED_EU.fullmatch(s):
        out = f"{m.group(1)}{m.group(2)}{m.group(3).replace('.', '')}.{m.group(4)}"
    elif m := _DECIMAL_COMMA.fullmatch(s):
        out = f"{m.group(1)}.{m.group(2)}"
    if out is None:
        return None
    value = float(out)
    return value if np.isfinite(value) else None


def classify_text(text: str) -> str:
    """Kind of a non-numeric result (see :data:`NON_NUMERIC_KINDS`)."""
    s = _SPACES.sub(" ", str(text)).strip().lower()
    if not s:
        return "empty"
    if s in _PLACEHOLDERS or re.fullmatch(r"[-.*_/\\=~ ]+", s):
        return "placeholder"
    if any(word in s for word in _LAB_COMMENTS):
        return "lab_comment"
    return "text"


def parse_text_value(text: str, censored_below: str = "half") -> tuple[float, int, str]:
    """(value, censored, kind) of one text cell; kind is '' for a number."""
    s = _SPACES.sub(" ", str(text)).strip()
    m = _CENSOR.fullmatch(s)
    if m:
        limit = parse_number(m.group(2))
        if limit is not None:
            if m.group(1) in (">", ">=", "=>", "≥"):
                return limit, 1, ""
            return (limit / 2 if censored_below == "half" else limit), -1, ""
    value = parse_number(s)
    if value is not None:
        return value, 0, ""
    return np.nan, 0, classify_text(s)


def parse_values(
    raw: pd.Series, censored_below: str = "half"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised: (value float64, censored int8, kind object array; '' where numeric).

    ``kind`` is '' exactly where ``value`` is finite, so ``~np.isfinite(value)`` is a cheap
    stand-in for ``kind != ''``. Text is parsed once per distinct text (lab values repeat a
    lot: millions of cells hold tens of thousands of distinct texts)."""
    n = len(raw)
    if pd.api.types.is_bool_dtype(raw.dtype):
        raw = raw.astype("str")
    if pd.api.types.is_numeric_dtype(raw.dtype):
        censored = np.zeros(n, dtype="int8")
        kind = np.full(n, "", dtype=object)
        value = np.array(pd.to_numeric(raw, errors="coerce"), dtype="float64")
        bad = ~np.isfinite(value)
        if bad.any():
            kind[bad] = np.where(np.isnan(value[bad]), "empty", "placeholder")
            value[bad] = np.nan
        return value, censored, kind
    text = raw.astype("str").fillna("")
    codes, uniques = pd.factorize(text)
    u_val, u_cens, u_kind = _parse_distinct(pd.Series(uniques), censored_below)
    if len(codes) and codes.min() < 0:  # cannot happen after fillna; kept for safety
        codes = np.where(codes < 0, len(u_val), codes)
        u_val, u_cens = np.append(u_val, np.nan), np.append(u_cens, 0).astype("int8")
        u_kind = np.append(u_kind, "empty").astype(object)
    return u_val[codes], u_cens[codes], u_kind[codes]


def _parse_distinct(text: pd.Series, censored_below: str):
    """(value, censored, kind) of each distinct text: pandas' parser first, the text parser
    for what it cannot read (or reads as NaN/inf)."""
    value = np.array(pd.to_numeric(text, errors="coerce"), dtype="float64")
    censored = np.zeros(len(value), dtype="int8")
    kind = np.full(len(value), "", dtype=object)
    bad = np.flatnonzero(~np.isfinite(value))
    if bad.size:
        parsed = [parse_text_value(u, censored_below) for u in text.iloc[bad]]
        value[bad] = np.array([p[0] for p in parsed], dtype="float64")
        censored[bad] = np.array([p[1] for p in parsed], dtype="int8")
        kind[bad] = np.array([p[2] for p in parsed], dtype=object)
    return value, censored, kind


# --- codes and sorting (loading millions of rows) -------------------------------------
def unique_small(codes: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)`` for non-negative codes below ``bound``,
    without sorting (a lookup table instead)."""
    present = np.zeros(bound + 1, dtype=bool)
    present[codes] = True
    uniq = np.flatnonzero(present)
    lookup = np.zeros(bound + 1, dtype=np.int64)
    lookup[uniq] = np.arange(len(uniq))
    return uniq, lookup[codes]


def sort_order(p_rank, h, v_rank, src) -> np.ndarray:
    """``np.lexsort((src, v_rank, h, p_rank))``; input files usually come sorted by patient
    and hours already, which is checked first (then only ties of hours need ordering)."""
    m = len(h)
    if m < 2:
        return np.arange(m)
    same_p = p_rank[1:] == p_rank[:-1]
    by_ph = (p_rank[1:] > p_rank[:-1]) | (same_p & (h[1:] >= h[:-1]))
    if not by_ph.all():
        return np.lexsort((src, v_rank, h, p_rank))
    tie = same_p & (h[1:] == h[:-1])
    ok = ~tie | (v_rank[1:] > v_rank[:-1]) | ((v_rank[1:] == v_rank[:-1]) & (src[1:] > src[:-1]))
    if ok.all():
        return np.arange(m)
    # sorted by (patient, hours): order within each run of equal (patient, hours) only
    run = np.cumsum(np.append(True, ~tie)).astype(np.int64)
    nv = int(v_rank.max()) + 1
    ns = int(src.max()) + 1
    if float(run[-1]) * nv * ns < 2**62:
        return np.argsort((run * nv + v_rank) * ns + src, kind="stable")
    return np.lexsort((src, v_rank, run))


# --- times ------------------------------------------------------------------------------
EARLIEST = pd.Timestamp("1900-01-01", tz="UTC")
_NS_PER_HOUR = 3_600_000_000_000
#: relative times beyond this many hours (about 100 years) are rejected
MAX_ABS_HOURS = 876_000.0


def latest_plausible() -> pd.Timestamp:
    """Times after this (one year from now) are 'in the future' and rejected."""
    return pd.Timestamp(datetime.now(UTC) + timedelta(days=366))


def parse_times(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 texts (naive = UTC) or datetimes -> (int64 ns since epoch, problem object
    array: '' ok, 'empty', 'unparseable', 'before 1900', 'in the future')."""
    n = len(raw)
    problem = np.full(n, "", dtype=object)
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        ts = raw if isinstance(raw.dtype, pd.DatetimeTZDtype) else raw.dt.tz_localize("UTC")
        ts = ts.dt.tz_convert("UTC")
        empty = ts.isna().to_numpy()
    else:
        text = raw.astype("str").fillna("").str.strip()
        empty = (text == "").to_numpy()
        ts = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        problem[ts.isna().to_numpy() & ~empty] = "unparseable"
    problem[empty] = "empty"
    ok = ts.notna().to_numpy()
    early = ok & (ts < EARLIEST).to_numpy()
    late = ok & (ts > latest_plausible()).to_numpy()
    problem[early] = "before 1900"
    problem[late] = "in the future"
    good = ok & ~early & ~late
    ns = np.full(n, np.iinfo("int64").min, dtype="int64")
    ns[good] = ts[good].astype("datetime64[ns, UTC]").array.asi8
    return ns, problem


#: what :func:`parse_time` and the data's time columns accept, for error messages
ISO_8601_FORMS = (
    "ISO 8601: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], optionally with Z or +HH:MM "
    "(no offset = UTC), e.g. 2024-02-03T14:30"
)


def parse_time(value, what: str = "time") -> pd.Timestamp:
    """One time, read exactly as the data's time columns are (:func:`parse_times`): ISO 8601
    text (naive = UTC) or a datetime. Day/month text such as ``03/02/2024`` is ambiguous and
    rejected. Raises :class:`~crs_ml.errors.InputError` naming the accepted forms."""
    if isinstance(value, pd.Timestamp | datetime | np.datetime64):
        raw = pd.Series(pd.DatetimeIndex([pd.Timestamp(value)]))
    else:
        raw = pd.Series([str(value)], dtype=object)
    ns, problem = parse_times(raw)
    if problem[0] == "":
        return pd.Timestamp(int(ns[0]), tz="UTC")
    text = str(value).strip()
    dmy = re.match(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b", text)
    why = "is day/month text, which is ambiguous (03/02/2024: 3 February or 2 March?)"
    why = why if dmy else "is not valid"
    if problem[0] in ("before 1900", "in the future"):
        why = f"is {problem[0]}"
    raise InputError(f"{what} '{value}' {why}: give {ISO_8601_FORMS}")


#: problem texts of :func:`hour_problem_codes` (code = position)
HOUR_PROBLEMS = np.array(["", "empty", "unparseable", "implausible"], dtype=object)


def hour_problem_codes(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Relative hours -> (float64, int8 code into :data:`HOUR_PROBLEMS`); NaN unless code 0."""
    value, censored, kind = parse_values(raw)
    code = np.zeros(len(value), dtype="int8")
    bad = np.flatnonzero(~np.isfinite(value) | (censored != 0))
    if bad.size:
        code[bad] = np.where(kind[bad] == "empty", 1, 2)
    with np.errstate(invalid="ignore"):
        code[(code == 0) & (np.abs(value) > MAX_ABS_HOURS)] = 3
    value = np.where(code == 0, value, np.nan)
    return value, code


def parse_hours(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Relative hours -> (float64, problem array as in :func:`parse_times`)."""
    value, code = hour_problem_codes(raw)
    return value, HOUR_PROBLEMS[code]


def hours_since(ns: np.ndarray, infusion_ns: np.ndarray) -> np.ndarray:
    """Hours between absolute times and infusion times (int64 ns; NaT sentinel -> NaN)."""
    nat = np.iinfo("int64").min
    out = (ns - infusion_ns).astype("float64") / _NS_PER_HOUR
    out[(ns == nat) | (infusion_ns == nat)] = np.nan
    return out


# --- categorical vocabularies ------------------------------------------------------------
def _vocab(mapping: dict[str, tuple[str, ...]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for canonical, aliases in mapping.items():
        for text in (canonical, *aliases):
            out[name_key(text)] = canonical
    return out


PRODUCT_VOCAB = _vocab({
    "axi-cel": ("Yescarta", "axicabtagene ciloleucel", "axicabtagene"),
    "tisa-cel": ("Kymriah", "tisagenlecleucel"),
    "liso-cel": ("Breyanzi", "lisocabtagene maraleucel", "lisocabtagene"),
    "brexu-cel": ("Tecartus", "brexucabtagene autoleucel", "brexucabtagene", "KTE-X19"),
    "ide-cel": ("Abecma", "idecabtagene vicleucel", "idecabtagene", "bb2121"),
    "cilta-cel": ("Carvykti", "ciltacabtagene autoleucel", "ciltacabtagene", "JNJ-4528"),
    "other": (),
})  # fmt: skip
SEX_VOCAB = _vocab({
    "F": ("female", "woman", "w", "f"), "M": ("male", "man", "m"),
    "U": ("unknown", "u", "other", "x", "diverse", "not reported"),
})  # fmt: skip
DISEASE_VOCAB = _vocab({
    "LBCL": ("DLBCL", "large B-cell lymphoma", "diffuse large B-cell lymphoma", "PMBCL",
             "HGBCL", "tFL", "transformed follicular lymphoma"),
    "B-ALL": ("ALL", "acute lymphoblastic leukemia", "acute lymphoblastic leukaemia",
              "B-cell ALL"),
    "MCL": ("mantle cell lymphoma",),
    "MM": ("multiple myeloma", "myeloma", "RRMM"),
    "FL": ("follicular lymphoma",),
    "other": (),
})  # fmt: skip
EVENT_VOCAB = _vocab({
    "vasopressor": ("pressor", "pressors", "vasopressors", "norepinephrine", "noradrenaline",
                    "epinephrine", "adrenaline", "phenylephrine", "dopamine"),
    "vasopressin": ("AVP",),
    "oxygen_low_flow": ("nasal cannula", "low flow oxygen", "low-flow oxygen", "low flow",
                        "blow-by", "O2 low flow"),
    "oxygen_high_flow": ("HFNC", "high flow nasal cannula", "high flow oxygen", "high flow",
                         "facemask", "face mask", "non-rebreather", "venturi", "O2 high flow"),
    "positive_pressure": ("BiPAP", "CPAP", "intubation", "NIV", "mechanical ventilation",
                          "invasive ventilation", "ventilation", "intubated"),
    "tocilizumab": ("Actemra", "RoActemra", "toci"),
    "corticosteroid": ("dexamethasone", "methylprednisolone", "steroid", "steroids",
                       "corticosteroids", "hydrocortisone", "prednisone", "prednisolone",
                       "dex", "solu-medrol"),
    "anakinra": ("Kineret",),
    "antipyretic": ("antipyretics", "acetaminophen", "paracetamol", "Tylenol", "ibuprofen",
                    "metamizole"),
    "icu_admission": ("ICU", "ICU admission", "ICU transfer", "intensive care"),
    "death": ("died", "deceased", "dead", "exitus"),
})  # fmt: skip


def normalise_category(raw: pd.Series, vocab: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(canonical object array with None for empty/unknown, unknown bool mask); vectorised
    over distinct values."""
    text = raw.astype("str").fillna("")
    codes, uniques = pd.factorize(text)
    keys = [name_key(u) for u in uniques]
    canon = np.array([vocab.get(k) if k else None for k in keys] + [None], dtype=object)
    unknown_u = np.array([bool(k) and k not in vocab for k in keys] + [False], dtype=bool)
    return canon[codes], unknown_u[codes]
