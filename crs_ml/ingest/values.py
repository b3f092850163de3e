"""Parsing of cell values: numbers, censored results, times, and categorical vocabularies.

Columns arrive as polars Series (pandas Series are accepted too). Texts are parsed once per
distinct text (polars finds the distinct texts and maps them back, in native threads).
Numbers: plain decimal numbers (``-12``, ``3.5e2``) are cast by polars; only the other
distinct texts go through the text parser, which accepts

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
import polars as pl

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
    if isinstance(raw, pl.Series):
        return _parse_values_pl(raw, censored_below)
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


#: the characters Python's ``str.strip()`` removes (polars' default set differs in a few
#: control characters), so texts are cleaned exactly as before
PY_WHITESPACE = "".join(
    chr(c)
    for c in (*range(0x09, 0x0E), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
              0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
)  # fmt: skip


#: text columns up to this many rows are handled in plain Python (one patient's records):
#: each polars call on a column costs a query's fixed overhead, which short columns do not
#: earn back
SMALL = 64


def strip_text(s: pl.Series) -> pl.Series:
    """Text with surrounding whitespace removed, as Python's ``str.strip()``."""
    if len(s) <= SMALL and s.dtype == pl.String:
        texts = [None if t is None else t.strip() for t in s.to_list()]
        return pl.Series(s.name, texts, dtype=pl.String)
    return s.str.strip_chars(PY_WHITESPACE)


