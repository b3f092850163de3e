"""The batch run's pipeline (crs_ml.scoring.batch.score_to_file with its read-ahead worker):
the patients table's order and one row per patient whatever the chunking, the same output
with and without the worker, and a failure while reading a later chunk surfaced with the
chunk, its patients and the data folder (and no output file left behind)."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest_scoring import new_patients, setup

from crs_ml.scoring.batch import score_to_file


@pytest.fixture(scope="module")
def trained(session_dir):
    return setup(session_dir)


@pytest.fixture(scope="module")
def new(session_dir):
    return new_patients(session_dir)


def reversed_cohort(new, folder):
    """``new``'s files with the patients table in reverse order (long tables unchanged)."""
    shutil.copytree(new.data, folder)
    patients = pd.read_csv(folder / "patients.csv", dtype=str, keep_default_na=False)
    patients.iloc[::-1].to_csv(folder / "patients.csv", index=False)
    return list(patients["patient_id"].iloc[::-1])


@pytest.mark.parametrize("chunk_size", [1, 7, 5000])
def test_one_row_per_patient_in_the_patients_tables_order(trained, new, tmp_path, chunk_size):
    data = tmp_path / "cohort"
    ids = reversed_cohort(new, data)
    runs = {}
    for depth in (0, 1, 2):
        out = tmp_path / f"scores_{depth}.parquet"
        result = score_to_file(trained.bundle, data, out, as_of_hours=30,
                               chunk_size=chunk_size, read_ahead_chunks=depth)  # fmt: skip
        runs[depth] = pd.read_parquet(out)
        assert result.n_patients == len(ids)
        assert list(runs[depth]["patient_id"].astype(str)) == ids
    assert (runs[0]["status"] == "scored").sum() > len(ids) // 2
    # the worker changes when a chunk is read, never what is written
    pd.testing.assert_frame_equal(runs[1], runs[0])
    pd.testing.assert_frame_equal(runs[2], runs[0])


def parquet_cohort(new, folder, rows_per_group: int = 400) -> None:
    """``new`` as Parquet files, observations in row groups of ``rows_per_group`` rows."""
    folder.mkdir()
    for name in ("patients", "observations", "events"):
        frame = pd.read_csv(new.data / f"{name}.csv", dtype=str, keep_default_na=False)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                       folder / f"{name}.parquet", row_group_size=rows_per_group)  # fmt: skip


def corrupt_last_row_group(path) -> None:
    """Overwrite the middle of the compressed pages of the last row group's columns other
    than patient_id (the footer and the ids stay intact): the file opens, the ids read, and
    reading those rows fails."""
    meta = pq.ParquetFile(path).metadata
    data = bytearray(path.read_bytes())
    group = meta.row_group(meta.num_row_groups - 1)
    for c in range(meta.num_columns):
        col = group.column(c)
        if col.path_in_schema == "patient_id":
            continue
        base = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
        start = base + col.total_compressed_size // 3
        end = base + 2 * col.total_compressed_size // 3
        data[start:end] = b"\xab" * (end - start)
    path.write_bytes(bytes(data))


def test_a_reading_failure_names_the_chunk_and_leaves_no_output(trained, new, tmp_path):
    data = tmp_path / "cohort"
    parquet_cohort(new, data)
    corrupt_last_row_group(data / "observations.parquet")
    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    with pytest.raises(Exception) as info:
        score_to_file(trained.bundle, data, out, as_of_hours=30, chunk_size=8)
    where = [n for n in getattr(info.value, "__notes__", []) if n.startswith("reading chunk")]
    assert len(where) == 1, info.value
    assert "of 5 (patients " in where[0] and f"of the patients table) of {data}" in where[0]
    assert list(out.parent.iterdir()) == []  # no scores file, no temp file


def test_the_columns_written_are_the_scores_table(trained, new):
    """What the batch run hands the file writer (scores_columns, no pandas frame) is the
    scores table of score(), column for column, in its order, with the same dtypes."""
    from crs_ml.files import columns_frame
    from crs_ml.ingest.load import load_cohort
    from crs_ml.scoring.score import (
        begin,
        chunk_features,
        explain_chunk,
        scores_columns,
        scores_table,
    )

    s = begin(trained.bundle, load_cohort(new.data), as_of_hours=30, chunk_size=50)
    for k in range(len(s.chunks)):
        explain_chunk(s, k, chunk_features(s, k))
    table = scores_table(s)
    assert (table["status"] == "scored").sum() > 0 and table["message"].ne("").any()
    pd.testing.assert_frame_equal(columns_frame(scores_columns(s)), table)


def test_top_is_the_highest_risks_of_the_file(trained, new, tmp_path):
    """``top``: the scored patients of highest risk, across chunks, as the file holds them
    (ties in the file's order)."""
    out = tmp_path / "scores.parquet"
    result = score_to_file(trained.bundle, new.data, out, as_of_hours=30, chunk_size=7, top=5)
    written = pd.read_parquet(out)
    scored = written[written["status"] == "scored"]
    assert len(scored) > 5 and len(result.top) == 5
    expected = scored.sort_values("risk", ascending=False, kind="stable").head(5)
    # the file reads text back as pandas' str: the values are compared, not the text dtype
    pd.testing.assert_frame_equal(result.top.reset_index(drop=True),
                                  expected.reset_index(drop=True), check_dtype=False)  # fmt: skip
