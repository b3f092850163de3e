"""The README's feature catalogue is generated, never hand-copied: it must match the code."""

from pathlib import Path

from crs_ml.features.catalogue import README_BEGIN, README_END, readme_with_catalogue

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_feature_catalogue_is_current():
    text = README.read_text()
    assert README_BEGIN in text and README_END in text
    assert readme_with_catalogue(text) == text, "run `make readme` to regenerate the catalogue"
