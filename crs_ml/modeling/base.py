"""What every risk model of this package shares with scikit-learn: a binary classifier
(0/1 outcome, ``classes_[1]`` the event) that accepts missing values (NaN) in X."""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin


class BinaryRiskClassifier(ClassifierMixin, BaseEstimator):
    """Base of the risk models: scikit-learn tags (NaN allowed, binary only) and the fitted
    feature names."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def _names(self) -> list[str]:
        """The fitted feature names (``x0``, ``x1``, ... for an array without names)."""
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]


class LogOddsRiskClassifier(BinaryRiskClassifier):
    """A risk model whose ``decision_function`` is the event's log-odds: probabilities and
    classes follow from it (the additive model and the stack)."""

    def predict_proba(self, X) -> np.ndarray:
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(np.int64)]