def factorize(s: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """``pd.factorize`` in polars: (int64 code of each row, the distinct values in order of
    first appearance). Nulls are a value of their own."""
    if len(s) <= SMALL and s.dtype == pl.String:
        first: dict[str | None, int] = {}
        codes = [first.setdefault(t, len(first)) for t in s.to_list()]
        return np.array(codes, dtype=np.int64), pl.Series(s.name, list(first), dtype=pl.String)
    uniques = s.unique(maintain_order=True)
    if len(uniques) == 1:
        return np.zeros(len(s), dtype=np.int64), uniques
    table = uniques.to_frame("k").with_row_index("code")
    codes = s.to_frame("k").join(table, on="k", how="left", maintain_order="left", nulls_equal=True)
    return codes.get_column("code").cast(pl.Int64).to_numpy(), uniques


def pandas_text(s: pl.Series) -> pl.Series:
    """The column as text exactly as pandas' ``astype("str").fillna("")`` of the same data
    (text columns directly; numbers and other types, rare in text columns, through pandas)."""
    if s.dtype == pl.String:
        return s.fill_null("") if s.null_count() else s
    if s.dtype == pl.Null or len(s) == 0:
        return pl.Series(s.name, [""] * len(s), pl.String)
    text = s.to_pandas().astype("str").fillna("")
    return pl.Series(s.name, text.to_numpy(dtype=object), pl.String)


#: kind texts by code (:func:`value_codes`): 0 a number, then :data:`NON_NUMERIC_KINDS`
KIND_TEXTS = np.array(["", *NON_NUMERIC_KINDS], dtype=object)


def value_codes(raw: pl.Series, censored_below: str = "half"):
    """:func:`parse_values` of a polars column with the kind as an int8 code into
    :data:`KIND_TEXTS`: (value float64, censored int8, kind code int8).

    Text is cast to numbers by polars row by row (native threads); only the texts that
    polars does not read as a finite number (censored results, thousands separators,
    comments, empty cells ...) go through the text parser, once per distinct text. A text
    polars reads as a finite number is read by the text parser as the same number (a plain
    decimal number, correctly rounded by both), which the parity tests check."""
    n = len(raw)
    dt = raw.dtype
    if dt.is_numeric():
        value = raw.cast(pl.Float64).to_numpy().copy()
        censored = np.zeros(n, dtype="int8")
        kind = np.zeros(n, dtype="int8")
        bad = ~np.isfinite(value)
        if bad.any():
            kind[bad] = np.where(np.isnan(value[bad]), 1, 2)  # empty, placeholder
            value[bad] = np.nan
        return value, censored, kind
    text = pandas_text(raw) if dt != pl.Boolean else raw.cast(pl.String).fill_null("")
    return text_value_codes(text, censored_below)


def text_value_codes(text: pl.Series, censored_below: str = "half"):
    """:func:`value_codes` of a text column (no missing values)."""
    number = text.cast(pl.Float64, strict=False)
    value = number.to_numpy().astype("float64", copy=True)  # null -> NaN
    odd = ~np.isfinite(value)  # not read as a finite number (null, NaN or infinite)
    censored = np.zeros(len(text), dtype="int8")
    kind = np.zeros(len(text), dtype="int8")
    if odd.any():
        at = np.flatnonzero(odd)
        u_val, u_cens, u_kind, codes = parse_distinct(text.gather(at), censored_below)
        value[at] = u_val[codes]
        censored[at] = u_cens[codes]
        kind[at] = u_kind[codes]
    return value, censored, kind


_KIND_CODE = {k: i for i, k in enumerate(KIND_TEXTS)}


def parse_distinct(text: pl.Series, censored_below: str):
    """(value, censored, kind code of each distinct text, code of each row) by the text
    parser, run once per distinct text."""
    codes, uniques = factorize(text)
    parsed = [parse_text_value(u, censored_below) for u in uniques.to_list()]
    value = np.array([p[0] for p in parsed], dtype="float64")
    censored = np.array([p[1] for p in parsed], dtype="int8")
    kind = np.array([_KIND_CODE[p[2]] for p in parsed], dtype="int8")
    return value, censored, kind, codes


def _parse_values_pl(raw: pl.Series, censored_below: str):
    value, censored, kind = value_codes(raw, censored_below)
    return value, censored, KIND_TEXTS[kind]


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
    if isinstance(raw, pl.Series):
        ns, code = time_problem_codes(raw)
        return ns, TIME_PROBLEMS[code]
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


#: problem texts of :func:`time_problem_codes` (code = position)
TIME_PROBLEMS = np.array(["", "empty", "unparseable", "before 1900", "in the future"], dtype=object)
#: the usual ISO 8601 shape, converted by polars itself (years 1900-2099, valid clock times);
#: every other text goes through pandas' ISO 8601 parser as before
_ISO_FAST = r"^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?Z?$"


def time_problem_codes(raw: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """:func:`parse_times` of a polars column: (int64 ns since epoch, NaT sentinel unless
    code 0; int8 code into :data:`TIME_PROBLEMS`)."""
    n = len(raw)
    nat = np.iinfo("int64").min
    if isinstance(raw.dtype, pl.Datetime):
        ts = raw
        ts = ts.dt.replace_time_zone("UTC") if ts.dtype.time_zone is None else ts
        us = ts.dt.convert_time_zone("UTC").dt.cast_time_unit("us").to_physical()
        empty = us.is_null().to_numpy()
        us = us.fill_null(0).to_numpy()
        ns = np.full(n, nat, dtype="int64")
        code = np.where(empty, 1, 0).astype("int8")
        _range_codes(us, ~empty, code, ns, 1000)
        return ns, code
    text = strip_text(pandas_text(raw))
    empty = (text == "").to_numpy()
    if empty.all():  # no time given (e.g. a table in relative hours): nothing to parse
        return np.full(n, nat, dtype="int64"), np.ones(n, dtype="int8")
    fast = text.str.contains(_ISO_FAST).to_numpy()
    base = text.str.strip_suffix("Z").str.replace(" ", "T", literal=True)
    seconds = base.str.to_datetime("%Y-%m-%dT%H:%M:%S", time_unit="us", strict=False)
    minutes = base.str.to_datetime("%Y-%m-%dT%H:%M", time_unit="us", strict=False)
    us = seconds.fill_null(minutes).to_physical().fill_null(nat).to_numpy()
    ok = fast & (us != nat)
    code = np.zeros(n, dtype="int8")
    code[fast & ~ok] = 2  # a calendar date that does not exist (2024-02-30)
    ns = np.full(n, nat, dtype="int64")
    _range_codes(us, ok, code, ns, 1000)
    rest = np.flatnonzero(~fast & ~empty)
    if rest.size:
        ns_rest, problem = parse_times(text.gather(rest).to_pandas())
        position = {p: i for i, p in enumerate(TIME_PROBLEMS)}
        code[rest] = [position[p] for p in problem]
        ns[rest] = ns_rest
    code[empty] = 1
    return ns, code


def _range_codes(values, ok, code, ns, to_ns: int) -> None:
    """Codes 3/4 for times before 1900 or in the future; ``ns`` filled for the rest."""
    early_us = EARLIEST.value // to_ns
    late_us = latest_plausible().value // to_ns
    early = ok & (values < early_us)
    late = ok & (values > late_us)
    code[early] = 3
    code[late] = 4
    good = ok & ~early & ~late
    ns[good] = values[good] * to_ns


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
    if isinstance(raw, pl.Series):
        value, censored, kind = value_codes(raw)
        empty = kind == 1
    else:
        value, censored, kind = parse_values(raw)
        empty = kind == "empty"
    code = np.zeros(len(value), dtype="int8")
    bad = np.flatnonzero(~np.isfinite(value) | (censored != 0))
    if bad.size:
        code[bad] = np.where(empty[bad], 1, 2)
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
    if isinstance(raw, pl.Series):
        codes, distinct = factorize(pandas_text(raw))
        uniques = distinct.to_list()
    else:
        codes, uniques = pd.factorize(raw.astype("str").fillna(""))
    keys = [name_key(u) for u in uniques]
    canon = np.array([vocab.get(k) if k else None for k in keys] + [None], dtype=object)
    unknown_u = np.array([bool(k) and k not in vocab for k in keys] + [False], dtype=bool)
    return canon[codes], unknown_u[codes]
