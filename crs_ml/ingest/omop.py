"""Reading an OMOP CDM v5.4 source into the normalised :class:`~crs_ml.cohort.Cohort`.

Sources: a folder of CDM tables (``person.csv`` / ``.csv.gz`` / ``.parquet``, ...; queried in
place by an in-memory DuckDB), a DuckDB database file (opened read-only) or a PostgreSQL
database given as a SQLAlchemy URL (``postgresql://user@host:5432/db``; the session is set
read-only, and the password comes from ``PGPASSWORD`` or ``~/.pgpass``: a URL with a
password is refused). Every query names its columns and filters on the mapped concept ids and
the cohort's persons in SQL: no table is read whole.

What is read (codes from :mod:`crs_ml.ingest.codes`; ids resolved through the source's
``concept``, ``concept_relationship`` ("Maps to") and ``concept_ancestor`` tables when it has
them, else the shipped ids):

- the cohort: persons with a CAR-T infusion record (``procedure_occurrence`` or
  ``drug_exposure`` with a product or CAR-T administration code), or the persons of
  ``data.omop.cohort_definition_id`` in the ``cohort`` table. A person's infusion records
  closer than ``data.infusion_merge_h`` are one infusion episode (one ``patient_id``: the
  ``visit_source_value`` of the infusion's visit when it names one, else the person's
  ``person_source_value`` (or ``person_id``), with ``-2``, ``-3`` ... for later episodes);
- ``person`` (sex, age at infusion from the birth date; ``care_site`` name as the site),
  ``condition_occurrence`` (disease), ``measurement`` and ``observation`` (labs and vitals;
  ``operator_concept_id`` ``<`` / ``>`` give censored values, ``unit_source_value`` or the
  unit concept's code the unit), ``drug_exposure`` (treatments), ``procedure_occurrence`` and
  ``device_exposure`` (oxygen and ventilation), ``visit_occurrence`` (ICU admission),
  ``death``, and ``observation`` records of the CRS grade and loss to follow-up (outcomes).

Rows are assigned to the episode whose infusion is the latest at or before the row's time
plus ``data.omop.baseline_window_h``; older rows (more than that before the person's first
infusion) are not read, and counted, as in the MEDS and FHIR readers. CDM
datetimes carry no time zone: they are read in ``data.omop.time_zone`` and the check report
says so. The contract-shaped tables go through :func:`crs_ml.ingest.load.load_frames`, so every
rule of the contract applies; rejected rows and examples name the OMOP table and its record
id (``measurement_id`` ...) instead of a file row. Also reported: codes of the source's
rows in the read tables that map to nothing the project reads are not counted (that would be a
full-table scan), but mapped concepts the source never uses are listed, and infusion records
without a product, persons of the cohort table without an infusion record, and rows with a
date but no time (rejected: a time of midnight would put results before they were known).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from crs_ml.cohort import Cohort
from crs_ml.config import DataConfig
from crs_ml.errors import InputError
from crs_ml.ingest.codes import Code, CodeMap, code_map, genders, not_systemic, operators
from crs_ml.ingest.load import load_frames
from crs_ml.ingest.problems import MAX_EXAMPLES, Problem

__all__ = ["OMOP_TABLES", "OmopSource", "is_omop_source", "load_omop", "omop_frames"]

#: the CDM tables this adapter reads (others are ignored)
OMOP_TABLES = (
    "person", "measurement", "observation", "drug_exposure", "procedure_occurrence",
    "device_exposure", "visit_occurrence", "condition_occurrence", "death", "care_site",
    "concept", "concept_relationship", "concept_ancestor", "cohort",
)  # fmt: skip
_SUFFIXES = (".parquet", ".csv", ".csv.gz")
_URL = re.compile(r"^postgres(?:ql)?(?:\+\w+)?:/+", re.IGNORECASE)
#: events whose end time is kept (continuous support); boluses keep only their start
CONTINUOUS = ("vasopressor", "vasopressin", "oxygen_low_flow", "oxygen_high_flow",
              "positive_pressure")  # fmt: skip


def fix_url(text: str) -> str:
    """``postgresql:/u@h/db`` (a URL that went through ``pathlib.Path``) -> ``postgresql://...``"""
    m = _URL.match(text)
    return text if m is None else m.group(0).rstrip("/") + "//" + text[m.end() :]


def is_url(source) -> bool:
    return isinstance(source, str | Path) and _URL.match(str(source)) is not None


def is_omop_source(source) -> bool:
    """A PostgreSQL URL, a DuckDB file, or a folder holding a ``person`` table."""
    if source is None or isinstance(source, dict | list | tuple):
        return False
    if is_url(source):
        return True
    p = Path(source)
    if p.is_file():
        return p.suffix.lower() in (".duckdb", ".ddb", ".db")
    return p.is_dir() and any((p / f"person{s}").is_file() for s in _SUFFIXES)


def _literal(value) -> str:
    if isinstance(value, bool | np.bool_):
        raise TypeError("no booleans in SQL lists")
    if isinstance(value, int | np.integer):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def _in(values: Iterable) -> str:
    vals = sorted({v for v in values}, key=str)
    return "(" + ", ".join(_literal(v) for v in vals) + ")" if vals else "(NULL)"


