"""Writing output files atomically: a temp file in the target's folder, renamed when complete.

A reader sees the previous complete file or the new complete file, never half of one.
Temp files are named ``.<name>.<pid>.<random>.tmp``; SIGKILL cannot be caught, so it can
leave one behind, and the next write to the same target deletes those whose process is
gone. Files get the permissions the umask gives (not mkstemp's 0600).

- :class:`AtomicTable`: frames appended chunk by chunk as Parquet or CSV;
- :func:`atomic_write`: one frame;
- :func:`write_json`: JSON, NaN and inf written as null;
- :func:`write_text`: text (an HTML page).
"""

from __future__ import annotations

import glob
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported by whoever passes a frame; the CLI starts without it
    import pandas as pd

__all__ = ["AtomicTable", "atomic_write", "columns_frame", "write_json", "write_text"]


def _temp_beside(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp"
    )
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, target: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
    os.replace(tmp, target)


class AtomicTable:
    """Frames appended (``write``) to a temp file beside ``target`` as Parquet or CSV
    (``kind``), renamed onto ``target`` when the ``with`` block ends without an error."""

    def __init__(self, target: Path, kind: str) -> None:
        self.target, self.kind = Path(target), kind
        self.tmp = _temp_beside(self.target)
        self._writer = None
        self._rows = 0

    def write(self, frame: pd.DataFrame | Mapping[str, Any]) -> None:
        """Append ``frame``: a pandas frame, or its columns as a mapping of name to 1-D array
        (object arrays for text), in order. Parquet: the first write fixes the file's schema
        (through pandas, so the pandas metadata is that of a frame); a mapping appended after
        it goes to Arrow directly, without a pandas copy, to the same bytes."""
        if isinstance(frame, Mapping):
            if self.kind == "csv" or self._writer is None:
                frame = columns_frame(frame)
            else:
                import pyarrow as pa

                schema = self._writer.schema
                arrays = [pa.array(frame[f.name], type=f.type, from_pandas=True) for f in schema]
                self._writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                self._rows += len(arrays[0]) if arrays else 0
                return
        if self.kind == "csv":
            frame.to_csv(self.tmp, mode="w" if self._rows == 0 else "a",
                         header=self._rows == 0, index=False)  # fmt: skip
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = None
            if self._writer is None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                          for f in table.schema]  # fmt: skip
                schema = pa.schema(fields, metadata=table.schema.metadata)
                self._writer = pq.ParquetWriter(self.tmp, schema)
                if not table.schema.equals(schema, check_metadata=True):
                    table = None  # an all-empty column: converted again as text
            if table is None:
                table = pa.Table.from_pandas(frame, schema=self._writer.schema,
                                             preserve_index=False)  # fmt: skip
            self._writer.write_table(table)
        self._rows += len(frame)

    def __enter__(self) -> AtomicTable:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            if exc_type is None:
                _publish(self.tmp, self.target)
        finally:
            self.tmp.unlink(missing_ok=True)


def columns_frame(columns: Mapping[str, Any]) -> pd.DataFrame:
    """A frame of named 1-D columns; object arrays stay object (not pandas' str)."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame({name: pd.Series(v, dtype=object, copy=False)
                         if isinstance(v, np.ndarray) and v.dtype == object else v
                         for name, v in columns.items()}, copy=False)  # fmt: skip


def _remove_stale_temps(target: Path) -> None:
    """Delete temp files a killed run (SIGKILL cannot be caught) left beside ``target``:
    ``.<name>.<pid>.<random>.tmp`` whose process no longer runs."""
    for path in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = path.name[len(target.name) + 2 :].split(".")[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def atomic_write(frame: pd.DataFrame, target: Path, kind: str) -> None:
    """Write ``frame`` as Parquet or CSV to a temp file beside ``target``, then rename."""
    with AtomicTable(target, kind) as table:
        table.write(frame)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):
        return _clean(obj.item())
    return obj


def write_json(path: str | Path, payload: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename); NaN -> null."""
    target = Path(path)
    tmp = _temp_beside(target)
    try:
        with open(tmp, "w") as fh:
            json.dump(_clean(payload), fh, indent=2)
        _publish(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (temp file in the same folder, then rename)."""
    target = Path(path)
    tmp = _temp_beside(target)
    try:
        tmp.write_text(text, encoding="utf-8")
        _publish(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
