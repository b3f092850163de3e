"""``crs-ml score --board``, and the board opened in headless Chromium (Debian's package).

The browser test needs the ``chromium`` command (``.ci/run`` installs it when missing) and
skips, with the reason in pytest's summary, only where it is not installed. The page's
Content-Security-Policy blocks every fetch; Chromium logs each blocked request and each
script error to stderr (``--enable-logging=stderr``), which the test reads; ``--dump-dom``
shows the page's script ran (it sorts the list and marks the document ready).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest_scoring import new_patients, setup

import crs_ml.cli as cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1400,1800"]  # fmt: skip
#: what Chromium writes to stderr for a script error, a console message or a blocked fetch
PROBLEM = re.compile(r"Uncaught|:CONSOLE[:(]|Refused to|Content Security Policy|net::ERR_", re.I)


def run(args: list[str]) -> int:
    try:
        cli.main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args,
                           page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def written(session_dir, tmp_path_factory):
    trained, new = setup(session_dir), new_patients(session_dir)
    folder = tmp_path_factory.mktemp("board")
    out, page = folder / "scores.csv", folder / "board.html"
    code = run(["score", "--model", str(trained.bundle_dir), "--data", str(new.data),
                "--as-of-hours", "36", "--out", str(out), "--board", str(page)])  # fmt: skip
    assert code == 0
    return new, out, page


def test_score_writes_the_board_beside_the_scores(written, capsys):
    new, out, page = written
    scores = pd.read_csv(out, dtype={"patient_id": str})
    html = page.read_text(encoding="utf-8")
    for pid in new.cohort.patients["patient_id"]:
        assert '<a href="#p' in html and f">{pid}</a>" in html
    assert html.count("<tr data-rank=") == len(scores) == len(new.cohort.patients)
    assert [p.name for p in page.parent.iterdir() if p.name.startswith(".")] == []


def test_ids_that_read_as_missing_stay_ids_on_a_board_from_a_csv_scores_file(session_dir, tmp_path):
    trained, new = setup(session_dir), new_patients(session_dir)
    tables = {t: pd.read_csv(new.data / f"{t}.csv", dtype={"patient_id": str})
              for t in ("patients", "observations", "events")}  # fmt: skip
    odd = dict(zip(tables["patients"]["patient_id"][:3], ["NA", "null", "nan"], strict=True))
    data = tmp_path / "data"
    data.mkdir()
    for t, f in tables.items():
        f.assign(patient_id=f["patient_id"].replace(odd)).to_csv(data / f"{t}.csv", index=False)
    out, page = tmp_path / "s.csv", tmp_path / "b.html"
    assert run(["score", "--model", str(trained.bundle_dir), "--data", str(data),
                "--as-of-hours", "36", "--out", str(out), "--board", str(page)]) == 0  # fmt: skip
    html = page.read_text(encoding="utf-8")
    for pid in odd.values():
        assert f">{pid}</a>" in html


def test_board_option_wants_an_html_file(session_dir, tmp_path, capsys):
    trained, new = setup(session_dir), new_patients(session_dir)
    code = run(["score", "--model", str(trained.bundle_dir), "--data", str(new.data),
                "--out", str(tmp_path / "s.parquet"), "--board", str(tmp_path / "b.pdf")])  # fmt: skip
    assert code != 0
    assert "--board" in capsys.readouterr().err
    assert not (tmp_path / "s.parquet").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_opens_in_chromium_without_errors_or_requests(written, tmp_path):
    _, _, page = written
    shot = tmp_path / "board.png"
    proc = chromium(page, tmp_path, f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:4] == b"\x89PNG"
    assert not PROBLEM.search(proc.stderr), PROBLEM.search(proc.stderr).group(0)
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0
    n = page.read_text().count("<tr data-rank=")
    assert f'data-board="ready" data-rows="{n}"' in dom.stdout  # the script ran
    assert 'aria-sort="descending">Risk' in dom.stdout
    assert not PROBLEM.search(dom.stderr)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_the_check_sees_a_script_error_and_a_blocked_request(written, tmp_path):
    # the same page with a broken script and an external image: the check above must fail
    _, _, page = written
    bad = tmp_path / "bad.html"
    html = page.read_text().replace("</body>", '<img src="http://127.0.0.1:9/x.png">'
                                    "<script>no_such_function();</script></body>")  # fmt: skip
    bad.write_text(html)
    stderr = chromium(bad, tmp_path, "--dump-dom").stderr
    assert re.search(r"Uncaught.*no_such_function", stderr)
    assert re.search(r"image 'http://127\.0\.0\.1:9/x\.png' violates .*Content Security", stderr)
    assert len(PROBLEM.findall(stderr)) >= 2
