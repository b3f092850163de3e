"""Frozen copy of the pandas/numpy ingest (crs_ml.ingest before the polars engine), the
oracle the parity tests (tests/data/test_ingest_parity.py) compare the package's loader with.

Not part of the package and never edited but to keep it importing: only the imports were
rewritten (crs_ml.ingest.X -> oracle.ingest_pandas.X). It shares crs_ml's core modules
(cohort, config, errors, variables), so both loaders read the same catalogue.
"""
