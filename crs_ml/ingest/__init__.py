"""crs_ml.ingest."""
