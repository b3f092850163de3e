"""crs_ml.modeling."""
