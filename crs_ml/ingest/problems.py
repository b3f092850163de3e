"""Bookkeeping of loading problems and the check report.

Severities:

``fatal``
    the cohort is not usable as it is (``crs-ml check`` exits 1): a structural problem
    (missing file or required column, unreadable file, duplicated patient ids: these raise
    :class:`~crs_ml.errors.InputError` in :func:`crs_ml.ingest.load.load_cohort`), no usable
    observation, or rows that name patients missing from the patients table (a linkage
    problem: the rows are rejected, the rest still loads).
``error``
    rows rejected (left out, listed in ``Cohort.rejected`` with file, row, column and reason):
    unparseable or implausible times, unknown units, missing units under ``strict_units``,
    unknown events, invalid grades. The rest loads; ``crs-ml check --strict`` fails on these.
``warning``
    rows kept with an assumption or a flag (missing unit, out-of-range value, unit read as
    FEU), or left out without being an error (non-numeric results, variables not in the
    catalogue, duplicates); columns and lab names that resemble the contract's but are not
    used (with the mapping that would use them).
``info``
    for the record (censored values, ignored columns).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.cohort import REJECTED_COLUMNS, empty_rejected
from crs_ml.ingest.values import strip_text

SEVERITIES = ("fatal", "error", "warning", "info")
MAX_EXAMPLES = 5
MAX_DETAILS = 50


@dataclass
class Problem:
    table: str
    code: str
    severity: str
    message: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, int] = field(default_factory=dict)

    @property
    def hint(self) -> str:
        """What to do about the problem, when the report can say more than its message: for
        variables not in the catalogue, a config snippet declaring the most frequent one."""
        if self.code != "unknown_variable" or not self.details:
            return ""
        from crs_ml.variables import declaration_hint

        name = min(self.details.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return (
            "to use one, declare it in the config (README: Site-defined variables), e.g. "
            + declaration_hint(name)
        )

    def to_dict(self) -> dict[str, Any]:
        top = sorted(self.details.items(), key=lambda kv: (-kv[1], kv[0]))
        details = dict(top[:MAX_DETAILS])
        if len(top) > MAX_DETAILS:
            details[f"... {len(top) - MAX_DETAILS} more"] = int(
                sum(v for _, v in top[MAX_DETAILS:])
            )
        return {
            "table": self.table,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "count": int(self.count),
            "details": details,
            "examples": self.examples,
        }


class Collector:
    """Collects problems and rejected rows while the tables are normalised."""

    def __init__(self) -> None:
        self.problems: dict[tuple[str, str], Problem] = {}
        self._rejected: list[pd.DataFrame] = []
        self.rejected_by_table: dict[str, int] = {}

    def add(
        self,
        table: str,
        code: str,
        severity: str,
        message: str,
        count: int,
        examples: list[dict] | None = None,
        details: dict[str, int] | None = None,
    ) -> None:
        if count <= 0:
            return
        p = self.problems.setdefault((table, code), Problem(table, code, severity, message))
        p.count += int(count)
        p.examples.extend((examples or [])[: MAX_EXAMPLES - len(p.examples)])
        for key, n in (details or {}).items():
            p.details[str(key)] = p.details.get(str(key), 0) + int(n)

    def add_rejected(self, table: str, frame: pd.DataFrame) -> None:
        self._rejected.append(frame)
        self.rejected_by_table[table] = self.rejected_by_table.get(table, 0) + len(frame)

    def rejected(self) -> pd.DataFrame:
        parts = [p for p in self._rejected if len(p)]
        if not parts:
            return empty_rejected()
        out = pd.concat(parts, ignore_index=True)[REJECTED_COLUMNS]
        out["row"] = out["row"].astype("int64")
        return out.sort_values(["file", "row"], kind="stable").reset_index(drop=True)


class CodedText:
    """A text column held as codes into its distinct values (``uniques``, object array);
    rows are materialised only when indexed (``column[idx]``), e.g. for rejected rows."""

    def __init__(self, codes: np.ndarray, uniques: np.ndarray):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.uniques = np.asarray(uniques, dtype=object)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, idx) -> np.ndarray:
        return self.uniques[self.codes[idx]]

    def to_numpy(self) -> np.ndarray:
        return self.uniques[self.codes]


class ColumnText:
    """A text column held as a polars Series; rows are materialised only when indexed
    (``column[idx]``, an object array), e.g. for rejected rows."""

    def __init__(self, series: pl.Series, strip: bool = False):
        self.series = series
        self.strip = strip  #: rows are given without surrounding whitespace

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, idx) -> np.ndarray:
        picked = self.series.gather(np.asarray(idx))
        if self.strip:
            picked = strip_text(picked)
        return np.asarray(picked.to_list(), dtype=object)


def _as_text(values, idx: np.ndarray) -> np.ndarray:
    if values is None:
        return np.full(idx.size, "", dtype=object)
    if isinstance(values, pl.Series):  # rows of a polars column, read as pandas reads them
        picked = values.gather(idx).to_pandas()
    elif isinstance(values, pd.Series):
        picked = values.iloc[idx]
    elif isinstance(values, CodedText | ColumnText):
        picked = values[idx]
    else:
        picked = np.asarray(values)[idx]
    return pd.Series(picked, dtype="object").astype("str").fillna("").to_numpy(dtype=object)


class RowChecks:
    """Row-level checks of one table. ``ok`` marks rows still in; a row is rejected once,
    with the first reason found."""

    def __init__(self, collector: Collector, table: str, file: str, source_row, patient_id):
        self.collector = collector
        self.table = table
        self.file = file
        self.source_row = np.asarray(source_row, dtype="int64")
        if isinstance(patient_id, CodedText | ColumnText):
            self.patient_id = patient_id
        else:
            self.patient_id = np.asarray(patient_id, dtype=object)
        self.ok = np.ones(len(self.source_row), dtype=bool)

    def _examples(self, idx, column, values) -> list[dict]:
        if idx.size == 0:
            return []
        first = idx[:MAX_EXAMPLES]
        texts = _as_text(values, first)
        return [
            {"file": self.file, "row": int(self.source_row[i]), "column": column, "value": t}
            for i, t in zip(first, texts, strict=True)
        ]

    def reject(
        self,
        mask,
        column: str,
        code: str,
        message: str,
        reason: str,
        values=None,
        *,
        severity: str = "error",
        details: dict[str, int] | None = None,
        detail_key: str | None = None,
        record: bool = True,
    ) -> int:
        """Leave out the rows of ``mask`` still in. ``reason`` may contain ``{value}`` (the
        row's value from ``values``). ``record=False`` leaves them out without listing them
        in ``Cohort.rejected`` (for rows that are not errors, e.g. unknown variables).
        ``detail_key`` counts the rows under that key in the problem's details."""
        idx = np.flatnonzero(np.asarray(mask, dtype=bool) & self.ok)
        if idx.size == 0:
            return 0
        self.ok[idx] = False
        if record:
            if "{value}" in reason:
                before, after = reason.split("{value}", 1)
                reasons = before + pd.Series(_as_text(values, idx), dtype=object) + after
            else:
                reasons = pd.Series(np.full(idx.size, reason, dtype=object))
            self.collector.add_rejected(
                self.table,
                pd.DataFrame(
                    {
                        "file": self.file,
                        "row": self.source_row[idx],
                        "column": column,
                        "reason": reasons.to_numpy(dtype=object),
                        "patient_id": self.patient_id[idx],
                    }
                ),
            )
        return self._count(idx, column, code, severity, message, values, details, detail_key)

    def note(
        self,
        mask,
        column: str,
        code: str,
        message: str,
        values=None,
        *,
        severity: str = "warning",
        details: dict[str, int] | None = None,
        detail_key: str | None = None,
    ) -> int:
        """Count a problem on rows that stay in."""
        idx = np.flatnonzero(np.asarray(mask, dtype=bool) & self.ok)
        return self._count(idx, column, code, severity, message, values, details, detail_key)

    def _count(self, idx, column, code, severity, message, values, details, detail_key) -> int:
        """Add the problem for rows ``idx`` to the collector; ``detail_key`` counts them."""
        if detail_key is not None and idx.size:
            details = {**(details or {}), detail_key: idx.size}
        self.collector.add(
            self.table,
            code,
            severity,
            message,
            idx.size,
            self._examples(idx, column, values),
            details,
        )
        return int(idx.size)


def counts_by(labels: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    """{label: count} over the rows of ``mask``."""
    if not np.any(mask):
        return {}
    names, counts = np.unique(
        np.asarray(labels, dtype=object)[mask].astype(str), return_counts=True
    )
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


@dataclass
class TableSummary:
    table: str
    file: str
    rows_read: int
    rows_used: int
    rows_rejected: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class CheckReport:
    """What loading found: per table rows read and used, and every problem with counts and
    first examples. ``usable`` is False when any problem is fatal."""

    source: str | None = None
    tables: dict[str, TableSummary] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return not any(p.severity == "fatal" for p in self.problems)

    def count(self, severity: str) -> int:
        return int(sum(p.count for p in self.problems if p.severity == severity))

    @property
    def n_errors(self) -> int:
        return self.count("error")

    @property
    def n_warnings(self) -> int:
        return self.count("warning")

    def problem(self, code: str, table: str | None = None) -> Problem | None:
        for p in self.problems:
            if p.code == code and (table is None or p.table == table):
                return p
        return None

    @property
    def n_rejected(self) -> int:
        """Rows left out of the tables, whatever the severity of their problem (a warning
        such as a lab name that looks like a catalogue variable rejects rows too)."""
        return int(sum(t.rows_rejected for t in self.tables.values()))

    def passes(self, strict: bool = False) -> bool:
        """Usable, and with ``strict`` also no rejected rows and no error at all."""
        return self.usable and (not strict or (self.n_errors == 0 and self.n_rejected == 0))

    @classmethod
    def from_error(cls, exc: Exception, source: str | None = None) -> CheckReport:
        """A report for a load that failed on a structural problem."""
        example = {k: getattr(exc, k, None) for k in ("file", "row", "column")}
        problem = Problem("input", "structural", "fatal", str(exc), 1, [example])
        return cls(source=source, problems=[problem])

    def sort(self) -> None:
        tables = {t: i for i, t in enumerate(self.tables)}
        self.problems.sort(
            key=lambda p: (_ORDER.get(p.severity, 9), tables.get(p.table, 99), p.code)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "usable": self.usable,
            "n_fatal": self.count("fatal"),
            "n_errors": self.n_errors,
            "n_rejected": self.n_rejected,
            "n_warnings": self.n_warnings,
            "tables": {k: v.to_dict() for k, v in self.tables.items()},
            "problems": [p.to_dict() for p in self.problems],
            "options": self.options,
        }

    def hints(self) -> dict[str, str]:
        """{problem code: what to do} for the problems whose :attr:`Problem.hint` says more
        than their message (``crs-ml check`` prints them and adds them to its JSON)."""
        return {p.code: p.hint for p in self.problems if p.hint}

    def render(self, console=None) -> None:
        """Print the report with rich (tables of the inputs and of the problems)."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = console or Console()
        verdict = "[bold green]usable[/]" if self.usable else "[bold red]NOT usable[/]"
        console.print(f"Cohort check of {self.source or 'input'}: {verdict}")
        if self.tables:
            t = Table("table", "file", "rows read", "rows used", "rejected", title="Tables")
            for s in self.tables.values():
                t.add_row(
                    s.table, s.file, f"{s.rows_read:,}", f"{s.rows_used:,}", f"{s.rows_rejected:,}"
                )
            console.print(t)
        if not self.problems:
            console.print("No problems found.")
            return
        style = {"fatal": "bold red", "error": "red", "warning": "yellow", "info": "dim"}
        t = Table("severity", "table", "problem", "count", "details / examples", title="Problems")
        for p in self.problems:
            d = p.to_dict()
            detail = ", ".join(f"{k}: {v:,}" for k, v in list(d["details"].items())[:8])
            ex = "; ".join(  # examples without a value (structural) add nothing to the message
                f"row {e.get('row')} {e.get('column') or ''}={e.get('value')!r}"
                for e in p.examples[:3]
                if "value" in e
            )
            hint = escape(p.hint)  # a config snippet: its brackets are not markup
            body = "\n".join(x for x in (p.message, detail, ex, hint) if x)
            t.add_row(
                f"[{style.get(p.severity, '')}]{p.severity}[/]",
                p.table,
                p.code,
                f"{p.count:,}",
                body,
            )
        console.print(t)
        console.print(
            f"{self.count('fatal')} fatal, {self.n_rejected:,} rows rejected "
            f"({self.n_errors:,} by errors), {self.n_warnings:,} warnings"
        )

    def to_text(self, width: int = 120) -> str:
        from rich.console import Console

        buf = io.StringIO()
        self.render(Console(file=buf, width=width, color_system=None, force_terminal=False))
        return buf.getvalue()
