"""crs_ml.tracking."""