class OmopSource:
    """A read-only connection to the CDM tables: ``query(sql)`` -> DataFrame; table names in
    SQL are written ``{person}`` and expanded to the qualified name."""

    def __init__(self, source, options: DataConfig):
        self.options = options
        self.omop = options.omop
        self.label = str(source)
        self.kind: str
        self._engine = None
        self._conn = None
        if is_url(source):
            self._open_postgres(fix_url(str(source)))
        else:
            p = Path(source)
            if not p.exists():
                raise InputError(f"OMOP source {p} does not exist")
            self._open_duckdb(p)

    # ---- connections ----
    def _open_postgres(self, url_text: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        try:
            url = make_url(url_text)
        except Exception as exc:
            raise InputError(f"not a database URL: {exc}") from None
        if url.password is not None:
            raise InputError(
                "the database URL contains a password: remove it and set PGPASSWORD in the "
                "environment or use ~/.pgpass (a password on a command line or in a config "
                "ends up in shell history, process lists and run logs)"
            )
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        self.label = url.render_as_string(hide_password=True)
        self.kind = "postgresql"
        self._engine = create_engine(url, pool_pre_ping=False)
        try:
            self._conn = self._engine.connect()
            self._conn.exec_driver_sql("SET default_transaction_read_only = on")
            self._conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        except Exception as exc:
            raise InputError(f"cannot connect to {self.label}: {_first_line(exc)}") from None
        self.schema = self.omop.cdm_schema or "public"
        rows = self._conn.exec_driver_sql(
            "SELECT table_schema, table_name FROM information_schema.tables "
            f"WHERE table_schema IN {_in({self.schema, self.omop.results_schema or self.schema})}"
        ).fetchall()
        self.tables = {}
        for schema, name in rows:
            if name in OMOP_TABLES and (name not in self.tables or schema == self.schema):
                self.tables[name] = f'"{schema}"."{name}"'

    def _open_duckdb(self, p: Path) -> None:
        import duckdb

        self.kind = "duckdb" if p.is_file() else "folder"
        self.tables = {}
        if p.is_file():
            try:
                self._conn = duckdb.connect(str(p), read_only=True)
            except Exception as exc:
                raise InputError(f"cannot open DuckDB file {p}: {_first_line(exc)}") from None
            self.schema = self.omop.cdm_schema or "main"
            rows = self._conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall()
            results = self.omop.results_schema or self.schema
            for schema, name in rows:
                if name in OMOP_TABLES and schema in (self.schema, results):
                    if name not in self.tables or schema == self.schema:
                        self.tables[name] = f'"{schema}"."{name}"'
            return
        self._conn = duckdb.connect(":memory:")
        self.schema = "main"
        for name in OMOP_TABLES:
            for suffix in _SUFFIXES:
                f = p / f"{name}{suffix}"
                if f.is_file():
                    path = str(f).replace("'", "''")
                    reader = (
                        f"read_parquet('{path}')"
                        if suffix == ".parquet"
                        else f"read_csv('{path}', header = true, sample_size = -1)"
                    )
                    self._conn.execute(f'CREATE VIEW "{name}" AS SELECT * FROM {reader}')
                    self.tables[name] = f'"{name}"'
                    break

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._engine is not None:
            self._engine.dispose()

    # ---- queries ----
    def has(self, table: str) -> bool:
        return table in self.tables

    def query(self, sql: str) -> pd.DataFrame:
        sql = sql.format(**self.tables)
        try:
            if self.kind == "postgresql":
                return self._copy(sql).to_pandas()
            return self._conn.execute(sql).df()
        except Exception as exc:
            raise InputError(f"OMOP query failed on {self.label}: {_first_line(exc)}") from None

    def _copy(self, sql: str) -> pa.Table:
        """A PostgreSQL query's rows as an Arrow table: ``COPY (query) TO STDOUT`` as CSV,
        parsed by Arrow's multithreaded CSV reader with the column types the server reports
        (no Python object per row or cell)."""
        from pyarrow import csv

        raw = self._conn.connection.dbapi_connection
        with raw.cursor() as cur:
            cur.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0")
            names = [d.name for d in cur.description]
            types = [_ARROW_TYPES.get(d.type_code, pa.string()) for d in cur.description]
            buf = bytearray()
            with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
                for block in copy:
                    buf += block
        schema = pa.schema(list(zip(names, types, strict=True)))
        if not buf:
            return schema.empty_table()
        table = csv.read_csv(
            pa.BufferReader(bytes(buf)),
            read_options=csv.ReadOptions(column_names=[f"c{i}" for i in range(len(names))]),
            convert_options=csv.ConvertOptions(
                column_types={f"c{i}": t for i, t in enumerate(types)},
                strings_can_be_null=True, quoted_strings_can_be_null=False,
                null_values=[""], true_values=["t"], false_values=["f"],
            ),
        )  # fmt: skip
        return table.rename_columns(names)

    def columns(self, table: str) -> set[str]:
        return set(self.query(f"SELECT * FROM {{{table}}} WHERE 1 = 0").columns)


#: PostgreSQL type oid -> the Arrow type its CSV text is read as (others: text)
_ARROW_TYPES = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int64(), 23: pa.int64(), 26: pa.int64(),
    700: pa.float64(), 701: pa.float64(), 1700: pa.float64(), 1082: pa.date32(),
    1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}  # fmt: skip


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@dataclass
class _Found:
    """What the adapter found besides the contract tables: problems for the check report and
    where each contract row came from (OMOP table, record id)."""

    problems: list[Problem] = field(default_factory=list)
    rejected: list[pd.DataFrame] = field(default_factory=list)
    origin: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: drug concepts reached through concept_ancestor but not read: concept id -> why
    not_read: dict[int, str] = field(default_factory=dict)

    def add(self, table, code, severity, message, count, examples=(), details=None):
        if count > 0:
            self.problems.append(
                Problem(table, code, severity, message, int(count),
                        list(examples)[:MAX_EXAMPLES], dict(details or {}))
            )  # fmt: skip

    def reject(self, table: str, column: str, ids, persons, reason: str) -> None:
        if len(ids):
            self.rejected.append(
                pd.DataFrame({"file": table, "row": np.asarray(ids, dtype="int64"),
                              "column": column, "reason": reason,
                              "patient_id": np.asarray(persons, dtype=object)})
            )  # fmt: skip


# ---- concept resolution ----------------------------------------------------------------


def resolve_concepts(src: OmopSource, codes: CodeMap, found: _Found) -> dict[int, Code]:
    """{concept id: entry} from the shipped ids, the source's ``concept`` table (codes),
    ``concept_relationship`` ("Maps to") and, for drugs, ``concept_ancestor``."""
    ids = {i: c for i, c in codes.concept_ids(*_ALL_KINDS).items()}
    wanted = [c for c in codes.codes if c.concept_code]
    if src.has("concept") and wanted:
        by_vocab: dict[str, list[Code]] = {}
        for c in wanted:
            by_vocab.setdefault(c.vocabulary_id, []).append(c)
        clauses = []
        for vocab, cs in by_vocab.items():
            exact = [c.concept_code for c in cs if c.kind != "disease"]
            prefix = [c.concept_code for c in cs if c.kind == "disease"]
            parts = [f"concept_code IN {_in(exact)}"] if exact else []
            parts += [f"concept_code LIKE {_literal(p + '%')}" for p in prefix]
            clauses.append(f"(vocabulary_id = {_literal(vocab)} AND ({' OR '.join(parts)}))")
        rows = src.query(
            "SELECT concept_id, vocabulary_id, concept_code FROM {concept} WHERE "
            + " OR ".join(clauses)
        )
        for r in rows.itertuples(index=False):
            c = codes.lookup(r.vocabulary_id, str(r.concept_code))
            if c is not None:
                ids[int(r.concept_id)] = c
    if src.has("concept_relationship") and ids:
        rows = src.query(
            "SELECT concept_id_1, concept_id_2 FROM {concept_relationship} WHERE "
            f"relationship_id = 'Maps to' AND concept_id_1 IN {_in(ids)}"
        )
        for a, b in zip(rows["concept_id_1"], rows["concept_id_2"], strict=True):
            ids.setdefault(int(b), ids[int(a)])
    drugs = {i: c for i, c in ids.items() if c.kind in ("event", "product")}
    if src.has("concept_ancestor") and drugs:
        _descendants(src, ids, drugs, found)
    unresolved = [c for c in codes.codes_without_id(*_ALL_KINDS)
                  if not any(v is c for v in ids.values())]  # fmt: skip
    if unresolved:
        where = "its concept table" if src.has("concept") else "no concept table"
        found.add(
            "concept", "codes_not_in_source", "info",
            f"mapped codes without a concept id in this source ({where}; set data.codes with "
            "a concept_id to use them)", len(unresolved),
            details={f"{c.vocabulary_id} {c.concept_code} ({c.target})": 1 for c in unresolved},
        )  # fmt: skip
    return ids


