"""crs_ml.evaluation."""
