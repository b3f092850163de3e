"""Nothing lost when ``crs-ml score`` is killed (issue 7, part 2).

A real ``python -m crs_ml score`` scores a 3,000-patient simulated cohort with
``--chunk-size 50`` into a folder that already holds the complete output of an earlier run.
It is killed with SIGTERM, and separately SIGKILL, while it is scoring (after its progress
reports the first chunks) and while it is writing (the temp file exists, before the rename).
Afterwards the previous output must be byte-identical, and a re-run must produce a file
byte-identical to an uninterrupted run (Parquet and CSV), with one row per patient.

The killed runs go through a small wrapper around ``crs_ml.cli.main`` that only echoes the
progress callback to stderr (so the test knows when scoring is under way) and, for the
write-window cases, pauses when the complete temp file is about to be renamed; the command
and its code are the real ones. Scores are appended to the temp file chunk by chunk, so a
SIGKILL may leave that hidden temp file behind; the next run deletes it.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest_scoring import setup

N_PATIENTS = 3000
SEED = 777
CHUNK = "50"
RUN_TIMEOUT_S = 90
WRAPPER = r"""
import os, sys, time
from contextlib import contextmanager
import crs_ml.cli.scoring as sc
real_bar = sc.progress_bar

@contextmanager
def echoing_bar():
    with real_bar() as update:
        def echo(stage, done, total):
            update(stage, done, total)
            print(f"PROGRESS {stage} {done} {total}", file=sys.stderr, flush=True)
        yield echo

sc.progress_bar = echoing_bar
if os.environ.get("KILL_TEST_PAUSE_AFTER_WRITE"):
    real_replace = os.replace
    def paused(src, dst, *args, **kwargs):
        print(f"WROTE {src}", file=sys.stderr, flush=True)
        time.sleep(60)
        return real_replace(src, dst, *args, **kwargs)
    os.replace = paused
from crs_ml.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def case(session_dir):
    """Bundle, a 3,000-patient cohort (CSV) and reference outputs of uninterrupted runs."""
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    bundle = setup(session_dir).bundle_dir
    root = session_dir / "kill_score"
    data = root / "cohort"
    tables = simulate_cohort(N_PATIENTS, SEED)
    tables.pop("truth", None)
    tables.pop("outcomes", None)
    write_cohort(tables, data)
    refs = {}
    for ext in ("parquet", "csv"):
        out = root / "ref" / f"X.{ext}"
        proc = _score_cmd(bundle, data, out, wrapper=False)
        proc.wait(timeout=RUN_TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr.read()
        refs[ext] = out
    ids = list(tables["patients"]["patient_id"].astype(str))
    return {"bundle": bundle, "data": data, "root": root, "refs": refs, "ids": ids}


def _score_cmd(bundle, data, out, wrapper: bool, env_extra=None) -> subprocess.Popen:
    head = [sys.executable, "-c", WRAPPER] if wrapper else [sys.executable, "-m", "crs_ml"]
    args = ["score", "--model", str(bundle), "--data", str(data), "--out", str(out),
            "--chunk-size", CHUNK]  # fmt: skip
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([*head, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip


def _wait_for(proc: subprocess.Popen, predicate, timeout: float = RUN_TIMEOUT_S) -> str:
    """Read the child's stderr until a line satisfies ``predicate``; returns that line."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.5):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if predicate(text):
                    return text
    finally:
        sel.close()
    raise AssertionError(f"child never reported the expected line (rc={proc.poll()})")


def _mid_scoring(line: str) -> bool:
    parts = line.split()
    if len(parts) != 4 or parts[:2] != ["PROGRESS", "scoring"]:
        return False
    done, total = int(parts[2]), int(parts[3])
    return 10 * int(CHUNK) <= done < total - 10 * int(CHUNK)


def _kill(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stderr.close()


def _previous_output(case, tmp_path: Path, ext: str) -> Path:
    out = tmp_path / "out" / f"X.{ext}"
    out.parent.mkdir()
    shutil.copyfile(case["refs"][ext], out)
    return out


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_reference_run_has_one_row_per_patient(case):
    for ext, path in case["refs"].items():
        scores = pd.read_parquet(path) if ext == "parquet" else pd.read_csv(path)
        assert list(scores["patient_id"].astype(str)) == case["ids"]
        assert scores["status"].isin(["scored", "not_at_risk", "too_early", "error"]).all()
        assert (scores["status"] == "scored").sum() > N_PATIENTS // 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_kill_while_scoring_keeps_previous_output_and_rerun_is_identical(case, tmp_path, sig):
    out = _previous_output(case, tmp_path, "parquet")
    before = out.read_bytes()
    proc = _score_cmd(case["bundle"], case["data"], out, wrapper=True)
    _wait_for(proc, _mid_scoring)
    _kill(proc, sig)
    # SIGTERM unwinds (crs_ml.cli.main turns it into exit 143); SIGKILL cannot be caught
    assert proc.returncode == (128 + sig if sig == signal.SIGTERM else -sig)
    assert out.read_bytes() == before  # the previous complete output, untouched
    stale = _temp_files(out.parent)
    if sig == signal.SIGTERM:  # unwinds: the temp file is deleted
        assert stale == []
    else:  # cannot be handled: the killed process's hidden temp file remains
        assert len(stale) == 1 and stale[0].startswith(f".X.parquet.{proc.pid}.")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["X.parquet", *stale])
    rerun = _score_cmd(case["bundle"], case["data"], out, wrapper=False)
    rerun.wait(timeout=RUN_TIMEOUT_S)
    assert rerun.returncode == 0, rerun.stderr.read()
    rerun.stderr.close()
    assert out.read_bytes() == case["refs"]["parquet"].read_bytes()
    assert _temp_files(out.parent) == []  # the re-run removed the killed run's stale temp


def test_csv_rerun_is_byte_identical_to_an_uninterrupted_run(case, tmp_path):
    out = tmp_path / "X.csv"
    proc = _score_cmd(case["bundle"], case["data"], out, wrapper=False)
    proc.wait(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr.read()
    proc.stderr.close()
    assert out.read_bytes() == case["refs"]["csv"].read_bytes()


def _kill_in_write_window(case, tmp_path: Path, sig: int) -> tuple[Path, bytes]:
    out = _previous_output(case, tmp_path, "parquet")
    before = out.read_bytes()
    proc = _score_cmd(case["bundle"], case["data"], out, wrapper=True,
                      env_extra={"KILL_TEST_PAUSE_AFTER_WRITE": "1"})  # fmt: skip
    line = _wait_for(proc, lambda s: s.startswith("WROTE "))
    assert Path(line[len("WROTE ") :]).parent == out.parent  # the temp file beside the target
    _kill(proc, sig)
    assert proc.returncode == -sig or proc.returncode == 128 + sig
    assert out.read_bytes() == before
    return out, before


def test_sigkill_while_writing_leaves_previous_output_and_at_most_a_stale_temp(case, tmp_path):
    out, _ = _kill_in_write_window(case, tmp_path, signal.SIGKILL)
    stale = _temp_files(out.parent)
    # SIGKILL cannot be handled: a stale temp file may remain; it never replaces X.parquet
    assert len(stale) <= 1 and all(n.startswith(".X.parquet.") for n in stale)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["X.parquet", *stale])


def test_sigterm_while_writing_leaves_no_temp_file(case, tmp_path):
    out, _ = _kill_in_write_window(case, tmp_path, signal.SIGTERM)
    assert _temp_files(out.parent) == []