def _descendants(src: OmopSource, ids: dict[int, Code], drugs: dict[int, Code],
                 found: _Found) -> None:  # fmt: skip
    """Add the products of the mapped drugs through ``concept_ancestor`` to ``ids``, except
    (when the source's ``concept`` table names them) a combination product of an event in
    :data:`COMBINATIONS_NOT_READ` (RxNorm joins ingredients with " / ": lidocaine with
    epinephrine is a local anaesthetic, no vasopressor; acetaminophen with oxycodone is still
    an antipyretic) and a treatment in a local dose form (``code_maps/routes.csv``:
    dexamethasone eye drops are no corticosteroid for CRS); those go to ``found.not_read``."""
    named = src.has("concept")
    name_sql = (
        "(SELECT concept_name FROM {concept} c WHERE c.concept_id = a.descendant_concept_id)"
        if named else "NULL"
    )  # fmt: skip
    rows = src.query(
        f"SELECT a.ancestor_concept_id, a.descendant_concept_id, {name_sql} AS name "
        f"FROM {{concept_ancestor}} a WHERE a.ancestor_concept_id IN {_in(drugs)}"
    )
    rows = rows[~rows["descendant_concept_id"].isin(list(ids))]
    code = [drugs[int(a)] for a in rows["ancestor_concept_id"]]
    name = rows["name"].astype("object").where(rows["name"].notna(), None).tolist()
    local = not_systemic(name, [c.target for c in code])
    for d, c, text, why in zip(rows["descendant_concept_id"], code, name, local, strict=True):
        d = int(d)
        if isinstance(text, str) and " / " in text and c.target in COMBINATIONS_NOT_READ:
            found.not_read.setdefault(d, f"a combination product: {text}")
        elif why is not None and c.kind == "event":
            found.not_read.setdefault(d, why)
        elif d not in found.not_read:
            ids.setdefault(d, c)


#: events whose combination products (reached through concept_ancestor) are another drug:
#: the vasopressors' are local anaesthetics with a vasoconstrictor
COMBINATIONS_NOT_READ = ("vasopressor", "vasopressin")

_ALL_KINDS = ("variable", "event", "product", "infusion", "disease", "outcome")


def _of(ids: dict[int, Code], *kinds: str) -> dict[int, Code]:
    return {i: c for i, c in ids.items() if c.kind in kinds}


# ---- times -------------------------------------------------------------------------------


def _utc(values: pd.Series, zone: str) -> tuple[pd.Series, bool]:
    """Datetimes as UTC; (series, True when they had no time zone and were localised)."""
    s = values
    if not (isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype)):
        s = pd.to_datetime(s.astype("str").where(s.notna(), None), errors="coerce",
                           format="ISO8601")  # fmt: skip
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), False
    s = s.astype("datetime64[ns]")
    # a clock time that occurs twice (autumn) is read as the later one and one that does not
    # occur (spring) as the first time after the gap: never earlier than it can have been,
    # so a result is never placed before it was known
    later = np.zeros(len(s), dtype=bool)
    local = s.dt.tz_localize(zone, ambiguous=later, nonexistent="shift_forward")
    return local.dt.tz_convert("UTC"), True


@dataclass
class _Times:
    zone: str
    naive: dict[str, int] = field(default_factory=dict)

    def of(self, frame: pd.DataFrame, table: str, column: str) -> pd.Series:
        s, naive = _utc(frame[column], self.zone)
        if naive and s.notna().any():
            key = f"{table}.{column}"
            self.naive[key] = self.naive.get(key, 0) + int(s.notna().sum())
        return s


# ---- the cohort: infusion episodes ------------------------------------------------------


def _infusions(src: OmopSource, ids: dict[int, Code], found: _Found, times: _Times):
    cart = _of(ids, "product", "infusion")
    parts = []
    if src.has("procedure_occurrence"):
        parts.append(
            "SELECT 'procedure_occurrence' AS tbl, procedure_occurrence_id AS record_id, "
            "person_id, procedure_concept_id AS concept_id, procedure_datetime AS start_dt, "
            "procedure_date AS start_date, visit_occurrence_id FROM {procedure_occurrence} "
            f"WHERE procedure_concept_id IN {_in(cart)}"
        )
    if src.has("drug_exposure"):
        parts.append(
            "SELECT 'drug_exposure' AS tbl, drug_exposure_id AS record_id, person_id, "
            "drug_concept_id AS concept_id, drug_exposure_start_datetime AS start_dt, "
            "drug_exposure_start_date AS start_date, visit_occurrence_id FROM {drug_exposure} "
            f"WHERE drug_concept_id IN {_in(cart)}"
        )
    if not parts:
        raise InputError(
            f"{src.label}: no procedure_occurrence or drug_exposure table: no CAR-T infusion "
            "record can be found"
        )
    rec = src.query(" UNION ALL ".join(parts))
    if src.omop.cohort_definition_id is not None:
        if not src.has("cohort"):
            raise InputError(
                f"{src.label}: data.omop.cohort_definition_id is set but there is no cohort "
                "table (set data.omop.results_schema)"
            )
        members = src.query(
            "SELECT DISTINCT subject_id FROM {cohort} WHERE cohort_definition_id = "
            f"{int(src.omop.cohort_definition_id)}"
        )["subject_id"].astype("int64")
        rec = rec[rec["person_id"].isin(members)]
        missing = sorted(set(members) - set(rec["person_id"].astype("int64")))
        found.add(
            "cohort", "missing_infusion", "error",
            f"persons of cohort {src.omop.cohort_definition_id} without a CAR-T infusion "
            "record (procedure_occurrence or drug_exposure with a product or CAR-T "
            "administration code): left out", len(missing),
            [{"file": "cohort", "row": int(p), "column": "subject_id", "value": str(p)}
             for p in missing[:MAX_EXAMPLES]],
        )  # fmt: skip
    elif src.has("person"):
        n, first = _persons_without(src, rec)
        found.add(
            "person", "missing_infusion", "warning",
            "persons without a CAR-T infusion record (procedure_occurrence or drug_exposure "
            "with a product or CAR-T administration code) are not in the cohort; if they "
            "should be, add their infusion code to data.codes", n,
            [{"file": "person", "row": int(p), "column": "person_id", "value": str(p)}
             for p in first],
        )  # fmt: skip
    if rec.empty:
        raise InputError(f"{src.label}: no CAR-T infusion record (see `crs-ml check`)")
    rec = rec.reset_index(drop=True)
    rec["person_id"] = rec["person_id"].astype("int64")
    rec["start"] = times.of(rec, rec["tbl"].iloc[0], "start_dt")
    no_time = rec["start"].isna().to_numpy()
    if no_time.any():
        bad = rec[no_time]
        found.add(
            "procedure_occurrence", "infusion_without_time", "error",
            "CAR-T infusion records with a date but no time (or an unreadable time): the "
            "episode is left out, since hours since infusion cannot be known", int(no_time.sum()),
            [{"file": t, "row": int(i), "column": "start_datetime", "value": str(d)}
             for t, i, d in bad[["tbl", "record_id", "start_date"]].itertuples(index=False)],
        )  # fmt: skip
        rec = rec[~no_time]
    products = _of(ids, "product")
    rec["product"] = _text(rec["concept_id"].astype("int64").map(
        _lookup(products, [c.target for c in products.values()])))  # fmt: skip
    rec = rec.sort_values(["person_id", "start", "record_id"], kind="stable")
    gap = rec.groupby("person_id")["start"].diff() > pd.Timedelta(
        hours=src.options.infusion_merge_h
    )
    first = rec["person_id"].ne(rec["person_id"].shift())
    rec["episode"] = (first | gap).cumsum()
    return rec


