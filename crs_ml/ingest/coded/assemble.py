"""Coded records (one row per coded fact, from MEDS or FHIR) into the contract tables, then the
ordinary load (:func:`crs_ml.ingest.load_frames`), so the result is the same :class:`Cohort`.

A reader hands over a :class:`CodedSource`: ``rows`` (subject, time, end_time, code, value,
unit, detail, site, file, row; ``time_problem`` says why a time is unusable or assumed) and
``persons`` (subject, sex, birth). The code mappings (:mod:`crs_ml.ingest.codes`) say what each
code is: a catalogue variable, an event, a CAR-T infusion (with its product, or none for a
generic infusion procedure), a disease, a CRS grade, a death or the end of follow-up.

Rules (the README's MEDS and FHIR sections document them for users):

- Episodes: each CAR-T infusion record starts one episode (``patient_id``); records of one
  subject within ``data.infusion_merge_h`` of each other are one infusion (a procedure and a
  drug record of the same bag). The first episode's ``patient_id`` is the subject's id, later
  ones ``<subject>-2``, ``<subject>-3`` in time order (as the OMOP adapter names them);
  ``person_id`` is the subject.
- A record belongs to the latest infusion at or before its time + ``data.history_h``, so a
  record up to that many hours before a re-infusion is that episode's baseline; records more
  than ``history_h`` before a subject's first infusion are not read (counted, info).
- A subject without any infusion record is left out (error, with its id and row count); an
  infusion record without a product code gives product ``other`` (warning, with its code).
- Codes the mappings do not know are left out and counted by code (warning); records without
  a usable time are rejected (error, listed with file and row); times without a time zone are
  read as UTC (warning, or info for MEDS, whose standard time type has no zone).
- Patients: age in completed years at infusion from the birth date; sex from the person;
  disease from the latest disease code at or before the infusion; site from the infusion
  record. Outcomes (only when the source has CRS grade codes): the episode's highest grade,
  the first time of a grade >= 3 code, the end of follow-up and the death.

Rejected rows and the problems' examples name the source file and its row (MEDS) or line
(FHIR NDJSON), not the intermediate contract tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort
from crs_ml.config import DataConfig
from crs_ml.ingest.problems import MAX_EXAMPLES, Problem, TableSummary

#: columns of :attr:`CodedSource.rows`
ROW_COLUMNS = (
    "subject", "time", "time_problem", "end_time", "code", "value", "unit", "detail", "site",
    "file", "row",
)  # fmt: skip
#: columns of :attr:`CodedSource.persons`
PERSON_COLUMNS = ("subject", "sex", "birth", "file", "row")
#: kinds of code (what :func:`classify_codes` returns), "" = not mapped
KINDS = ("variable", "event", "infusion", "disease", "crs_grade", "death", "followup_end")
NS_PER_HOUR = 3_600_000_000_000


@dataclass
class CodedSource:
    """What a reader of a coded format hands to :func:`coded_cohort`."""

    format: str  #: "MEDS" or "FHIR", for messages
    source: str  #: the path read
    rows: pd.DataFrame  #: ROW_COLUMNS; time, end_time datetime64[ns, UTC]
    persons: pd.DataFrame  #: PERSON_COLUMNS; birth datetime64[ns, UTC]
    problems: list[Problem] = field(default_factory=list)  #: the reader's own findings
    #: records read in total (before any filter): the first line of the check report's tables
    rows_read: int = 0
    #: codes the reader already found unmapped and did not materialise: code, n, file, row
    unmapped: pd.DataFrame | None = None


def _utc(times: pd.Series) -> pd.Series:
    """UTC times with a fresh RangeIndex (no trip through Python objects)."""
    return times.reset_index(drop=True).astype("datetime64[ns, UTC]")


def _ns(times: pd.Series) -> np.ndarray:
    """int64 ns since the epoch of UTC times (no NaT expected)."""
    return pd.DatetimeIndex(times).asi8


def _examples(rows: pd.DataFrame, column: str, values=None) -> list[dict]:
    head = rows.head(MAX_EXAMPLES)
    vals = head[column] if values is None else pd.Series(values).head(MAX_EXAMPLES)
    return [
        {"file": str(f), "row": int(r), "column": column, "value": str(v)}
        for f, r, v in zip(head["file"], head["row"], vals, strict=True)
    ]


def _counts(labels: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.value_counts().items()}


class _Problems:
    def __init__(self, table: str):
        self.table = table
        self.items: list[Problem] = []
        self.rejected: list[pd.DataFrame] = []

    def add(self, code, severity, message, count, examples=None, details=None) -> None:
        if count > 0:
            self.items.append(
                Problem(self.table, code, severity, message, int(count), examples or [],
                        details or {})
            )  # fmt: skip

    def reject(self, rows: pd.DataFrame, column: str, reasons) -> None:
        if len(rows):
            self.rejected.append(
                pd.DataFrame(
                    {
                        "file": rows["file"].to_numpy(dtype=object),
                        "row": rows["row"].to_numpy(dtype="int64"),
                        "column": column,
                        "reason": np.asarray(reasons, dtype=object),
                        "patient_id": rows["subject"].to_numpy(dtype=object),
                    }
                )
            )


def _infusions(rows: pd.DataFrame, merge_h: float) -> pd.DataFrame:
    """One row per infusion episode from the infusion records (sorted by subject, time)."""
    inf = rows.sort_values(["subject", "time", "row"], kind="stable")
    t = _ns(inf["time"])
    subject = inf["subject"].to_numpy(dtype=object)
    new_subject = np.r_[True, subject[1:] != subject[:-1]]
    gap = np.r_[np.inf, np.diff(t) / NS_PER_HOUR]
    start = new_subject | (gap > merge_h)
    episode = np.cumsum(start) - 1
    inf = inf.assign(_episode=episode, _has_product=inf["target"] != "")
    # per episode: first record's time, site and file/row; product of the first record naming one
    first = inf[start]
    named = inf[inf["_has_product"]].drop_duplicates("_episode")
    products = inf[inf["_has_product"]].groupby("_episode")["target"].nunique()
    out = pd.DataFrame(
        {
            "subject": first["subject"].to_numpy(dtype=object),
            "infusion_time": _utc(first["time"]),
            "site": first["site"].to_numpy(dtype=object),
            "file": first["file"].to_numpy(dtype=object),
            "row": first["row"].to_numpy(dtype="int64"),
            "code": first["code"].to_numpy(dtype=object),
        }
    )
    out["product"] = (
        pd.Series(named["target"].to_numpy(dtype=object), index=named["_episode"].to_numpy())
        .reindex(np.arange(len(out)))
        .fillna("")
        .to_numpy(dtype=object)
    )
    out["n_products"] = products.reindex(np.arange(len(out))).fillna(0).to_numpy(dtype="int64")
    k = out.groupby("subject", sort=False).cumcount().to_numpy() + 1
    out["patient_id"] = np.where(
        k > 1, out["subject"].astype(str) + "-" + k.astype(str), out["subject"].astype(str)
    )
    return out


def _assign_episodes(rows: pd.DataFrame, episodes: pd.DataFrame, history_h: float) -> np.ndarray:
    """Index into ``episodes`` of each row's episode (-1: subject without infusion, -2: too
    long before the first infusion). ``episodes`` is sorted by subject, time."""
    out = np.full(len(rows), -1, dtype=np.int64)
    if len(rows) == 0 or len(episodes) == 0:
        return out
    left = pd.DataFrame(
        {
            "subject": rows["subject"].to_numpy(dtype=object),
            "_t": _ns(rows["time"]) + int(history_h * NS_PER_HOUR),
            "_i": np.arange(len(rows)),
        }
    ).sort_values("_t", kind="stable")
    right = pd.DataFrame(
        {
            "subject": episodes["subject"].to_numpy(dtype=object),
            "_t": _ns(episodes["infusion_time"]),
            "_ep": np.arange(len(episodes)),
        }
    ).sort_values("_t", kind="stable")
    found = pd.merge_asof(left, right, on="_t", by="subject", direction="backward")
    ep = found["_ep"].to_numpy(dtype="float64")
    known = found["subject"].isin(pd.unique(right["subject"])).to_numpy()
    out[found["_i"].to_numpy()] = np.where(
        np.isnan(ep), np.where(known, -2, -1), np.nan_to_num(ep, nan=-1)
    ).astype(np.int64)
    return out


def _completed_years(birth: pd.Series, at: pd.Series) -> np.ndarray:
    b, a = birth.dt, at.dt
    years = a.year - b.year - ((a.month * 100 + a.day) < (b.month * 100 + b.day)).astype(int)
    return years.to_numpy(dtype="float64", na_value=np.nan)


def classify_codes(codes: pd.Series, entries=None) -> tuple[np.ndarray, np.ndarray]:
    """(kind, target) of every code through the shared code mappings (``entries``: the
    site's ``data.codes``)."""
    from crs_ml.ingest.coded.mapping import classify

    uniq, inverse = np.unique(codes.to_numpy(dtype=object).astype(str), return_inverse=True)
    kinds, targets = classify(uniq, entries)
    return np.asarray(kinds, dtype=object)[inverse], np.asarray(targets, dtype=object)[inverse]


@dataclass
class ContractFrames:
    """The contract tables of a coded source, where each row came from (file, row per
    table), and the source's own problems and rejected rows."""

    frames: dict[str, pd.DataFrame]
    origins: dict[str, pd.DataFrame]
    problems: list[Problem]
    rejected: list[pd.DataFrame]


def coded_frames(src: CodedSource, options: DataConfig | None = None) -> ContractFrames:
    """Map the codes, build the episodes and the contract tables (not yet normalised)."""
    from crs_ml.errors import InputError

    opts = options or DataConfig()
    fmt = src.format
    prob = _Problems(fmt)
    prob.items.extend(src.problems)
    rows = src.rows.reset_index(drop=True)
    kind, target = classify_codes(rows["code"], opts.codes)
    rows = rows.assign(kind=kind, target=target)

    un = rows[rows["kind"] == ""]
    counted = un.groupby("code", sort=False).agg(
        n=("row", "size"), file=("file", "first"), row=("row", "first")
    )
    if src.unmapped is not None and len(src.unmapped):
        more = src.unmapped.groupby("code", sort=False).agg(
            n=("n", "sum"), file=("file", "first"), row=("row", "first")
        )
        counted = (
            pd.concat([counted, more])
            .groupby(level=0, sort=False)
            .agg(n=("n", "sum"), file=("file", "first"), row=("row", "first"))
        )
    counted = counted.sort_values("n", ascending=False, kind="stable").reset_index()
    prob.add(
        "unmapped_codes",
        "warning",
        "codes not in the code mappings: left out (a site adds its own codes in "
        "data.code_mappings)",
        int(counted["n"].sum()),
        _examples(counted, "code"),
        dict(zip(counted["code"].astype(str), counted["n"].astype(int), strict=True)),
    )
    rows = rows[rows["kind"] != ""]

    tp = rows["time_problem"].to_numpy(dtype=object)
    bad = (tp != "") & (tp != "no time zone")
    bad_rows = rows[bad]
    prob.add(
        "bad_time",
        "error",
        "records without a usable time (missing, unparseable, or a date without a time of "
        "day): rejected",
        len(bad_rows),
        _examples(bad_rows, "time", bad_rows["time_problem"]),
        _counts(bad_rows["time_problem"]),
    )
    prob.reject(bad_rows, "time", "time " + bad_rows["time_problem"].astype(str))
    naive = rows[tp == "no time zone"]
    prob.add(
        "time_without_zone",
        "warning",
        "times without a time zone: read as UTC (hours since infusion are right when every "
        "time of a patient is on the same clock)",
        len(naive),
        _examples(naive, "time"),
        _counts(naive["code"]),
    )
    rows = rows[~bad]

    is_inf = (rows["kind"] == "infusion").to_numpy()
    episodes = _infusions(rows[is_inf], opts.infusion_merge_h)
    rows = rows[~is_inf].reset_index(drop=True)
    if len(episodes) == 0:
        raise InputError(
            f"no CAR-T infusion record in the {fmt} data: every episode starts at one (map "
            "the site's infusion codes in data.code_mappings)",
            file=src.source,
        )
    no_product = episodes[episodes["product"] == ""]
    prob.add(
        "infusion_without_product",
        "warning",
        "infusion records naming no CAR-T product (a generic infusion code): product set to "
        "'other'",
        len(no_product),
        _examples(no_product, "code"),
        _counts(no_product["code"]),
    )
    several = episodes[episodes["n_products"] > 1]
    prob.add(
        "conflicting_products",
        "warning",
        "infusion records of one infusion name different products: the first is used",
        len(several),
        _examples(several, "code"),
    )

    diseases = _diseases(rows[rows["kind"] == "disease"], episodes)
    rows = rows[rows["kind"] != "disease"].reset_index(drop=True)
    ep = _assign_episodes(rows, episodes, opts.history_h)
    orphan = rows[ep == -1]
    prob.add(
        "no_infusion_record",
        "error",
        "subjects with records but no CAR-T infusion record: left out (their records are "
        "counted here by subject)",
        orphan["subject"].nunique(),
        _examples(orphan.drop_duplicates("subject"), "subject"),
        _counts(orphan["subject"]),
    )
    early = rows[ep == -2]
    prob.add(
        "before_history",
        "info",
        f"records more than data.history_h = {opts.history_h:g} h before the subject's first "
        "infusion: not read",
        len(early),
        details=_counts(early["kind"]),
    )
    keep = ep >= 0
    rows = rows[keep].assign(
        patient_id=episodes["patient_id"].to_numpy(dtype=object)[ep[keep]], _ep=ep[keep]
    )

    # a grade record rejected for its time leaves its subject's grade unknown, not 0
    lost_grade = set(bad_rows.loc[bad_rows["kind"] == "crs_grade", "subject"])
    unknown = episodes["subject"].isin(lost_grade).to_numpy()
    frames, origins = _contract_frames(rows, episodes, src.persons, diseases, prob, unknown)
    return ContractFrames(frames, origins, prob.items, prob.rejected)


def coded_cohort(src: CodedSource, options: DataConfig | None = None) -> Cohort:
    """The Cohort of a coded source: :func:`coded_frames` loaded with
    :func:`crs_ml.ingest.load_frames`, rows and examples pointing at the source files, and the
    source's own problems in the check report."""
    from crs_ml.errors import InputError
    from crs_ml.ingest import load_frames

    opts = options or DataConfig()
    fmt = src.format
    built = coded_frames(src, opts)
    frames, origins = built.frames, built.origins
    names = {t: f"{fmt} {t}" for t in frames}
    try:
        cohort = load_frames(frames, opts, file_names=names)
    except InputError as exc:
        raise InputError(f"{fmt} data {src.source}: {exc}", file=src.source) from None
    _point_at_sources(cohort, names, origins)
    report = cohort.report
    report.source = src.source
    used = sum(len(origins[t]) for t in ("patients", "observations", "events") if t in origins)
    rejected = sum(len(r) for r in built.rejected)
    summary = TableSummary(fmt, src.source, src.rows_read, used, rejected)
    report.tables = {fmt: summary, **report.tables}
    report.problems.extend(built.problems)
    report.sort()
    if built.rejected:
        cohort.rejected = pd.concat([cohort.rejected, *built.rejected], ignore_index=True)
    cohort.source = src.source
    return cohort


def _diseases(dis: pd.DataFrame, episodes: pd.DataFrame) -> np.ndarray:
    """Per episode the target of the subject's latest disease record at or before the
    infusion (None when there is none), however long before."""
    disease = np.full(len(episodes), None, dtype=object)
    if len(dis) == 0:
        return disease
    left = pd.DataFrame(
        {
            "subject": episodes["subject"].to_numpy(dtype=object),
            "_t": _ns(episodes["infusion_time"]),
            "_i": np.arange(len(episodes)),
        }
    ).sort_values("_t", kind="stable")
    right = pd.DataFrame(
        {
            "subject": dis["subject"].to_numpy(dtype=object),
            "_t": _ns(dis["time"]),
            "_d": dis["target"].to_numpy(dtype=object),
        }
    ).sort_values("_t", kind="stable")
    found = pd.merge_asof(left, right, on="_t", by="subject", direction="backward")
    disease[found["_i"].to_numpy()] = found["_d"].astype(object).where(found["_d"].notna(), None)
    return disease


def _contract_frames(
    rows: pd.DataFrame,
    episodes: pd.DataFrame,
    persons: pd.DataFrame,
    disease: np.ndarray,
    prob: _Problems,
    grade_unknown: np.ndarray,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The contract tables and, per table, the (file, row) each of their rows came from.
    ``grade_unknown``: episodes whose grade record was rejected (no outcome row)."""
    person = persons.drop_duplicates("subject", keep="first").set_index("subject")
    subj = episodes["subject"]
    birth = person["birth"].reindex(subj.to_numpy()).reset_index(drop=True)
    sex = person["sex"].reindex(subj.to_numpy()).fillna("U").to_numpy(dtype=object)
    infusion = _utc(episodes["infusion_time"])
    age = _completed_years(pd.Series(birth, dtype="datetime64[ns, UTC]"), infusion)
    no_birth = int(np.isnan(age).sum())
    prob.add(
        "no_birth_date", "info", "episodes whose person has no birth date: age missing",
        no_birth,
    )  # fmt: skip
    product = np.where(episodes["product"] == "", "other", episodes["product"])
    patients = pd.DataFrame(
        {
            "patient_id": episodes["patient_id"].to_numpy(dtype=object),
            "person_id": subj.astype(str).to_numpy(dtype=object),
            "infusion_time": infusion,
            "product": product.astype(object),
            "age_years": age,
            "sex": sex,
            "disease": disease,
            "site": episodes["site"].to_numpy(dtype=object),
        }
    )
    origins = {"patients": episodes[["file", "row"]]}

    obs = rows[rows["kind"] == "variable"]
    observations = pd.DataFrame(
        {
            "patient_id": obs["patient_id"].to_numpy(dtype=object),
            "time": _utc(obs["time"]),
            "variable": obs["target"].to_numpy(dtype=object),
            "value": obs["value"].to_numpy(dtype=object),
            "unit": obs["unit"].to_numpy(dtype=object),
        }
    )
    observations["time"] = _utc(obs["time"])
    origins["observations"] = obs[["file", "row"]]

    ev = rows[rows["kind"].isin(["event", "death"])]
    events = pd.DataFrame(
        {
            "patient_id": ev["patient_id"].to_numpy(dtype=object),
            "time": _utc(ev["time"]),
            "end_time": _utc(ev["end_time"]),
            "event": np.where(ev["kind"] == "death", "death", ev["target"]).astype(object),
            "detail": ev["detail"].to_numpy(dtype=object),
        }
    )
    frames = {"patients": patients, "observations": observations, "events": events}
    origins["events"] = ev[["file", "row"]]

    grades = rows[rows["kind"] == "crs_grade"]
    if len(grades) or grade_unknown.any():
        outcomes, graded = _outcomes(rows, grades, episodes, prob, grade_unknown)
        frames["outcomes"] = outcomes
        origins["outcomes"] = episodes[["file", "row"]][graded].reset_index(drop=True)
    return frames, origins


def _outcomes(rows: pd.DataFrame, grades: pd.DataFrame, episodes: pd.DataFrame,
              prob: _Problems, unknown: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:  # fmt: skip
    """The outcomes of the episodes (and the mask of those with an outcome row). A CRS is
    recorded when it happens, so an episode without a grade record is grade 0; one with a
    grade record whose value is not a whole number 0-5, or whose record was rejected
    (``unknown``), has an unknown grade: reported, and no outcome row (grade 0 would be made
    up)."""
    n = len(episodes)
    idx = np.arange(n)
    g = grades.assign(_g=pd.to_numeric(grades["value"], errors="coerce"))
    bad = ~g["_g"].isin(range(6))
    unreadable = np.isin(idx, g.loc[bad, "_ep"].to_numpy())
    prob.add(
        "bad_crs_grade", "warning",
        "CRS grade records whose value is not a whole number 0-5: the grade of their "
        "episodes is unknown, no outcome row (training and validation need one)",
        int(bad.sum()), _examples(g[bad], "value"),
    )  # fmt: skip
    prob.add(
        "crs_grade_rejected", "warning",
        "episodes whose CRS grade record was rejected (see bad_time): grade unknown, no "
        "outcome row", int((unknown & ~unreadable).sum()),
        _examples(episodes[unknown & ~unreadable], "patient_id"),
    )  # fmt: skip
    g = g[~bad]
    graded = ~(unreadable | unknown)
    max_grade = g.groupby("_ep")["_g"].max().reindex(idx).fillna(0).astype("int64")
    g3 = g[g["_g"] >= 3].groupby("_ep")["time"].min().reindex(idx)
    label = g.drop_duplicates("_ep").set_index("_ep")["detail"].reindex(idx)
    named = pd.unique(g["detail"].dropna().astype(str).str.strip())
    named = [t for t in named if t]
    if len(named) == 1:  # one grading definition named in the data: the cohort's
        label = pd.Series(named[0], index=idx)

    def first_time(kind: str) -> pd.Series:
        r = rows[rows["kind"] == kind]
        return r.groupby("_ep")["time"].min().reindex(idx)

    out = pd.DataFrame(
        {
            "patient_id": episodes["patient_id"].to_numpy(dtype=object),
            "crs_max_grade": max_grade.to_numpy(),
            "grade3_time": _utc(g3),
            "followup_end_time": _utc(first_time("followup_end")),
            "death_time": _utc(first_time("death")),
            "label_definition": label.fillna("").to_numpy(dtype=object),
        }
    )
    return out[graded].reset_index(drop=True), graded


def _point_at_sources(cohort: Cohort, names: dict[str, str], origins: dict) -> None:
    """Rewrite (contract table, row) in rejected rows, row numbers and examples to the source
    file and row the contract row came from."""
    by_name = {names[t]: origins[t] for t in origins}

    def lookup(name: str, row: int) -> tuple[str, int]:
        o = by_name.get(name)
        if o is None or not 1 <= row <= len(o):
            return name, row
        return str(o["file"].iat[row - 1]), int(o["row"].iat[row - 1])

    rej = cohort.rejected
    if len(rej):
        pairs = [lookup(f, int(r)) for f, r in zip(rej["file"], rej["row"], strict=True)]
        rej = rej.copy()
        rej["file"] = [p[0] for p in pairs]
        rej["row"] = np.array([p[1] for p in pairs], dtype="int64")
        cohort.rejected = rej
    for p in cohort.report.problems:
        for e in p.examples:
            if e.get("file") in by_name and e.get("row") is not None:
                e["file"], e["row"] = lookup(e["file"], int(e["row"]))
    for table in ("observations", "events"):
        frame = getattr(cohort, table)
        o = origins.get(table)
        if o is not None and len(frame):
            src = o["row"].to_numpy(dtype="int64")
            frame["source_row"] = src[frame["source_row"].to_numpy(dtype="int64") - 1]
