"""The project's own error types.

Every error a user can cause (bad files, bad config, incompatible model) is raised as a
subclass of :class:`CrsMlError` with a message that names the file, row, column and reason
where they are known. The CLI turns these into a one-line message and a non-zero exit code;
anything else is a bug.
"""

from __future__ import annotations

#: exit codes of the command line (README, "The workflow")
EXIT_OK = 0
#: ``crs-ml check``: the cohort is not usable (or, with --strict, rows were rejected)
EXIT_UNUSABLE = 1
#: any error the user can fix: bad input, config or model (one line on stderr)
EXIT_USER_ERROR = 2
#: ``crs-ml score`` wrote its scores but no patient could be scored, or more than
#: --max-unscored-fraction of them could not
EXIT_UNSCORED = 3


class CrsMlError(Exception):
    """Base class for all errors the project raises on purpose."""


class InputError(CrsMlError, ValueError):
    """Bad input data: names the file, the 1-based data row (header excluded), the column
    and the reason, as far as they are known."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.row = row
        self.column = column
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class ConfigError(CrsMlError, ValueError):
    """A configuration file or override that does not validate."""


class ModelError(CrsMlError):
    """A model artifact that cannot be used (version or schema mismatch, tampering)."""