def _persons_without(src: OmopSource, rec: pd.DataFrame) -> tuple[int, list[int]]:
    """Number of persons of the ``person`` table without an infusion record, and the first
    few (a count in SQL; nothing else of them is read)."""
    cart = _in(rec["person_id"].astype("int64")) if len(rec) else "(NULL)"
    if len(rec) > 50_000:  # a long literal list: let the database subtract instead
        return 0, []
    n = int(
        src.query(f"SELECT count(*) AS n FROM {{person}} WHERE person_id NOT IN {cart}")["n"][0]
    )
    first = src.query(
        f"SELECT person_id FROM {{person}} WHERE person_id NOT IN {cart} ORDER BY person_id "
        f"LIMIT {MAX_EXAMPLES}"
    )["person_id"]
    return n, [int(p) for p in first]


def _episodes(src: OmopSource, rec: pd.DataFrame, found: _Found) -> pd.DataFrame:
    """One row per infusion episode: person, infusion time, product, patient_id."""
    g = rec.groupby("episode", sort=False)
    ep = g.agg(person_id=("person_id", "first"), infusion=("start", "min"),
               visit=("visit_occurrence_id", "first"), record=("record_id", "first"),
               tbl=("tbl", "first")).reset_index()  # fmt: skip
    named = (rec.loc[rec["product"].notna(), ["episode", "product"]]
             .drop_duplicates().sort_values(["episode", "product"]))  # fmt: skip
    ep["product"] = _text(ep["episode"].map(named.groupby("episode")["product"].first()))
    joined = named.groupby("episode")["product"].agg(" + ".join)
    several = joined[named.groupby("episode").size() > 1]
    found.add(
        "drug_exposure", "several_products", "warning",
        "infusion episodes whose records name more than one CAR-T product: the first "
        "(alphabetically) is used", len(several),
        details=dict.fromkeys(several, 1),
    )  # fmt: skip
    none = ep[ep["product"].isna()]
    found.add(
        "procedure_occurrence", "no_product", "warning",
        "CAR-T infusion episodes without a product code (HCPCS Q2041-Q2056 or the product's "
        "RxNorm code): product unknown (all product features 0)", len(none),
        [{"file": t, "row": int(r), "column": "concept_id", "value": f"person {p}"}
         for t, r, p in none[["tbl", "record", "person_id"]].itertuples(index=False)],
    )  # fmt: skip
    persons = _in(ep["person_id"])
    person = src.query(
        "SELECT person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth, "
        "person_source_value, care_site_id FROM {person} "
        f"WHERE person_id IN {persons}"
    ) if src.has("person") else pd.DataFrame(columns=["person_id"])  # fmt: skip
    person["person_id"] = person["person_id"].astype("int64")
    ep = ep.merge(person, on="person_id", how="left")
    missing = ep[ep["year_of_birth"].isna()] if "year_of_birth" in ep else ep
    found.add(
        "person", "person_missing", "warning",
        "infusion records of persons absent from the person table: sex and age unknown",
        missing["person_id"].nunique(),
        [{"file": "person", "row": int(p), "column": "person_id", "value": str(p)}
         for p in missing["person_id"].unique()[:MAX_EXAMPLES]],
    )  # fmt: skip
    label = ep.get("person_source_value", pd.Series(index=ep.index, dtype=object))
    label = label.astype("object").where(label.notna() & (label.astype("str") != ""), None)
    ep["person_label"] = label.fillna(ep["person_id"].astype("str")).astype("str")
    ep["k"] = ep.groupby("person_id").cumcount() + 1
    # the visit of the infusion: its source value names the episode, its care site the site
    visits = pd.DataFrame(columns=["visit", "visit_source_value", "visit_care_site"])
    ids = [int(v) for v in ep["visit"].dropna()]
    if src.has("visit_occurrence") and ids:
        visits = src.query(
            "SELECT visit_occurrence_id AS visit, visit_source_value, "
            "care_site_id AS visit_care_site FROM {visit_occurrence} "
            f"WHERE visit_occurrence_id IN {_in(ids)}"
        )
    ep["visit"] = pd.to_numeric(ep["visit"], errors="coerce")
    visits["visit"] = pd.to_numeric(visits["visit"], errors="coerce")
    ep = ep.merge(visits, on="visit", how="left")
    name = ep["visit_source_value"].astype("object")
    name = name.where(name.notna() & (name.astype("str") != ""), None)
    fallback = np.where(ep["k"] > 1, ep["person_label"] + "-" + ep["k"].astype("str"),
                        ep["person_label"])  # fmt: skip
    ep["patient_id"] = (
        name.where(~name.duplicated(keep=False), None)
        .fillna(pd.Series(fallback, index=ep.index))
        .astype("str")
    )
    return ep.sort_values(["person_id", "infusion"], kind="stable").reset_index(drop=True)


