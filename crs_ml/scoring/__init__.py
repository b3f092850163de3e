"""crs_ml.scoring."""
