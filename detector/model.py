"""IsolationForest over the feature table, in the scikit-learn manner.

Scores are the Isolation Forest paper's anomaly score s = 2^(-E[h(x)]/c(n)),
in (0, 1]: about 0.5 for ordinary windows, towards 1 for windows isolated in
few splits. Higher means more suspicious everywhere in ``detector``; the flip
of scikit-learn's ``score_samples`` happens in :meth:`WindowModel.score` only.

Scoring is kept apart from deciding: :meth:`WindowModel.score` gives numbers,
``threshold_`` (a quantile of the training scores, never below ``min_score``)
turns them into alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from detector.errors import ModelError
from detector.features.catalogue import BASELINED_VOLUMES, FEATURES

COUNTS = (
    "events",
    "records_touched",
    "records_read",
    "records_returned",
    "night_records_touched",
    "out_of_caseload_reads",
    "peak_hourly_records",
    "failed_logins",
    "password_logins",
    "accounts_created",
    "new_addresses",
    "new_clients",
    "new_applications",
    "rare_hour_events",
    "account_age_days",
)
SHARES = ("out_of_caseload_share", "night_share", "off_hours_share", "created_in_log")
ZS = tuple(f"z_{side}_{v}" for v in BASELINED_VOLUMES for side in ("own", "peer"))
MODEL_FEATURES: tuple[str, ...] = COUNTS + SHARES + ZS


def model_matrix(
    table: pd.DataFrame | Mapping[str, np.ndarray], features: tuple[str, ...] = MODEL_FEATURES
) -> np.ndarray:
    """The model's view of feature rows: log counts, shares, signed-log z; missing as 0."""
    columns = []
    for name in features:
        values = np.asarray(table[name], dtype=np.float64)
        if name in ZS:
            values = np.sign(values) * np.log1p(np.abs(values))
        elif name in COUNTS:
            values = np.log1p(np.maximum(values, 0.0))
        columns.append(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0))
    return np.column_stack(columns) if columns else np.empty((len(table), 0))


class WindowModel:
    """Isolation Forest over feature windows, with an alert threshold and explanations.

    Parameters
    ----------
    n_estimators, max_samples, random_state
        Passed to :class:`sklearn.ensemble.IsolationForest`.
    alert_rate
        Share of training windows above the threshold (the quantile policy).
    min_score
        The threshold never goes below this score, so a quiet log does not
        produce model alerts just to fill the quota.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int = 256,
        alert_rate: float = 0.001,
        min_score: float = 0.68,
        random_state: int = 0,
    ):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.alert_rate = alert_rate
        self.min_score = min_score
        self.random_state = random_state

    def fit(self, table: pd.DataFrame) -> WindowModel:
        """Fit on feature rows (one per window)."""
        if len(table) < 2:
            raise ModelError(f"cannot fit the model on {len(table)} window(s); need at least 2")
        # Imported here: scikit-learn takes a second to import, and pipeline.prepare
        # starts that import in the background while the log is being read.
        from sklearn.ensemble import IsolationForest

        matrix = model_matrix(table)
        self.features_ = MODEL_FEATURES
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(matrix)),
            random_state=self.random_state,
            n_jobs=-1,  # scoring runs the trees on both cores (tree walks release the GIL)
        ).fit(matrix)
        self.training_scores_ = self._score_matrix(matrix)
        quantile = np.quantile(self.training_scores_, 1.0 - self.alert_rate)
        self.threshold_ = float(max(quantile, self.min_score))
        # The usual value of each model column, to say which features drove a score.
        self.centre_ = np.median(matrix, axis=0)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise ModelError("the model is not fitted: call fit() or load a saved model")

    def _score_matrix(self, matrix: np.ndarray) -> np.ndarray:
        # The one place where scikit-learn's direction (higher = more normal) is flipped.
        return -self.forest_.score_samples(matrix)

    def score(self, table: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """Anomaly score in (0, 1] per row (a frame, or columns of equal length); higher = more suspicious."""
        self._check_fitted()
        matrix = model_matrix(table, self.features_)
        return self._score_matrix(matrix) if len(matrix) else np.zeros(0)

    def drivers(self, table: pd.DataFrame, top: int = 3) -> list[list[str]]:
        """Per row, the features that drove its score, most influential first.

        A feature drives a score when putting it back to its usual value (the
        training median) lowers the score: each row is re-scored once per
        feature with that feature reset, and the largest drops are named.
        """
        self._check_fitted()
        if len(table) == 0:
            return []
        matrix = model_matrix(table, self.features_)
        n_rows, n_features = matrix.shape
        base = self._score_matrix(matrix)
        variants = np.repeat(matrix, n_features, axis=0)
        columns = np.tile(np.arange(n_features), n_rows)
        variants[np.arange(len(variants)), columns] = self.centre_[columns]
        drop = base[:, None] - self._score_matrix(variants).reshape(n_rows, n_features)
        order = np.argsort(-drop, axis=1)[:, :top]
        names = np.array(self.features_)
        return [[str(names[j]) for j in row if drop[i, j] > 0.005] for i, row in enumerate(order)]

    def save(self, path: str | Path) -> None:
        """Save with skops (no pickle: loading cannot run arbitrary code)."""
        import skops.io as sio

        self._check_fitted()
        state = {
            "format": "logsentinel-window-model/1",
            "forest": self.forest_,
            "features": list(self.features_),
            "threshold": self.threshold_,
            "centre": self.centre_,
            "params": {
                "n_estimators": self.n_estimators,
                "max_samples": self.max_samples,
                "alert_rate": self.alert_rate,
                "min_score": self.min_score,
                "random_state": self.random_state,
            },
        }
        sio.dump(state, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> WindowModel:
        """Load a model saved by :meth:`save`; refuses files holding unexpected types."""
        import skops.io as sio

        path = Path(path)
        if not path.exists():
            raise ModelError(f"no such model file: {path}")
        try:
            untrusted = sio.get_untrusted_types(file=path)
            unexpected = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
            if unexpected:
                raise ModelError(
                    f"{path}: refusing to load unexpected types: {', '.join(unexpected)}"
                )
            state = sio.load(path, trusted=untrusted)
        except ModelError:
            raise
        except Exception as error:  # skops raises many kinds on a foreign file
            raise ModelError(f"{path} is not a model saved by `detector fit` ({error})") from None
        if not isinstance(state, dict) or state.get("format") != "logsentinel-window-model/1":
            raise ModelError(f"{path} is not a model saved by `detector fit`")
        unknown = [f for f in state["features"] if f not in FEATURES]
        if unknown:
            raise ModelError(f"{path}: model uses features this version does not know: {unknown}")
        model = cls(**state["params"])
        model.forest_ = state["forest"]
        model.features_ = tuple(state["features"])
        model.threshold_ = float(state["threshold"])
        model.centre_ = np.asarray(state["centre"])
        return model
