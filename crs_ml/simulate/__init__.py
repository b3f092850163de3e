"""crs_ml.simulate."""
