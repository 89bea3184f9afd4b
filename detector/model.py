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

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from detector.errors import ModelError
from detector.features.catalogue import BASELINED_VOLUMES, FEATURES
from detector.vocabulary import Z_OWN, Z_PEER, baseline_name

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
ZS = tuple(baseline_name(z, v) for v in BASELINED_VOLUMES for z in (Z_OWN, Z_PEER))
MODEL_FEATURES: tuple[str, ...] = COUNTS + SHARES + ZS

MODEL_FORMAT = "logsentinel-window-model/1"
_STATE_KEYS = ("forest", "features", "threshold", "centre", "params")
_PARAMS = ("n_estimators", "max_samples", "alert_rate", "min_score", "random_state")

#: Every (module, class, skops loader) a model saved by `detector fit` holds, found
#: with skops' ``get_untrusted_types`` and the schema of a freshly saved model.
#: Anything else (a Pipeline, a function, an operator...) is refused before loading:
#: a function node is how a crafted file runs code (numpy.testing's runstring calls exec).
MODEL_FILE_TYPES: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("builtins", "dict", "DictNode"),
        ("builtins", "list", "ListNode"),
        ("builtins", "tuple", "TupleNode"),
        ("builtins", "str", "JsonNode"),  # every JSON value (str, int, float, bool, null)
        ("builtins", "str", "TypeNode"),  # the dict key type
        ("numpy", "ndarray", "NdArrayNode"),
        ("sklearn.ensemble._iforest", "IsolationForest", "ObjectNode"),
        ("sklearn.tree._classes", "ExtraTreeRegressor", "ObjectNode"),
        ("sklearn.tree._tree", "Tree", "TreeNode"),
    }
)
#: The types skops itself asks a caller to trust in such a file.
SKOPS_TRUSTED: frozenset[str] = frozenset({"sklearn.tree._tree.Tree"})
_MAX_SCHEMA_BYTES = 256 * 2**20  # a 100-tree model's schema is about 1.7 MB
SCORE_CHUNK_MIN_ROWS = 20_000  # fewer rows per thread are scored on one core: threads cost more
PRUNE_EVERY_TREES = 5  # trees walked between two checks of which rows can still reach the floor
#: Training tables this large first score a sample of rows through every tree: the sample
#: gives a higher floor than ``min_score`` and an order of the trees that prunes sooner.
PLAN_FROM_ROWS = 50_000
PLAN_SAMPLE_ROWS = 10_000


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def model_matrix(
    table: pd.DataFrame | Mapping[str, np.ndarray],
    features: tuple[str, ...] = MODEL_FEATURES,
    centre: bool = False,
    rows: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The model's view of feature rows: log counts, shares, signed-log z; missing as 0.

    The matrix is float32, as scikit-learn's forest reads it (it would cast a
    float64 one, a second copy of the table's columns): each column is computed
    in float64 and rounded once, as that cast would. ``centre=True`` also gives
    each column's median, taken in float64 before the rounding (the training
    median the drivers reset features to). ``rows``: those row positions only,
    in that order (the matrix is built in that order, not built then reordered).
    """
    if isinstance(table, pd.DataFrame):
        n_rows = len(table)
    else:
        n_rows = len(table[features[0]]) if features else 0
    if rows is not None:
        n_rows = len(rows)
    matrix = np.empty((n_rows, len(features)), dtype=np.float32)
    medians = np.zeros(len(features))
    for j, name in enumerate(features):
        if rows is None:
            values = np.array(table[name], dtype=np.float64)  # a copy, transformed in place
        else:
            values = np.asarray(table[name], dtype=np.float64)[rows]
        if name in ZS:
            sign = np.sign(values)
            np.abs(values, out=values)
            np.log1p(values, out=values)
            values *= sign
        elif name in COUNTS:
            np.maximum(values, 0.0, out=values)
            np.log1p(values, out=values)
        np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        matrix[:, j] = values
        if centre and n_rows:
            medians[j] = np.median(values)
    return (matrix, medians) if centre else matrix


def fitting_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions of ``table`` by (account_id, day), then by the model's columns for ties.

    Without ``account_id`` and ``day`` (a bare matrix of features), by the model's columns.
    """
    keys = [
        pd.factorize(table[name], sort=True)[0] for name in ("day", "account_id") if name in table
    ]
    if len(keys) == 2:
        # One row per (account, day) in a feature table: those two keys alone decide
        # the order, and the model's columns (ties only) need not be sorted on.
        order = np.lexsort(keys)
        ranked = [key[order] for key in keys]
        if (
            len(order) < 2
            or ((ranked[0][1:] != ranked[0][:-1]) | (ranked[1][1:] != ranked[1][:-1])).all()
        ):
            return order
    keys = [table[name].to_numpy() for name in MODEL_FEATURES if name in table] + keys
    if not keys:
        return np.arange(len(table))
    return np.lexsort(keys)