def _assign(ep: pd.DataFrame, person_id, when: pd.Series, window_h: float) -> np.ndarray:
    """Episode row (index into ``ep``) of each row: the person's latest episode whose
    infusion is at or before ``when + window_h``; -2 when there is none (a row more than
    ``window_h`` before the person's first infusion: not read, as in the MEDS and FHIR
    readers); -1 if the person has no episode."""
    n = len(when)
    if n == 0:
        return np.full(0, -1, dtype=np.int64)
    rows = pd.DataFrame({
        "person_id": np.asarray(person_id, dtype="int64"),
        "t": when.to_numpy(dtype="datetime64[ns]") + np.timedelta64(int(window_h * 3600e9), "ns"),
        "i": np.arange(n),
    }).sort_values("t", kind="stable")  # fmt: skip
    eps = pd.DataFrame({
        "person_id": ep["person_id"].to_numpy(dtype="int64"),
        "t": ep["infusion"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]"),
        "e": np.arange(len(ep)),
    }).sort_values("t", kind="stable")  # fmt: skip
    hit = pd.merge_asof(rows, eps, on="t", by="person_id", direction="backward")
    known = hit["person_id"].isin(eps["person_id"]).to_numpy()
    e = hit["e"].fillna(-1).to_numpy(dtype="int64", copy=True)
    e[(e < 0) & known] = -2
    out = np.empty(n, dtype=np.int64)
    out[hit["i"].to_numpy()] = e
    return out


# ---- the contract tables ----------------------------------------------------------------


def _on_episodes(f: pd.DataFrame, found: _Found, table: str, ep: pd.DataFrame,
                 window_h: float) -> pd.DataFrame:  # fmt: skip
    """``f``'s rows on their episodes (column ``patient``, :func:`_assign`). A row with a date
    but no time is rejected (midnight would put a result before it was known), listed with
    its OMOP table and id and the cohort's patient_id of the episode its date falls in (else
    the OMOP person_id); a row more than ``window_h`` before the person's first infusion is
    not read, counted under ``table``."""
    bad = f["time"].isna().to_numpy()
    when = f["time"]
    if bad.any():  # the rejected rows' dates find their episode
        day = pd.to_datetime(f["d"].astype("str").where(f["d"].notna(), None),
                             errors="coerce", utc=True)  # fmt: skip
        when = when.fillna(day).fillna(pd.Timestamp(0, tz="UTC"))
    f = f.assign(patient=_assign(ep, f["person_id"], when, window_h))
    if bad.any():
        rows = f[bad]
        at = rows["patient"].to_numpy()
        patient = np.where(at >= 0, ep["patient_id"].to_numpy(dtype=object)[np.maximum(at, 0)],
                           rows["person_id"].astype("str").to_numpy(dtype=object))  # fmt: skip
        for name, part in rows.assign(patient_id=patient).groupby("tbl"):
            found.add(
                name, "date_without_time", "error",
                f"{name} rows with a date but no time (or an unreadable time): left out "
                "(midnight would put a result before it was known)", len(part),
                [{"file": name, "row": int(r), "column": "datetime", "value": str(d)}
                 for r, d in part[["record_id", "d"]].itertuples(index=False)],
            )  # fmt: skip
            found.reject(name, "datetime", part["record_id"], part["patient_id"],
                         "date without time")  # fmt: skip
    old = ~bad & (f["patient"] == -2).to_numpy()
    found.add(
        table, "before_history", "info",
        f"rows more than data.omop.baseline_window_h = {window_h:g} h before the person's "
        "first infusion: not read", int(old.sum()),
    )  # fmt: skip
    return f[~bad & ~old].reset_index(drop=True)


def _persons_sql(ep: pd.DataFrame) -> str:
    return _in(ep["person_id"].unique())


def _observations(src, ids, ep, times, found) -> pd.DataFrame:
    var = _of(ids, "variable")
    frames = []
    ops = operators()
    for table, concept, dt, date in (
        ("measurement", "measurement_concept_id", "measurement_datetime", "measurement_date"),
        ("observation", "observation_concept_id", "observation_datetime", "observation_date"),
    ):
        if not src.has(table) or not var:
            continue
        cols = src.columns(table)

        def col(*names, cols=cols):
            return next((n for n in names if n in cols), "NULL")

        unit_src, operator, unit_id = (col("unit_source_value"), col("operator_concept_id"),
                                       col("unit_concept_id"))  # fmt: skip
        value_src = col("value_source_value", "value_as_string")
        f = src.query(
            f"SELECT {table}_id AS record_id, person_id, {concept} AS concept_id, "
            f"{dt} AS dt, {date} AS d, value_as_number, {value_src} AS value_text, "
            f"{operator} AS operator_concept_id, {unit_id} AS unit_concept_id, {unit_src} AS unit_text "
            f"FROM {{{table}}} WHERE {concept} IN {_in(var)} AND person_id IN {_persons_sql(ep)}"
        )
        f["tbl"] = table
        f["time"] = times.of(f, table, "dt")
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=["patient_id", "time", "variable", "value", "unit"])
    f = pd.concat(frames, ignore_index=True)
    f = _on_episodes(f, found, "observations", ep, src.omop.baseline_window_h)
    value = _value_text(f["value_as_number"], f["operator_concept_id"], f["value_text"], ops)
    units = _text(f["unit_text"])
    unit_id = pd.to_numeric(f["unit_concept_id"], errors="coerce")
    need = pd.isna(units) & unit_id.notna().to_numpy() & (unit_id != 0).to_numpy()
    if need.any() and src.has("concept"):
        uid = unit_id[need].astype("int64").unique()
        codes = src.query(
            f"SELECT concept_id, concept_code FROM {{concept}} WHERE concept_id IN {_in(uid)}"
        )
        lookup = _lookup(codes["concept_id"], codes["concept_code"])
        units[need] = _text(unit_id[need].map(lookup))
    units[pd.isna(units)] = ""
    variable = f["concept_id"].astype("int64").map(_lookup(ids, [c.target for c in ids.values()]))
    out = pd.DataFrame({
        "patient_id": ep["patient_id"].to_numpy(dtype=object)[f["patient"].to_numpy()],
        "time": f["time"], "variable": variable.to_numpy(dtype=object), "value": value,
        "unit": units,
    })  # fmt: skip
    found.origin["observations"] = (f["tbl"].to_numpy(dtype=object),
                                    f["record_id"].to_numpy(dtype="int64"))  # fmt: skip
    return out


def _lookup(keys, values) -> pd.Series:
    """A mapping for ``Series.map`` (vectorised: an index lookup, not a call per row) from
    integer keys (concept ids) to values; float keys (ids read with missing values) match."""
    keys = np.asarray(list(keys), dtype="float64")
    return pd.Series(np.asarray(list(values), dtype=object), index=keys).loc[
        lambda m: ~m.index.duplicated(keep="first")]  # fmt: skip


def _text(values) -> np.ndarray:
    """Text values as an object array, missing ones as ``None``."""
    out = np.asarray(values, dtype=object).copy()
    out[pd.isna(out)] = None
    return out


#: a detection limit in a result's source text: '<1.5', '> 5000', '<=0.3'
_SOURCE_LIMIT = r"^\s*(<=|>=|<|>)\s*(\d+(?:\.\d+)?)\s*$"


