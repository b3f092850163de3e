"""crs_ml.reporting."""
