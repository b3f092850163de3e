"""crs_ml.features."""