def _value_text(number, operator_concept_id, value_text, ops: dict[int, str]) -> np.ndarray:
    """The contract's ``value`` text of OMOP result rows: ``value_as_number`` written as the
    shortest text that reads back as the same float (``<5.0`` / ``>1000.0`` when the
    operator concept says the value is censored, or when there is no operator and the row's
    source text is that number with ``<`` / ``>`` before it, as ``<1.5``), else the row's
    text value."""
    number = pd.to_numeric(number, errors="coerce").to_numpy(dtype="float64")
    has = ~np.isnan(number)
    out = _text(value_text)
    written = np.asarray(pl.Series(number[has]).cast(pl.String).to_list(), dtype=object)
    op = _text(pd.to_numeric(operator_concept_id, errors="coerce").map(
        _lookup(ops, ops.values())))[has]  # fmt: skip
    source = pd.Series(out[has], dtype=object).astype(str).str.extract(_SOURCE_LIMIT)
    limit = pd.to_numeric(source[1], errors="coerce").to_numpy(dtype="float64")
    from_text = ~np.isin(op, ["<", "<=", ">", ">="]) & (limit == number[has])
    op = np.where(from_text, source[0].to_numpy(dtype=object), op)
    censored = np.isin(op, ["<", "<=", ">", ">="])
    written[censored] = op[censored] + written[censored]
    out[has] = written
    return out


def _events(src, ids, ep, times, found) -> tuple[pd.DataFrame, pd.DataFrame]:
    ev = _of(ids, "event")
    persons = _persons_sql(ep)
    parts = []
    specs = [
        ("drug_exposure", "drug_concept_id", "drug_exposure_start_datetime",
         "drug_exposure_start_date", "drug_exposure_end_datetime", ("sig", "drug_source_value")),
        ("procedure_occurrence", "procedure_concept_id", "procedure_datetime", "procedure_date",
         "procedure_end_datetime", ("procedure_source_value",)),
        ("device_exposure", "device_concept_id", "device_exposure_start_datetime",
         "device_exposure_start_date", "device_exposure_end_datetime", ("device_source_value",)),
        ("visit_occurrence", "visit_concept_id", "visit_start_datetime", "visit_start_date",
         "NULL", ("visit_source_value",)),
    ]  # fmt: skip
    for table, concept, start, date, end, detail in specs:
        if not src.has(table) or not ev:
            continue
        cols = src.columns(table)
        end_col = end if end in cols else "NULL"
        details = [d for d in detail if d in cols]
        detail_sql = (f"COALESCE({', '.join(details)})" if len(details) > 1
                      else details[0] if details else "NULL")  # fmt: skip
        f = src.query(
            f"SELECT {table}_id AS record_id, person_id, {concept} AS concept_id, "
            f"{start} AS dt, {date} AS d, {end_col} AS end_dt, {detail_sql} AS detail, "
            f"{_route_sql(src, table, cols)} AS route "
            f"FROM {{{table}}} t WHERE {concept} IN {_in(ev)} AND person_id IN {persons}"
        )
        if f["route"].notna().any():
            f = _systemic(f, ev, table, found)
        f["tbl"] = table
        f["time"] = times.of(f, table, "dt")
        f["end_time"] = times.of(f, table, "end_dt") if end_col != "NULL" else pd.NaT
        parts.append(f)
    death = pd.DataFrame()
    if src.has("death"):
        death = src.query(
            "SELECT person_id, death_datetime AS dt, death_date AS d, cause_source_value AS "
            f"detail FROM {{death}} WHERE person_id IN {persons}"
        )
        death["record_id"] = death["person_id"]
        death["tbl"] = "death"
        death["time"] = times.of(death, "death", "dt")
        # death_datetime is optional in the CDM: a death with a date only is placed at the
        # end of that day (the latest it can be: the patient was alive earlier that day and
        # is never counted dead at a landmark before the death), not left out
        date_only = (death["time"].isna() & death["d"].notna()).to_numpy()
        if date_only.any():
            day_end = pd.to_datetime(death["d"].where(date_only), errors="coerce")
            day_end = day_end.dt.normalize() + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
            death["time"] = death["time"].fillna(_utc(day_end, times.zone)[0])
            found.add(
                "death", "death_date_only", "info",
                "deaths with a date but no time: placed at 23:59:59 of that day (local time)",
                int(date_only.sum()),
            )  # fmt: skip
        death["end_time"] = pd.NaT
        death["concept_id"] = -1
        parts.append(death)
    if not parts:
        return pd.DataFrame(columns=["patient_id", "time", "end_time", "event", "detail"]), death
    f = pd.concat(parts, ignore_index=True)
    f = _on_episodes(f, found, "events", ep, src.omop.baseline_window_h)
    event = f["concept_id"].astype("int64").map(
        _lookup([*ids, -1], [*(c.target for c in ids.values()), "death"]))  # fmt: skip
    end = f["end_time"].where(event.isin(CONTINUOUS))
    end = pd.to_datetime(end, utc=True)
    out = pd.DataFrame({
        "patient_id": ep["patient_id"].to_numpy(dtype=object)[f["patient"].to_numpy()],
        "time": f["time"], "end_time": end, "event": event.astype("object"),
        "detail": f["detail"].astype("object").where(f["detail"].notna(), None),
    })  # fmt: skip
    found.origin["events"] = (f["tbl"].to_numpy(dtype=object),
                              f["record_id"].to_numpy(dtype="int64"))  # fmt: skip
    dead = f[event.to_numpy() == "death"]
    return out, dead


def _route_sql(src: OmopSource, table: str, cols: set[str]) -> str:
    """SQL for a drug record's route as text: the name of ``route_concept_id`` (when the
    source has a ``concept`` table) and ``route_source_value``, whichever are there."""
    if table != "drug_exposure":
        return "NULL"
    parts = []
    if "route_concept_id" in cols and src.has("concept"):
        parts.append("(SELECT concept_name FROM {concept} c "
                     "WHERE c.concept_id = NULLIF(t.route_concept_id, 0))")  # fmt: skip
    if "route_source_value" in cols:
        parts.append("t.route_source_value")
    return f"concat_ws(' ', {', '.join(parts)})" if parts else "NULL"


def _systemic(f: pd.DataFrame, ev: dict[int, Code], table: str, found: _Found) -> pd.DataFrame:
    """``f`` without the records whose route makes them no systemic treatment of their event
    (``code_maps/routes.csv``: eye drops, a joint injection, an intramuscular epinephrine),
    counted by reason under ``table`` (info ``local_route``)."""
    route = f["route"].astype("object").where(f["route"].notna(), None).tolist()
    why = not_systemic(route, [ev[int(c)].target for c in f["concept_id"]])
    local = np.array([w is not None for w in why])
    found.add(
        table, "local_route", "info",
        f"{table} rows whose route is not the systemic treatment the event means: not read "
        "(code_maps/routes.csv)", int(local.sum()),
        details=pd.Series([w for w in why if w is not None]).value_counts().to_dict(),
    )  # fmt: skip
    return f[~local].reset_index(drop=True)