def _shortest_leaves(added: list[np.ndarray], trees: list) -> np.ndarray:
    """Per tree, the least length any row can add: its shortest leaf's."""
    return np.array(
        [
            values[tree.tree_.children_left == -1].min()
            for values, tree in zip(added, trees, strict=True)
        ]
    )


def _path_sums(added: list[np.ndarray], trees: list, part: np.ndarray) -> np.ndarray:
    """Each row's lengths summed over the trees in the forest's order, as scikit-learn sums."""
    depths = np.zeros(len(part))
    for values, tree in zip(added, trees, strict=True):
        depths += values[tree.apply(part, check_input=False)]
    return depths


def _is_identity(order: np.ndarray) -> bool:
    return bool((order == np.arange(len(order))).all())


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

    def fit(self, table: pd.DataFrame, all_scores: bool = True) -> WindowModel:
        """Fit on feature rows (one per window).

        ``training_scores_`` holds every row's score; with ``all_scores=False``,
        NaN where the score is proven below the threshold before all the trees are
        walked: the threshold and every score at or above it are exactly those of a
        full scoring (see :meth:`_pruning_plan` and :meth:`_scores_from`).
        """
        if len(table) < 2:
            raise ModelError(f"cannot fit the model on {len(table)} window(s); need at least 2")
        # Imported here: scikit-learn takes a second to import, and pipeline.prepare
        # starts that import in the background while the log is being read.
        from sklearn.ensemble import IsolationForest

        # The forest draws its samples by row position: fitted on the rows in a fixed
        # order, the same windows give the same model whatever order they came in.
        # The matrix is built in that order (one copy of it, not two).
        order = fitting_order(table)
        identity = _is_identity(order)
        matrix, centre = model_matrix(table, centre=True, rows=None if identity else order)
        self.features_ = MODEL_FEATURES
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(matrix)),
            random_state=self.random_state,
            n_jobs=-1,  # the trees are built on both cores
        ).fit(matrix)
        # A row's score depends on that row alone: scored in fitting order, put back.
        floor, walk = None, None
        if not all_scores:
            floor, walk = self._pruning_plan(matrix)
        scores = self._score_matrix(matrix, floor, walk)
        quantile = self._training_quantile(scores, matrix, floor)
        del matrix
        if not identity:
            scores[order] = scores.copy()
        self.training_scores_ = scores
        self.threshold_ = float(max(quantile, self.min_score))
        # The usual value of each model column, to say which features drove a score.
        self.centre_ = centre
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise ModelError("the model is not fitted: call fit() or load a saved model")

    def _score_matrix(
        self, matrix: np.ndarray, floor: float | None = None, walk: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores of the matrix's rows, in row chunks on the cores (NaN: proven below
        ``floor``, when one is given, walking the trees in the order ``walk``).

        scikit-learn walks the trees one after another on one core. Each row's
        score depends on that row alone (its depths summed over the trees in
        their order), so scoring chunks of rows side by side gives the very same
        numbers; the tree walks release the GIL, so threads suffice.
        """
        n_chunks = min(_cores(), len(matrix) // SCORE_CHUNK_MIN_ROWS)
        if n_chunks < 2:
            return self._scores_from(matrix, floor, walk)
        bounds = np.linspace(0, len(matrix), n_chunks + 1).astype(np.int64)
        scores = np.empty(len(matrix))

        def score_chunk(i: int) -> None:
            rows = slice(bounds[i], bounds[i + 1])
            scores[rows] = self._scores_from(matrix[rows], floor, walk)

        with ThreadPoolExecutor(max_workers=n_chunks) as pool:
            list(pool.map(score_chunk, range(n_chunks)))
        return scores

    def _path_lengths(self) -> tuple[list[np.ndarray], float] | None:
        """(per tree, the length a row adds at each node it can end in; the forest's
        normaliser), from scikit-learn's internals; None for a version without them."""
        forest = self.forest_
        try:
            from sklearn.ensemble._iforest import _average_path_length

            lengths = forest._decision_path_lengths
            per_tree = forest._average_path_length_per_tree
            if forest._max_features != forest.n_features_in_:
                return None
        except (ImportError, AttributeError):
            return None
        # A tree adds ``depth + c(leaf size) - 1`` at the row's leaf, as scikit-learn sums it.
        added = [lengths[t] + per_tree[t] - 1.0 for t in range(len(forest.estimators_))]
        denominator = len(added) * _average_path_length([forest._max_samples])
        return added, float(denominator[0])

    def _pruning_plan(self, matrix: np.ndarray) -> tuple[float, np.ndarray | None]:
        """(a floor, an order of the trees) for scoring the training rows: ``min_score``
        and the forest's order, or better ones found on a sample of a large table.

        Every score at or above the threshold must be exact, and the threshold is at
        least the training scores' ``1 - alert_rate`` quantile. The floor is a score
        that many more than ``alert_rate`` of a random sample reach (four standard
        deviations more), so with near certainty a lower bound of that quantile;
        :meth:`_training_quantile` checks it and, were it ever too high, scores the
        rows it pruned. The order walks first the trees where the sample's paths run
        longest past the tree's shortest leaf: those prove rows below the floor soonest.
        """
        tables = self._path_lengths()
        if tables is None or len(matrix) < PLAN_FROM_ROWS:
            return self.min_score, None
        added, denominator = tables
        rng = np.random.default_rng(self.random_state)
        sample = np.sort(rng.choice(len(matrix), min(PLAN_SAMPLE_ROWS, len(matrix)), replace=False))
        part = np.ascontiguousarray(matrix[sample], dtype=np.float32)
        trees = self.forest_.estimators_
        walked = np.stack(
            [added[t][tree.apply(part, check_input=False)] for t, tree in enumerate(trees)], axis=1
        )
        expected = len(sample) * self.alert_rate
        reached = int(expected + 4 * np.sqrt(expected)) + 1  # sample rows at or above the floor
        sample_scores = np.sort(2 ** (-walked.sum(axis=1) / denominator))[::-1]
        floor = float(sample_scores[min(reached, len(sample)) - 1])
        slack = walked.mean(axis=0) - _shortest_leaves(added, trees)
        return max(self.min_score, floor), np.argsort(-slack, kind="stable")

    def _scores_from(
        self, matrix: np.ndarray, floor: float | None, walk: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores of some rows: scikit-learn's; with ``floor``, the same numbers computed
        as scikit-learn does, tree after tree, except that a row is left (NaN) once
        even the shortest path in every remaining tree would keep it below ``floor``.

        Sums only grow and a larger sum is a lower score, so the smallest value over
        each remaining tree's leaves bounds the row's final score from above. The
        trees are walked in the order ``walk`` (default: the forest's) while rows are
        pruned; the rows left are then summed in the forest's order, as scikit-learn does.
        """
        forest = self.forest_
        tables = self._path_lengths()
        if tables is None or not len(matrix) or matrix.shape[1] != forest.n_features_in_:
            # The one place where scikit-learn's direction (higher = more normal) is flipped.
            return -forest.score_samples(matrix)
        added, denominator = tables
        trees = forest.estimators_
        rows = np.arange(len(matrix))
        part = np.ascontiguousarray(matrix, dtype=np.float32)
        # Without a floor every row goes through every tree: scikit-learn's sums, without
        # its per-tree job dispatch (about 10 ms a call; the replay makes dozens of calls).
        if floor is None:
            depths = _path_sums(added, trees, part)
        else:
            order = np.arange(len(trees)) if walk is None else walk
            shortest = _shortest_leaves(added, trees)[order]
            still = np.r_[np.cumsum(shortest[::-1])[::-1], 0.0]  # from the i-th walked on, at least
            # depths > limit means a score below floor; the margin covers rounding.
            limit = -np.log2(floor) * denominator + 1e-6
            depths = np.zeros(len(matrix))
            for i, t in enumerate(order):
                depths += added[t][trees[t].apply(part, check_input=False)]
                if (i + 1) % PRUNE_EVERY_TREES == 0 and i + 1 < len(order):
                    possible = depths + still[i + 1] <= limit
                    if not possible.all():
                        rows, depths = rows[possible], depths[possible]
                        part = np.ascontiguousarray(matrix[rows], dtype=np.float32)
            if walk is not None:  # the rows left, summed again in the forest's order
                depths = _path_sums(added, trees, part)
        scores = np.full(len(matrix), np.nan)
        scores[rows] = 2 ** (
            -np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0)
        )
        return scores

    def _training_quantile(
        self, scores: np.ndarray, matrix: np.ndarray, floor: float | None = None
    ) -> float:
        """The ``1 - alert_rate`` quantile of the training scores, exactly as over all of them.

        Rows left unscored (NaN) are below ``floor``, so below every score known
        at or above it: when the quantile's two order statistics are among those,
        any smaller stand-in for the others gives the same number. Else (fewer
        such rows than the alert rate takes) the others are scored too.
        """
        q = 1.0 - self.alert_rate
        unknown = np.isnan(scores)
        if unknown.any():
            n = len(scores)
            above = int((scores[~unknown] >= floor).sum())
            if int(np.floor((n - 1) * q)) < n - above:
                scores[unknown] = self._score_matrix(matrix[unknown])
                unknown[:] = False
        return float(np.quantile(np.where(unknown, 0.0, scores), q))

    def score(
        self,
        table: pd.DataFrame | Mapping[str, np.ndarray],
        floor: float | None = None,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Anomaly score in (0, 1] per row (a frame, or columns of equal length); higher =
        more suspicious. With ``floor``, NaN where the score is proven below it; with
        ``rows``, of those row positions only."""
        self._check_fitted()
        matrix = model_matrix(table, self.features_, rows=rows)
        return self._score_matrix(matrix, floor) if len(matrix) else np.zeros(0)

    def flags(self, table: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """Per row, is its score at or above the threshold (rows proven below it are
        left before every tree is walked)."""
        return self.score(table, floor=self.threshold_) >= self.threshold_

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
        """Save with skops (no pickle: loading cannot run arbitrary code), atomically."""
        import skops.io as sio

        from detector.outputs import atomic_path

        self._check_fitted()
        state = {
            "format": MODEL_FORMAT,
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
        with atomic_path(path) as temporary:
            sio.dump(state, temporary)

    @classmethod
    def load(cls, path: str | Path) -> WindowModel:
        """Load a model saved by :meth:`save`, executing nothing from the file.

        The file's skops schema is read first and every node checked against
        :data:`MODEL_FILE_TYPES`; only then does skops build the objects, trusting
        exactly :data:`SKOPS_TRUSTED`. The result's structure is checked last.
        """
        import skops.io as sio

        path = Path(path)
        if not path.exists():
            raise ModelError(f"no such model file: {path}")
        if not path.is_file():
            raise ModelError(f"model file {path} is not a file")
        _check_schema(path)
        try:
            untrusted = sio.get_untrusted_types(file=path)
            unexpected = sorted(set(untrusted) - SKOPS_TRUSTED)
            if unexpected:
                raise ModelError(f"{path}: refusing to load type(s) {', '.join(unexpected)}")
            state = sio.load(path, trusted=list(untrusted))
        except ModelError:
            raise
        except Exception as error:  # skops raises many kinds on a foreign file
            raise ModelError(f"{path} is not a model saved by `detector fit` ({error})") from None
        return cls._from_state(path, state)

    @classmethod
    def _from_state(cls, path: Path, state: object) -> WindowModel:
        """A model from a loaded state dict, after checking its every part."""
        from sklearn.ensemble import IsolationForest

        if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
            raise ModelError(f"{path} is not a model saved by `detector fit`")
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ModelError(f"{path}: model file has no {', '.join(missing)}")
        forest, features = state["forest"], state["features"]
        if type(forest) is not IsolationForest or not hasattr(forest, "estimators_"):
            raise ModelError(
                f"{path}: the model's forest is a {type(forest).__name__}, not a fitted IsolationForest"
            )
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ModelError(f"{path}: the model's feature list is not a list of names")
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ModelError(f"{path}: model uses features this version does not know: {unknown}")
        if len(features) != getattr(forest, "n_features_in_", None):
            raise ModelError(
                f"{path}: the model's feature list ({len(features)} features) disagrees with "
                f"its forest ({getattr(forest, 'n_features_in_', '?')} features)"
            )
        threshold = state["threshold"]
        if type(threshold) not in (float, int) or not np.isfinite(threshold):
            raise ModelError(f"{path}: the model's threshold {threshold!r} is not a finite number")
        centre = state["centre"]
        if (
            not isinstance(centre, np.ndarray)
            or centre.shape != (len(features),)
            or centre.dtype.kind != "f"
            or not np.isfinite(centre).all()
        ):
            raise ModelError(f"{path}: the model's feature centre does not match its features")
        params = state["params"]
        if (
            not isinstance(params, dict)
            or set(params) != set(_PARAMS)
            or not all(type(v) in (int, float) for v in params.values())
        ):
            raise ModelError(f"{path}: the model's params are not {', '.join(_PARAMS)} numbers")
        model = cls(**params)
        model.forest_ = forest
        model.features_ = tuple(features)
        model.threshold_ = float(threshold)
        model.centre_ = centre
        return model


def _check_schema(path: Path) -> None:
    """Refuse a file whose skops schema names any node outside :data:`MODEL_FILE_TYPES`."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo("schema.json").file_size > _MAX_SCHEMA_BYTES:
                raise ModelError(f"{path}: model schema too large")
            schema = json.loads(archive.read("schema.json"))
    except ModelError:
        raise
    except Exception:  # not a zip, no schema, bad JSON, too deep...
        raise ModelError(f"{path} is not a model saved by `detector fit`") from None
    stack = [schema]
    while stack:  # iterative: a crafted deep schema must not hit the recursion limit
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "__loader__" in node:
            kind = (node.get("__module__"), node.get("__class__"), node.get("__loader__"))
            if kind not in MODEL_FILE_TYPES:
                name = f"{kind[0]}.{kind[1]}" if all(isinstance(k, str) for k in kind) else "?"
                raise ModelError(f"{path}: refusing to load type {name} ({kind[2]})")
        stack.extend(node.values())
