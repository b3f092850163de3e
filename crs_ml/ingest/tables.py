"""Finding and reading the input tables: CSV or Parquet, column mapping, required columns.

Tables are held as polars frames (:class:`RawTable`). Parquet is read by polars. CSV files are
read with every column as text (nothing is guessed: ``007`` stays ``007``, an empty cell stays
``''``) by pyarrow's multi-threaded reader straight into Arrow, which polars takes over
without a copy: polars' own CSV reader pads a row with too few fields silently, so it cannot
name the malformed row. The delimiter is taken from the header line (``,`` ``;`` tab or
``|``); the encoding is UTF-8 (with or without BOM), falling back to Windows-1252. Rows with
the wrong number of fields are set aside with their row number (they become rejected rows):
only files holding such rows are read again by the slower Python ``csv`` reader, which gives
each one's row and column. Parquet ids are cast to text.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.cohort import PATIENT_COLUMNS, ids_as_text
from crs_ml.errors import ConfigError, InputError
from crs_ml.ingest.values import strip_text

TABLES = ("patients", "observations", "events", "outcomes", "truth", "truth_horizons")
REQUIRED_TABLES = ("patients", "observations")
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")

CONTRACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": tuple(PATIENT_COLUMNS),  # the input columns are the normalised ones
    "observations": ("patient_id", "time", "hours", "variable", "value", "unit"),
    "events": ("patient_id", "time", "hours", "end_time", "end_hours", "event", "detail"),
    "outcomes": (
        "patient_id",
        "crs_max_grade",
        "grade3_time",
        "grade3_hours",
        "followup_end_time",
        "followup_hours",
        "death_time",
        "death_hours",
        "label_definition",
    ),
    "truth": ("patient_id", "landmark_h", "true_risk"),
    "truth_horizons": ("patient_id", "landmark_h", "horizon", "horizon_end_h", "true_risk"),
}
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": ("patient_id",),
    "observations": ("patient_id", "variable", "value"),
    "events": ("patient_id", "event"),
    "outcomes": ("patient_id", "crs_max_grade"),
    "truth": ("patient_id", "landmark_h", "true_risk"),
    "truth_horizons": ("patient_id", "landmark_h", "horizon", "horizon_end_h", "true_risk"),
}
#: tables that need at least one of the two columns
TIME_COLUMNS = {"observations": ("time", "hours"), "events": ("time", "hours")}
ID_COLUMNS = ("patient_id", "person_id")
#: other names sites give contract columns (compared with case, spaces, '_', '-' ignored);
#: an unused column named like this, or like the contract name itself, is a warning in the
#: check report with the ``data.column_mapping`` that would use it
COLUMN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "patient_id": ("patient", "pid", "mrn", "subject_id", "episode_id", "infusion_id"),
    "person_id": ("person", "subject", "patient_number"),
    "infusion_time": ("infusion", "infusion_date", "infusion_datetime", "cart_infusion"),
    "product": ("product_name", "car_t", "cart_product", "car_t_product", "therapy"),
    "age_years": ("age", "age_at_infusion"),
    "sex": ("gender",),
    "disease": ("diagnosis", "indication"),
    "site": ("centre", "center", "hospital"),
    "variable": ("test", "test_name", "analyte", "parameter", "lab", "measurement"),
    "value": ("result", "result_value", "numeric_value"),
    "unit": ("units", "uom", "result_unit"),
    "time": ("datetime", "timestamp", "charttime", "collected", "collection_time"),
    "hours": ("hours_since_infusion", "hours_post_infusion", "time_h"),
    "event": ("event_name", "event_type", "treatment"),
    "crs_max_grade": ("crs_grade", "max_crs_grade", "astct_grade"),
}
#: columns that stand in for one another: no suggestion for one when the other is present
_EITHER = {"time": "hours", "hours": "time", "end_time": "end_hours", "end_hours": "end_time",
           "grade3_time": "grade3_hours", "grade3_hours": "grade3_time",
           "followup_end_time": "followup_hours", "followup_hours": "followup_end_time",
           "death_time": "death_hours", "death_hours": "death_time"}  # fmt: skip
#: file types crs_ml does not read, named when a table is only found in one of them
_OTHER_FORMATS = (".xlsx", ".xlsm", ".xls", ".ods", ".tsv", ".txt", ".json", ".feather")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.:/()]+", "", str(name).lower())


def column_suggestions(unused, present, table: str) -> dict[str, str]:
    """{unused column: contract column it resembles} for contract columns not present: the
    same name up to case, spaces and '_' (``PatientID``), a declared synonym
    (:data:`COLUMN_SYNONYMS`: ``Age``), a name containing the contract name or contained in
    it (``Product Name``), or a close spelling (difflib ratio >= 0.8)."""
    missing = [
        c for c in CONTRACT_COLUMNS[table] if c not in present and _EITHER.get(c) not in present
    ]
    out: dict[str, str] = {}
    for col in unused:
        k = _key(col)
        if not k:
            continue
        for target in missing:
            names = {_key(target), *(_key(s) for s in COLUMN_SYNONYMS.get(target, ()))}
            if (
                k in names
                or any(len(n) >= 4 and n in k or len(k) >= 4 and k in n for n in names)
                or difflib.get_close_matches(k, list(names), n=1, cutoff=0.8)
            ):
                out[col] = target
                missing.remove(target)
                break
    return out


def mapping_snippet(table: str, pairs: Mapping[str, str]) -> str:
    """The ``data.column_mapping`` YAML that maps ``pairs`` ({site column: contract column})."""
    body = ", ".join(f"{_yaml_key(k)}: {v}" for k, v in pairs.items())
    return f"data: {{column_mapping: {{{table}: {{{body}}}}}}}"


def _yaml_key(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) else f"'{text}'"


@dataclass
class RawTable:
    """One input table as read: contract columns only, ``source_row`` 1-based data rows."""

    name: str
    file: str  #: file name, as used in reports and rejected rows
    path: Path
    frame: pl.DataFrame  #: contract columns: text as String ('' for missing), others typed
    source_row: np.ndarray
    rows_read: int
    unused_columns: list[str] = field(default_factory=list)
    #: rows the reader could not split into the header's fields: (row, reason)
    malformed: list[tuple[int, str, str]] = field(default_factory=list)  # row, reason, column
    encoding: str = "utf-8"


def _table_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            return stem if stem in TABLES else None
    return None


def check_table_names(tables) -> None:
    """Raise InputError for a table name not in the contract or a required table missing."""
    for table in tables:
        if table not in TABLES:
            raise InputError(f"unknown table '{table}' (expected one of {', '.join(TABLES)})")
    for table in REQUIRED_TABLES:
        if table not in tables:
            raise InputError(f"the {table} table is required but was not given")


def locate_tables(path_or_paths) -> dict[str, Path]:
    """Table name -> file, from a folder, a {table: path} mapping or a list of paths."""
    if path_or_paths is None:
        raise InputError("no data given: pass a folder or the table files (or set data.path)")
    found: dict[str, Path] = {}
    if isinstance(path_or_paths, Mapping):
        check_table_names(path_or_paths)
        found = {table: Path(p) for table, p in path_or_paths.items()}
    elif isinstance(path_or_paths, list | tuple):
        for p in map(Path, path_or_paths):
            table = _table_of(p)
            if table is None:
                raise InputError(
                    f"cannot tell which table {p.name} is: name it patients, observations, "
                    "events, outcomes or truth (.csv or .parquet)",
                    file=str(p),
                )
            if table in found:
                raise InputError(f"two files for table '{table}'", file=str(p))
            found[table] = p
    else:
        folder = Path(path_or_paths)
        if not folder.exists():
            raise InputError(f"data folder {folder} does not exist")
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder: pass the folder holding patients.csv")
        files = sorted(p for p in folder.iterdir() if p.is_file())
        for table in TABLES:  # any case: Patients.CSV is the patients table
            hits = [p for p in files if _table_of(p) == table]
            if len(hits) > 1:
                names = " and ".join(h.name for h in hits)
                raise InputError(f"both {names} exist: keep one", file=str(folder))
            if hits:
                found[table] = hits[0]
                continue
            other = [p for p in files if p.name.lower() in {table + x for x in _OTHER_FORMATS}]
            if other:
                raise InputError(_unreadable(other[0], table))
        for table in REQUIRED_TABLES:
            if table not in found:
                seen = ", ".join(p.name for p in files[:10]) or "no files"
                raise InputError(
                    f"{table}.csv (or {table}.parquet) not found in {folder} (it holds: {seen})"
                )
    check_table_names(found)
    for table, p in found.items():
        if not p.is_file():
            raise InputError(f"{table} file does not exist", file=str(p))
    return found


def _unreadable(path: Path, table: str) -> str:
    """Why a table file in another format is not read, and how to convert it."""
    if path.suffix.lower() in (".tsv", ".txt"):
        how = f"rename it to {table}.csv (tab, ';' and '|' delimiters are detected)"
    elif path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".ods"):
        how = (
            f"Excel files are not read (no spreadsheet reader is installed): save the sheet "
            f"as {table}.csv (CSV UTF-8), or convert it with pandas and openpyxl: "
            f"pd.read_excel('{path.name}', dtype=str).to_csv('{table}.csv', index=False)"
        )
    else:
        how = f"write it as {table}.csv or {table}.parquet"
    return f"{path} is the {table} table in a format crs_ml does not read: {how}"


def _open_text(path: Path, encoding: str):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _header(path: Path) -> tuple[list[str], str, str]:
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            with _open_text(path, encoding) as fh:
                line = fh.readline()
            break
        except UnicodeDecodeError:
            continue
        except OSError as exc:
            raise InputError(f"cannot read file ({exc})", file=str(path)) from None
    if not line.strip():
        raise InputError("file is empty (no header line)", file=str(path))
    delimiter = max([",", ";", "\t", "|"], key=line.count)
    names = [
        c.strip().lstrip("\ufeff").strip() for c in next(csv.reader([line], delimiter=delimiter))
    ]
    return names, delimiter, encoding


def _read_csv_python(path, names, delimiter, encoding):
    rows, src, bad = [], [], []
    with _open_text(path, encoding) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        i = 0
        for record in reader:
            if not record:
                continue
            i += 1
            if len(record) != len(names):
                if len(record) < len(names):  # the first field the row lacks
                    column = names[len(record)]
                    why = f"expected {len(names)} fields, found {len(record)}: '{column}' missing"
                else:  # fields beyond the header's last column
                    column = names[-1]
                    why = (
                        f"expected {len(names)} fields, found {len(record)}: extra after '{column}'"
                    )
                bad.append((i, why, column))
                continue
            rows.append(record)
            src.append(i)
    frame = pd.DataFrame(rows, columns=names, dtype="str") if rows else None
    if frame is None:
        frame = pd.DataFrame({n: pd.Series(dtype="str") for n in names})
    return frame, np.asarray(src, dtype="int64"), bad, i


def read_csv(path: Path) -> tuple[pl.DataFrame, np.ndarray, list, int, str]:
    """(frame of text, source rows, malformed rows, rows read, encoding)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names, delimiter, encoding = _header(path)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"column '{dup[0]}' appears twice in the header", file=str(path))
    invalid: list = []

    def _skip(row) -> str:
        invalid.append(row)
        return "skip"

    for enc in dict.fromkeys([encoding, "cp1252", "latin-1"]):
        try:
            table = pcsv.read_csv(
                path,
                read_options=pcsv.ReadOptions(
                    skip_rows=1, column_names=names, encoding="utf8" if "utf" in enc else enc
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter=delimiter, newlines_in_values=True, invalid_row_handler=_skip
                ),
                convert_options=pcsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            encoding = enc
            break
        except pa.ArrowInvalid as exc:
            if "utf8" in str(exc).lower().replace("-", "") and enc != "latin-1":
                invalid.clear()
                continue
            raise InputError(f"cannot parse CSV ({exc})", file=str(path)) from None
    if invalid:  # exact row numbers of malformed rows need the slow reader
        frame, src, bad, n = _read_csv_python(path, names, delimiter, encoding)
        frame = pl.DataFrame({c: pl.Series(c, frame[c].tolist(), pl.String) for c in names})
        frame.columns = names
        return frame, src, bad, n, encoding
    frame = from_arrow(table)
    return frame, np.arange(1, len(frame) + 1, dtype="int64"), [], len(frame), encoding


def from_arrow(table) -> pl.DataFrame:
    """A pyarrow table or record batch as polars, column names kept as they are (polars
    renames an empty name to ``column_<i>``; the reports name the file's columns)."""
    frame = pl.from_arrow(table)
    frame.columns = list(table.schema.names)
    return frame


def ids_to_text(s: pd.Series) -> pd.Series:
    """Identifier column as text (:func:`crs_ml.cohort.ids_as_text`), true/false values
    refused with the column named."""
    try:
        return ids_as_text(s)
    except ValueError as exc:
        raise InputError(str(exc), column=str(s.name)) from None


def read_parquet(path: Path) -> pl.DataFrame:
    import pyarrow.parquet as pq

    try:
        frame = pl.read_parquet(path)
        schema = pq.read_schema(path)
        frame.columns = list(schema.names)  # polars renames an empty name
        meta = schema.pandas_metadata
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(
            f"cannot read Parquet file ({type(exc).__name__}: {exc})", file=str(path)
        ) from None
    frame = frame.drop(_index_names(meta, frame.columns))
    try:
        return typed_polars(frame)
    except InputError as exc:  # name the file the column came from
        raise InputError(exc.reason, file=str(path), row=exc.row, column=exc.column) from None
    except (UnicodeDecodeError, TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise InputError(
            f"a column cannot be read as text ({type(exc).__name__}: {exc})", file=str(path)
        ) from None


def _index_names(meta: dict | None, columns) -> list[str]:
    """Columns holding a pandas index (pandas' reader makes them the index: not data)."""
    names = [c for c in (meta or {}).get("index_columns", []) if isinstance(c, str)]
    return [c for c in names if c in columns]


def pandas_index_columns(schema) -> list[str]:
    """:func:`_index_names` of a pyarrow schema."""
    return _index_names(schema.pandas_metadata, schema.names)


def typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A table read from Parquet or given in memory: ids and other text columns as text
    ('' for missing), numeric and datetime columns kept as they are."""
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    out = {}
    for col in frame.columns:
        s = frame[col]
        if col in ID_COLUMNS:
            out[col] = ids_to_text(s)
        elif isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(s.dtype):
            out[col] = s.astype("str").fillna("")
        elif pd.api.types.is_string_dtype(s.dtype):
            out[col] = s.fillna("") if s.hasnans else s
        else:
            out[col] = s
    return pd.DataFrame(out, index=frame.index)


def polars_frame(frame: pd.DataFrame) -> pl.DataFrame:
    """An in-memory pandas table as a typed polars frame (:func:`typed_frame`, then Arrow):
    Arrow-backed text and numpy numbers are taken over column by column without a copy
    (``pl.from_pandas`` costs about a millisecond even for a one-patient table); other
    types go through ``pl.from_pandas``."""
    typed = typed_frame(frame)
    if typed.columns.has_duplicates:
        out = pl.from_pandas(typed, nan_to_null=False)
        out.columns = list(typed.columns)
        return out
    columns = []
    for name in typed.columns:
        s = typed[name]
        arrow = getattr(s.array, "_pa_array", None)
        if isinstance(s.dtype, pd.StringDtype) and arrow is not None:
            columns.append(pl.Series(name, arrow).cast(pl.String))
        elif isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiub":
            columns.append(pl.Series(name, s.to_numpy()))
        else:
            columns.append(pl.from_pandas(typed[[name]], nan_to_null=False).to_series())
    out = pl.DataFrame(columns, height=len(typed)) if columns else pl.DataFrame()
    out.columns = list(typed.columns)  # polars renames an empty name
    return out


def _pandas_typed(s: pl.Series) -> pl.Series:
    """One column typed as pandas would read it from Parquet (:func:`typed_frame`), for the
    types the polars path does not handle itself (binary, dates, decimals, lists ...)."""
    typed = typed_frame(pd.DataFrame({s.name: s.to_arrow().to_pandas()}))
    return pl.from_pandas(typed, nan_to_null=False).to_series()


def _filled(s: pl.Series) -> pl.Series:
    """A text column with '' for missing (the column itself when none is missing: each polars
    operation on a series is a query with a fixed cost, which one patient's rows feel)."""
    return s.fill_null("") if s.null_count() else s


def typed_polars(frame: pl.DataFrame) -> pl.DataFrame:
    """A table read by polars typed like :func:`typed_frame` types pandas' read of it: ids
    and other text columns as text ('' for missing), integers with missing values as
    floats (as pandas reads them), numbers, booleans and datetimes kept as they are."""
    names = [str(c).strip() for c in frame.columns]
    out = []
    for name, s in zip(names, frame.get_columns(), strict=True):
        s = s.alias(name)
        dt = s.dtype
        if name in ID_COLUMNS:
            if dt.is_float() or not (dt.is_integer() or dt == pl.String):
                if dt == pl.Boolean:
                    raise InputError("identifier column holds true/false values", column=name)
                s = _pandas_typed(s)
            else:
                s = strip_text(_filled(s if dt == pl.String else s.cast(pl.String)))
        elif dt == pl.String:
            s = _filled(s)
        elif isinstance(dt, pl.Categorical | pl.Enum):
            s = s.cast(pl.String).fill_null("")
        elif dt.is_integer() and s.null_count():
            s = s.cast(pl.Float64)
        elif dt.is_float() or dt.is_integer() or isinstance(dt, pl.Datetime):
            pass
        elif dt == pl.Boolean and not s.null_count():
            pass
        else:
            s = _pandas_typed(s)
        out.append(s)
    if not out:
        return pl.DataFrame()
    typed = pl.DataFrame(out)
    typed.columns = names  # polars renames an empty name
    return typed


def mapped_names(columns, table: str, mapping: Mapping[str, str]) -> list[str]:
    """The contract name each of a file's ``columns`` takes (mapping, then case-insensitive
    match; other names unchanged)."""
    contract = CONTRACT_COLUMNS[table]
    rename = {site: target for site, target in mapping.items() if site in columns}
    cols = [rename.get(c, c) for c in columns]
    present = set(cols)
    for i, c in enumerate(cols):
        if c not in contract and c.lower() in contract and c.lower() not in present:
            present.add(c.lower())
            cols[i] = c.lower()
    return cols


def map_columns(frame: pl.DataFrame, table: str, mapping: Mapping[str, str], file: str):
    """(frame with the contract columns, renamed; names of the columns left unused)."""
    contract = CONTRACT_COLUMNS[table]
    found = list(frame.columns)
    cols = mapped_names(found, table, mapping)
    dup = sorted({c for c in cols if c in contract and cols.count(c) > 1})
    if dup:
        raise InputError(f"two columns map to '{dup[0]}'", file=file, column=dup[0])
    inverse = {target: site for site, target in mapping.items()}
    unused = [c for c in cols if c not in contract]
    for col in REQUIRED_COLUMNS[table]:
        if col not in cols:
            if col in inverse:
                hint = f" (the column mapping expects '{inverse[col]}')"
            else:
                hint = _missing_hint(table, found, unused, cols)
            raise InputError(f"missing required column '{col}'{hint}", file=file, column=col)
    if table in TIME_COLUMNS and not any(c in cols for c in TIME_COLUMNS[table]):
        hint = _missing_hint(table, found, unused, cols)
        raise InputError(
            f"missing required column: give 'time' (ISO 8601) or 'hours' (since infusion){hint}",
            file=file,
            column="time",
        )
    kept = [frame.get_column(f).alias(c) for f, c in zip(found, cols, strict=True) if c in contract]
    return pl.DataFrame(kept, height=frame.height), unused


def _missing_hint(table: str, found: list[str], unused: list[str], cols: list[str]) -> str:
    """' (columns found: ...; map ... with data.column_mapping ...)' for a missing column."""
    shown = ", ".join(f"'{c}'" for c in found[:20]) + (" ..." if len(found) > 20 else "")
    pairs = column_suggestions(unused, set(cols), table)
    if pairs:
        return f" (columns found: {shown}; to use them set {mapping_snippet(table, pairs)})"
    return f" (columns found: {shown}; map a column to it with data.column_mapping.{table})"


def read_table(path: Path, table: str, mapping: Mapping[str, str] | None = None) -> RawTable:
    """Read one table and map its columns to the contract names."""
    file = path.name
    if path.name.lower().endswith((".parquet", ".pq")):
        frame = read_parquet(path)
        src = np.arange(1, len(frame) + 1, dtype="int64")
        malformed, n, encoding = [], len(frame), "parquet"
    else:
        frame, src, malformed, n, encoding = read_csv(path)
        ids = [c for c in ID_COLUMNS if c in frame.columns]
        frame = frame.with_columns(strip_text(frame.get_column(c)) for c in ids)
    frame, unused = map_columns(frame, table, mapping or {}, file)
    return RawTable(table, file, path, frame, src, n, unused, malformed, encoding)


def frame_table(
    frame: pd.DataFrame | pl.DataFrame,
    table: str,
    file: str,
    mapping: Mapping[str, str] | None = None,
) -> RawTable:
    """An in-memory table (pandas or polars) as :func:`read_table` would return it from a
    Parquet file."""
    frame = typed_polars(frame) if isinstance(frame, pl.DataFrame) else polars_frame(frame)
    src = np.arange(1, len(frame) + 1, dtype="int64")
    frame, unused = map_columns(frame, table, mapping or {}, file)
    return RawTable(table, file, Path(file), frame, src, len(src), unused, [], "parquet")


def check_mapping(mapping: Mapping[str, Mapping[str, str]]) -> None:
    for table, cols in mapping.items():
        if table not in CONTRACT_COLUMNS:
            raise ConfigError(
                f"data.column_mapping: unknown table '{table}' (expected one of {', '.join(TABLES)})"
            )
        for site, target in cols.items():
            if target not in CONTRACT_COLUMNS[table]:
                raise ConfigError(
                    f"data.column_mapping.{table}: '{site}' maps to '{target}', which is not "
                    f"a column of {table} ({', '.join(CONTRACT_COLUMNS[table])})"
                )