def _outcomes(src, ids, ep, times, dead, found) -> pd.DataFrame | None:
    oc = _of(ids, "outcome")
    if not src.has("observation") or not oc:
        return None
    f = src.query(
        "SELECT observation_id AS record_id, person_id, observation_concept_id AS concept_id, "
        "observation_datetime AS dt, observation_date AS d, value_as_number, value_as_string "
        f"FROM {{observation}} WHERE observation_concept_id IN {_in(oc)} "
        f"AND person_id IN {_persons_sql(ep)}"
    )
    if f.empty:
        return None
    f["tbl"] = "observation"
    f["time"] = times.of(f, "observation", "dt")
    f = _on_episodes(f, found, "observation", ep, src.omop.baseline_window_h)
    kind = f["concept_id"].astype("int64").map(_lookup(ids, [c.target for c in ids.values()]))
    grade = f[kind == "crs_grade"].copy()
    grade["g"] = pd.to_numeric(grade["value_as_number"], errors="coerce")
    out = pd.DataFrame({"patient": np.arange(len(ep))})
    out["crs_max_grade"] = grade.groupby("patient")["g"].max().reindex(out["patient"]).to_numpy()
    g3 = grade[grade["g"] >= 3].groupby("patient")["time"].min()
    out["grade3_time"] = g3.reindex(out["patient"]).to_numpy()
    fu = f[kind == "followup_end"].groupby("patient")["time"].min()
    out["followup_end_time"] = fu.reindex(out["patient"]).to_numpy()
    if len(dead):
        d = dead.groupby("patient")["time"].min()
        out["death_time"] = d.reindex(out["patient"]).to_numpy()
    else:
        out["death_time"] = pd.NaT
    label = grade.groupby("patient")["value_as_string"].first()
    out["label_definition"] = label.reindex(out["patient"]).to_numpy()
    out["patient_id"] = ep["patient_id"].to_numpy(dtype=object)
    graded = out["crs_max_grade"].notna().to_numpy()
    found.add(
        "observation", "no_crs_grade", "warning",
        "infusion episodes without a CRS grade record (observation with the crs_grade "
        "concept): no outcome row (training and validation need one)", int((~graded).sum()),
        [{"file": "observation", "row": 0, "column": "person_id", "value": p}
         for p in out.loc[~graded, "patient_id"].head(MAX_EXAMPLES)],
    )  # fmt: skip
    out = out[graded]
    out["crs_max_grade"] = out["crs_max_grade"].astype("int64")
    for c in ("grade3_time", "followup_end_time", "death_time"):
        out[c] = pd.to_datetime(out[c], utc=True)
    return out[["patient_id", "crs_max_grade", "grade3_time", "followup_end_time",
                "death_time", "label_definition"]].reset_index(drop=True)  # fmt: skip


def _patients(src, ids, ep, found) -> pd.DataFrame:
    sexes = genders()
    gender = pd.to_numeric(ep.get("gender_concept_id", pd.Series(index=ep.index, dtype=float)),
                           errors="coerce")  # fmt: skip
    sex = gender.map(_lookup(sexes, sexes.values())).fillna("U")
    inf = ep["infusion"]
    yob = pd.to_numeric(ep.get("year_of_birth"), errors="coerce")
    mob = pd.to_numeric(ep.get("month_of_birth"), errors="coerce")
    dob = pd.to_numeric(ep.get("day_of_birth"), errors="coerce")
    # completed years at infusion; a missing month/day counts as 1 July
    m = mob.fillna(7)
    d = dob.where(mob.notna(), 1).fillna(1)
    before = (inf.dt.month < m) | ((inf.dt.month == m) & (inf.dt.day < d))
    age = inf.dt.year - yob - before.astype(int)
    site = pd.Series([src.omop.site or ""] * len(ep), index=ep.index, dtype=object)
    care = pd.to_numeric(ep.get("visit_care_site"), errors="coerce").fillna(
        pd.to_numeric(ep.get("care_site_id"), errors="coerce"))  # fmt: skip
    if src.has("care_site") and care.notna().any():
        names = src.query(
            "SELECT care_site_id, care_site_name FROM {care_site} "
            f"WHERE care_site_id IN {_in(care.dropna().astype('int64'))}"
        )
        named = care.map(_lookup(names["care_site_id"], names["care_site_name"]))
        site = named.where(named.notna(), site)
    disease = _diseases(src, ids, ep)
    return pd.DataFrame({
        "patient_id": ep["patient_id"], "person_id": ep["person_label"],
        "infusion_time": inf, "product": ep["product"].astype("object"),
        "age_years": age.astype("float64"), "sex": sex.astype("object"),
        "disease": disease, "site": site.astype("object"),
    })  # fmt: skip


def _diseases(src, ids, ep) -> pd.Series:
    none = pd.Series([None] * len(ep), index=ep.index, dtype=object)
    if not src.has("condition_occurrence"):
        return none
    dis = _of(ids, "disease")
    codes = [c for c in code_map(src.options.codes).of_kind("disease") if c.concept_code]
    cols = src.columns("condition_occurrence")
    clauses = [f"condition_concept_id IN {_in(dis)}"] if dis else []
    if "condition_source_value" in cols:
        clauses += [f"condition_source_value LIKE {_literal(c.concept_code + '%')}" for c in codes]
    if not clauses:
        return none
    src_col = "condition_source_value" if "condition_source_value" in cols else "NULL"
    f = src.query(
        f"SELECT person_id, condition_concept_id, {src_col} AS source_value, "
        "condition_start_date AS d FROM {condition_occurrence} "
        f"WHERE person_id IN {_persons_sql(ep)} AND ({' OR '.join(clauses)})"
    )
    if f.empty:
        return none
    cm = code_map(src.options.codes)
    # the concept's disease, else the ICD-10-CM source value's (looked up once per value)
    concept = pd.to_numeric(f["condition_concept_id"], errors="coerce")
    disease = pd.Series(_text(concept.map(_lookup(dis, [c.target for c in dis.values()]))),
                        index=f.index, dtype=object)  # fmt: skip
    text = f["source_value"].astype("object").where(f["source_value"].notna(), "").astype("str")
    distinct = text[disease.isna()].unique()
    by_text = {t: getattr(cm.lookup("ICD10CM", t), "target", None) for t in distinct}
    f["disease"] = disease.fillna(text.map(by_text))
    f = f.dropna(subset=["disease"])
    f["d"] = pd.to_datetime(f["d"], errors="coerce")
    f["person_id"] = f["person_id"].astype("int64")
    f = f.sort_values(["person_id", "d"], kind="stable").reset_index(drop=True)
    # the person's latest diagnosis on or before the infusion, else the person's latest
    rows = f[f["d"].notna()].assign(d=lambda x: x["d"].astype("datetime64[ns]"))
    eps = pd.DataFrame({
        "person_id": ep["person_id"].astype("int64").to_numpy(),
        "when": ep["infusion"].dt.tz_localize(None).astype("datetime64[ns]").to_numpy(),
        "e": np.arange(len(ep)),
    }).sort_values("when", kind="stable")  # fmt: skip
    hit = pd.merge_asof(
        eps,
        rows.sort_values("d", kind="stable")[["person_id", "d", "disease"]],
        left_on="when",
        right_on="d",
        by="person_id",
        direction="backward",
    )
    last = f.drop_duplicates("person_id", keep="last").set_index("person_id")["disease"]
    chosen = hit["disease"].fillna(hit["person_id"].map(last))
    out = np.full(len(ep), None, dtype=object)
    out[hit["e"].to_numpy()] = _text(chosen)
    return pd.Series(out, index=ep.index, dtype=object)


