"""Atomic output files (crs_ml.files): complete or absent, normal permissions, stale temps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from crs_ml.files import AtomicTable, atomic_write, write_json


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_chunks_appended_then_published_with_umask_permissions(tmp_path, kind):
    target = tmp_path / f"scores.{kind}"
    old = os.umask(0o022)
    try:
        with AtomicTable(target, kind) as table:
            table.write(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", None]}))
            assert not target.exists()  # nothing published before the end
            table.write(pd.DataFrame({"a": [3.0], "b": ["z"]}))
    finally:
        os.umask(old)
    back = pd.read_parquet(target) if kind == "parquet" else pd.read_csv(target)
    assert list(back["a"]) == [1.0, 2.0, 3.0]
    assert (target.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_failure_leaves_the_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "scores.parquet"
    atomic_write(pd.DataFrame({"a": [1.0]}), target, "parquet")
    before = target.read_bytes()
    with pytest.raises(RuntimeError), AtomicTable(target, "parquet") as table:
        table.write(pd.DataFrame({"a": [2.0]}))
        raise RuntimeError("killed")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "out.json"
    stale = tmp_path / f".out.json.{_dead_pid()}.abc123.tmp"
    live = tmp_path / f".out.json.{os.getppid()}.def456.tmp"
    other = tmp_path / f".other.json.{_dead_pid()}.ghi789.tmp"
    for path in (stale, live, other):
        path.write_text("half")
    write_json(target, {"auroc": float("nan"), "n": 3})
    assert json.loads(target.read_text()) == {"auroc": None, "n": 3}
    assert not stale.exists()
    assert live.exists() and other.exists()  # a running process's, another target's


def _chunk(rows: list[tuple]) -> dict:
    """Columns as the batch scorer hands them over: object text (None missing), floats (NaN
    missing), UTC timestamps."""
    import numpy as np

    ids, band, risk, when = zip(*rows, strict=True)
    return {"patient_id": np.array(ids, dtype=object), "risk_band": np.array(band, dtype=object),
            "risk": np.array(risk, dtype=np.float64),
            "as_of": pd.Series(pd.to_datetime(list(when), utc=True))}  # fmt: skip


@pytest.mark.parametrize("kind", ["parquet", "csv"])
@pytest.mark.parametrize("first_band", [None, "low"])  # an all-empty first column, or text
def test_columns_appended_give_the_bytes_of_the_frames(tmp_path, kind, first_band):
    from crs_ml.files import columns_frame

    chunks = [_chunk([("p1", first_band, float("nan"), "2024-01-01 00:00")]),
              _chunk([("p2", "high", 0.5, "2024-01-02 06:00"), ("p3", None, float("nan"),
                                                                "2024-01-03 00:00")]),
              _chunk([("p4", "low", 0.1, "2024-01-04 12:30")])]  # fmt: skip
    paths = {}
    for how in ("frames", "columns"):
        paths[how] = tmp_path / how / f"scores.{kind}"
        with AtomicTable(paths[how], kind) as table:
            for columns in chunks:
                table.write(columns_frame(columns) if how == "frames" else columns)
    assert paths["columns"].read_bytes() == paths["frames"].read_bytes()
    if kind == "parquet":  # missing numbers read back missing, text stays text
        back = pd.read_parquet(paths["columns"])
        assert back["risk"].isna().tolist() == [True, False, True, False]
        assert back["risk_band"].isna().tolist()[1:] == [False, True, False]
        assert back["risk_band"].tolist()[1::2] == ["high", "low"]
