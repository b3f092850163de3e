"""Which adapter reads a ``--data`` source: ``data.format`` in the config, else detected.

:func:`load_data` is what the commands call instead of :func:`crs_ml.ingest.load.load_cohort`;
a new format adds its detector and loader to :data:`LOADERS` / :func:`detect_format`.
:func:`as_contract_folder` writes a non-contract source's tables as a contract Parquet folder
(for the chunked scorer, which streams contract files).
"""

from __future__ import annotations

from pathlib import Path

from crs_ml.config import DataConfig
from crs_ml.errors import InputError

__all__ = ["LOADERS", "as_contract_folder", "detect_format", "load_data", "source_text"]

#: format -> "module:function" taking (source, options) and returning a Cohort
LOADERS = {
    "contract": "crs_ml.ingest.load:load_cohort",
    "omop": "crs_ml.ingest.omop:load_omop",
    "meds": "crs_ml.ingest.coded.meds:load_meds",
    "fhir": "crs_ml.ingest.coded.fhir:load_fhir",
}


def source_text(source) -> str | None:
    """The source as text, with a URL that went through ``pathlib.Path`` repaired."""
    from crs_ml.ingest.omop import fix_url

    return None if source is None else fix_url(str(source))


def detect_format(source, options: DataConfig | None = None) -> str:
    """``options.format`` when set, else: a PostgreSQL URL, a DuckDB file or a folder with a
    ``person`` table is ``omop``; a MEDS root (``data/*.parquet``) ``meds``; a folder of FHIR
    NDJSON files ``fhir``; anything else ``contract``."""
    from crs_ml.ingest.coded.detect import coded_format
    from crs_ml.ingest.omop import is_omop_source

    if options is not None and options.format is not None:
        return options.format
    if is_omop_source(source_text(source)):
        return "omop"
    return coded_format(source_text(source)) or "contract"


def load_data(source, options: DataConfig | None = None):
    """The cohort at ``source`` (or ``options.path``) read by its format's adapter."""
    import importlib

    opts = options or DataConfig()
    source = source if source is not None else opts.path
    if source is None:
        raise InputError("no data given: pass --data or set data.path in the config")
    fmt = detect_format(source, opts)
    if fmt not in LOADERS:
        raise InputError(f"data.format '{fmt}' has no reader in this version")
    module, func = LOADERS[fmt].split(":")
    text = source_text(source)
    if fmt == "contract":
        return getattr(importlib.import_module(module), func)(source, opts)
    return getattr(importlib.import_module(module), func)(text, opts)


def as_contract_folder(source, options: DataConfig | None, out_dir: Path) -> Path:
    """``source`` itself when it is a contract cohort, else the contract tables its adapter
    builds (before normalisation, so every contract rule still applies when they are read)
    written as Parquet files in ``out_dir``."""
    fmt = detect_format(source, options)
    if fmt == "contract":
        return Path(source)
    if fmt in ("meds", "fhir"):
        from crs_ml.ingest.coded.assemble import coded_frames
        from crs_ml.ingest.coded.fhir import read_fhir
        from crs_ml.ingest.coded.meds import read_meds

        read = read_meds if fmt == "meds" else read_fhir
        opts = options or DataConfig()
        frames = coded_frames(read(source_text(source), opts), opts).frames
    elif fmt != "omop":
        raise InputError(f"data.format '{fmt}' cannot be scored in chunks in this version")
    else:
        from crs_ml.ingest.omop import omop_frames

        frames, _, _ = omop_frames(source_text(source), options or DataConfig())
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
    return out_dir