# ---- the whole read ---------------------------------------------------------------------


def omop_frames(source, options: DataConfig | None = None):
    """The contract-shaped tables of an OMOP source ({table: DataFrame}) and what was found
    on the way (problems, rejected rows, the OMOP origin of each row)."""
    opts = options or DataConfig()
    src = OmopSource(source, opts)
    found = _Found()
    try:
        codes = code_map(opts.codes)
        ids = resolve_concepts(src, codes, found)
        times = _Times(opts.omop.time_zone)
        rec = _infusions(src, ids, found, times)
        ep = _episodes(src, rec, found)
        frames = {
            "patients": _patients(src, ids, ep, found),
            "observations": _observations(src, ids, ep, times, found),
        }
        events, dead = _events(src, ids, ep, times, found)
        frames["events"] = events
        if len(dead):
            dead = dead.assign(patient=_assign(ep, dead["person_id"], dead["time"],
                                               opts.omop.baseline_window_h))  # fmt: skip
        outcomes = _outcomes(src, ids, ep, times, dead, found)
        if outcomes is not None:
            frames["outcomes"] = outcomes
        found.add(
            "omop", "naive_times", "warning",
            "datetimes without a time zone (the CDM stores none): read as "
            f"{opts.omop.time_zone} (data.omop.time_zone)", sum(times.naive.values()),
            details=times.naive,
        )  # fmt: skip
        _unused_concepts(src, ids, frames, found, ep)
    finally:
        src.close()
    return frames, found, src.label


def _unused_concepts(src, ids, frames, found, ep) -> None:
    """Codes of the cohort's measurement and drug rows that map to nothing (counted in SQL by
    concept, top 50), and core variables the source never reports."""
    for table, concept, source_value in (
        ("measurement", "measurement_concept_id", "measurement_source_value"),
        ("drug_exposure", "drug_concept_id", "drug_source_value"),
    ):
        if not src.has(table):
            continue
        sv = source_value if source_value in src.columns(table) else "NULL"
        rows = src.query(
            f"SELECT {concept} AS concept_id, max({sv}) AS source_value, count(*) AS n "
            f"FROM {{{table}}} WHERE person_id IN {_persons_sql(ep)} "
            f"AND {concept} NOT IN {_in([*ids, *found.not_read])} "
            f"GROUP BY {concept} ORDER BY n DESC LIMIT 50"
        )
        if table == "drug_exposure" and found.not_read:
            products = src.query(
                f"SELECT {concept} AS concept_id, count(*) AS n FROM {{{table}}} WHERE "
                f"person_id IN {_persons_sql(ep)} AND {concept} IN {_in(found.not_read)} "
                f"GROUP BY {concept}"
            )
            found.add(
                table, "not_systemic_products", "info",
                "drug_exposure rows of products reached through concept_ancestor that are a "
                "vasopressor's combination product or a local dose form: not read "
                "(code_maps/routes.csv; map a code with data.codes to read it)",
                int(products["n"].sum()),
                details={found.not_read[int(c)]: int(n)
                         for c, n in products.itertuples(index=False)},
            )  # fmt: skip
        found.add(
            table, "unmapped_codes", "warning",
            f"{table} rows of the cohort's persons whose concept maps to nothing this project "
            "reads (left out; map a code with data.codes if it is one of the catalogue's)",
            int(rows["n"].sum()),
            details={f"{int(c)} ({v})": int(n) for c, v, n in rows.itertuples(index=False)},
        )  # fmt: skip
    seen = (
        set(frames["observations"]["variable"].unique()) if len(frames["observations"]) else set()
    )
    from crs_ml.variables import CORE_VARIABLES

    absent = [v for v in CORE_VARIABLES if v not in seen]
    found.add(
        "measurement", "unmapped_core_variables", "warning",
        "core variables with no row in the source: check their codes (LOINC in the catalogue, "
        "or data.codes for local codes)", len(absent), details=dict.fromkeys(absent, 0),
    )  # fmt: skip


_NAMES = {"patients": "omop patients", "observations": "omop observations",
          "events": "omop events", "outcomes": "omop outcomes"}  # fmt: skip


def load_omop(source, options: DataConfig | None = None) -> Cohort:
    """The normalised cohort of an OMOP source (see the module docstring)."""
    opts = options or DataConfig()
    frames, found, label = omop_frames(source, opts)
    cohort = load_frames(frames, opts, file_names=_NAMES)
    _relabel(cohort, found)
    report = cohort.report
    report.source = label
    report.problems.extend(found.problems)
    report.sort()
    cohort.source = str(source) if not is_url(source) else None
    return cohort


def _relabel(cohort: Cohort, found: _Found) -> None:
    """Rejected rows and problem examples name the OMOP table and record id."""
    by_file = {_NAMES[t]: found.origin[t] for t in found.origin}

    def where(file, row):
        o = by_file.get(file)
        if o is None or not (1 <= int(row) <= len(o[0])):
            return file, row
        return str(o[0][int(row) - 1]), int(o[1][int(row) - 1])

    rej = cohort.rejected
    if len(rej):
        pairs = [where(f, r) for f, r in zip(rej["file"], rej["row"], strict=True)]
        rej["file"] = [p[0] for p in pairs]
        rej["row"] = np.array([p[1] for p in pairs], dtype="int64")
    extra = [r for r in found.rejected if len(r)]
    if extra:
        cohort.rejected = pd.concat([rej, *extra], ignore_index=True)
    for p in cohort.report.problems:
        for e in p.examples:
            if "file" in e and e.get("row") is not None:
                e["file"], e["row"] = where(e["file"], e["row"])
