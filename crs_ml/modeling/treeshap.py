"""Exact TreeSHAP of shallow xgboost boosters by per-tree lookup tables.

:func:`pred_contribs` returns what ``booster.predict(DMatrix(X), pred_contribs=True)`` returns
(one column per feature, then the bias column) for a matrix of float32 rows, NaN = missing.

Why hand-written: xgboost's exact TreeSHAP walks every path of every tree for every row, and
costs about 20 times the margin prediction: on 100,000 x 139 float32 rows (30 % NaN) and
214 trees of depth 2, ``pred_contribs`` takes 4.3 s on one core, the margin 0.2 s. Our boosters
have shallow trees (``max_depth`` 2 in configs/xgboost.yaml and in the stack's xgboost member),
and for those a row's contributions from one tree depend only on which way the row goes at
each of the tree's few internal nodes, so they can be looked up instead of recomputed. The
libraries at hand (xgboost, the shap package) run the per-row path algorithm; this module
does the same rows in about 1/25 of xgboost's CPU time (benchmarks/bench_treeshap.py; README,
"Speed").

How: for a tree with m <= :data:`MAX_INTERNAL_NODES` internal nodes (every tree of depth <= 3)
each row has a direction pattern, one bit per internal node (``x < threshold`` compared in
float32 as xgboost does; missing -> the node's default direction), so at most 2^m patterns.
For every pattern the module precomputes, once per booster, the exact Shapley values of the
tree's path-dependent value function (the quantity TreeSHAP computes): ``v(S)`` follows the
row's direction at nodes splitting on a feature in S and averages the children by cover
(``sum_hessian``, the child's over the node's) elsewhere; with d distinct split features in
the tree, all 2^d subsets are enumerated. Scoring is then a gather: in blocks of
:data:`BLOCK_ROWS` rows (small enough to stay in cache), all trees' patterns are formed at
once, each (tree, feature) pair looks up its value for each row's pattern, and a sparse 0/1
matrix sums the pairs of each feature. The bias column is the sum of the trees' expected
values (``v`` of the empty set) plus the base margin (the logit of ``base_score`` for a
logistic objective), as xgboost's. The trees are read from the booster's own JSON model
(``save_raw("json")``), so thresholds, leaf values and covers are the exact float32 numbers
xgboost uses; the sums are in float64, xgboost's in float32, so the two agree to about 1e-6
on the log-odds scale, not bit for bit.

The tables are built once per booster object (tens of ms for a few hundred trees) and kept
while it lives (a weak cache in memory; nothing is written to a model folder). The first time,
they are checked against xgboost's ``pred_contribs`` on 64 probe rows (thresholds, either side
of them, missing); if they disagree (they should not), xgboost is used for that booster, with
a warning. Boosters the tables do not cover (a tree with more internal nodes, categorical
splits, dart, multi-class or multi-target models, an objective whose base margin is not in
:data:`BASE_MARGIN`) go to xgboost's ``pred_contribs``, the reference; :func:`shallow_plan`
says which path a booster takes and why.

Imports: numpy, scipy.sparse (the per-feature sums) and xgboost (the booster's JSON model,
the probe check and the fallback) only.
"""

from __future__ import annotations

import json
import math
import threading
import warnings
import weakref
from dataclasses import dataclass

import numpy as np

#: trees with at most this many internal nodes (every tree of depth <= 3) get lookup tables
MAX_INTERNAL_NODES = 7
#: rows per vectorised block: (tree, feature) pairs x rows stay in cache (512 measured
#: 2.5x faster than 4096 on 214 trees)
BLOCK_ROWS = 512
#: objectives whose base margin this module knows: name -> base_score -> margin
BASE_MARGIN = {
    "binary:logistic": lambda p: math.log(p) - math.log1p(-p),
    "reg:logistic": lambda p: math.log(p) - math.log1p(-p),
    "reg:squarederror": lambda p: p,
}
#: largest |difference| to xgboost accepted on the probe rows before a plan is used
PROBE_TOLERANCE = 1e-4

__all__ = [
    "BASE_MARGIN",
    "MAX_INTERNAL_NODES",
    "NotShallow",
    "ShallowTreeShap",
    "pred_contribs",
    "shallow_plan",
]


class NotShallow(ValueError):
    """The booster is outside what :class:`ShallowTreeShap` covers (the message says why)."""


@dataclass(frozen=True)
class ShallowTreeShap:
    """Lookup tables of every tree of one booster (built by :meth:`from_booster`).

    ``node_features``, ``thresholds``, ``default_left``: (trees, m) per internal node, padded
    to the largest m (a padding node's bit does not change its tree's table). A slot is one
    (tree, split feature of that tree) pair; ``slot_tree``: its tree; ``slot_tables``: flat,
    (slots, 2**m), the feature's contribution in that tree for each direction pattern;
    ``gather``: (features with a split, slots) 0/1 sparse matrix summing the slots of each
    feature, whose column is ``columns``.
    """

    n_features: int
    node_features: np.ndarray
    thresholds: np.ndarray
    default_left: np.ndarray
    slot_tree: np.ndarray
    slot_tables: np.ndarray
    gather: object
    columns: np.ndarray
    bias: float

    @classmethod
    def from_booster(cls, booster) -> ShallowTreeShap:
        """Tables of ``booster`` (an ``xgboost.Booster``); :class:`NotShallow` if it is outside
        what the module covers."""
        model = json.loads(bytes(booster.save_raw("json")))
        trees, base_margin, n_features = read_model(model)
        return cls.from_trees(trees, base_margin, n_features)

    @classmethod
    def from_trees(cls, trees: list[dict], base_margin: float, n_features: int):
        """Tables of trees given as xgboost's JSON tree objects (:func:`read_model`)."""
        from scipy.sparse import csr_matrix

        parsed = [_parse_tree(t) for t in trees]
        m = max([len(p["internal"]) for p in parsed] + [1])
        n_trees = len(parsed)
        node_features = np.zeros((n_trees, m), dtype=np.intp)
        thresholds = np.zeros((n_trees, m), dtype=np.float32)
        default_left = np.zeros((n_trees, m), dtype=bool)
        slots, bias = [], float(base_margin)
        for t, p in enumerate(parsed):
            k = len(p["internal"])
            node_features[t, :k] = p["split_index"][p["internal"]]
            thresholds[t, :k] = p["threshold"][p["internal"]]
            default_left[t, :k] = p["default_left"][p["internal"]]
            phi, expected = _tree_table(p, m)
            bias += expected
            slots += [(int(f), t, phi[:, j]) for j, f in enumerate(p["distinct"])]
        slots.sort(key=lambda s: s[:2])
        feature = np.array([s[0] for s in slots], dtype=np.intp)
        columns = np.unique(feature)
        gather = csr_matrix(
            (np.ones(len(slots)), (np.searchsorted(columns, feature), np.arange(len(slots)))),
            shape=(len(columns), len(slots)),
        )
        tables = np.array([s[2] for s in slots]).reshape(len(slots), 2**m)
        return cls(
            n_features=int(n_features),
            node_features=node_features,
            thresholds=thresholds,
            default_left=default_left,
            slot_tree=np.array([s[1] for s in slots], dtype=np.intp),
            slot_tables=tables.ravel(),
            gather=gather,
            columns=columns,
            bias=bias,
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(rows, features + 1) float64: SHAP values of each feature, then the bias column
        (in Fortran order: each column contiguous). ``X``: (rows, features), NaN = missing,
        compared in float32. Runs in the calling thread: its steps are short numpy calls that
        hold the GIL in between, and blocks spread over 2 threads took as long (measured on
        a shared 2-core machine)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"TreeSHAP: the matrix has shape {X.shape}, the booster expects "
                f"{self.n_features} feature columns"
            )
        out = np.zeros((self.n_features + 1, X.shape[0]))  # transposed: rows of a block
        out[-1] = self.bias  # are contiguous in every column
        for a in range(0, X.shape[0], BLOCK_ROWS):
            self._block(X[a : a + BLOCK_ROWS], out[:, a : a + BLOCK_ROWS])
        return out.T

    def _block(self, X: np.ndarray, out: np.ndarray) -> None:
        """Write the contributions of the rows ``X`` into ``out`` (features + 1, the same
        rows), zero so far in the feature rows."""
        if not len(self.columns) or not len(X):
            return
        n_trees, m = self.node_features.shape
        values = np.ascontiguousarray(X.T)[self.node_features.ravel()]  # (trees * m, rows)
        left = values < self.thresholds.reshape(-1, 1)
        left |= np.isnan(values) & self.default_left.reshape(-1, 1)
        left = left.reshape(n_trees, m, -1).view(np.uint8)
        pattern = left[:, 0, :].copy()  # (trees, rows): bit k = goes left at internal node k
        for k in range(1, m):
            pattern += left[:, k, :] << np.uint8(k)
        index = pattern[self.slot_tree].astype(np.intp)  # (slots, rows)
        index += (np.arange(len(self.slot_tree), dtype=np.intp) << m)[:, None]
        out[self.columns] = self.gather @ self.slot_tables.take(index)


def read_model(model: dict) -> tuple[list[dict], float, int]:
    """(trees, base margin, number of features) of xgboost's JSON model; :class:`NotShallow`
    when the model is outside what the module covers."""
    learner = model["learner"]
    booster = learner["gradient_booster"]
    if booster.get("name") != "gbtree":
        raise NotShallow(f"booster type {booster.get('name')!r} (only gbtree is covered)")
    param = learner["learner_model_param"]
    if int(param.get("num_class", 0)) > 1 or int(param.get("num_target", 1)) > 1:
        raise NotShallow("a multi-class or multi-target model")
    objective = learner["objective"]["name"]
    if objective not in BASE_MARGIN:
        raise NotShallow(f"objective {objective!r}: base margin not known here")
    scores = json.loads(param["base_score"]) if param["base_score"].startswith("[") else None
    base_score = float(scores[0] if scores else param["base_score"])
    base_margin = BASE_MARGIN[objective](float(np.float32(base_score)))
    trees = booster["model"]["trees"]
    for tree in trees:
        n_internal = sum(1 for c in tree["left_children"] if c != -1)
        if n_internal > MAX_INTERNAL_NODES:
            raise NotShallow(
                f"a tree with {n_internal} internal nodes (tables cover up to "
                f"{MAX_INTERNAL_NODES}, every tree of depth <= 3)"
            )
        if any(int(s) != 0 for s in tree.get("split_type", [])):
            raise NotShallow("categorical splits")
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise NotShallow("vector leaves")
    return trees, base_margin, int(param["num_feature"])


def _parse_tree(tree: dict) -> dict:
    left = np.asarray(tree["left_children"], dtype=np.intp)
    internal = np.flatnonzero(left != -1)
    split_index = np.asarray(tree["split_indices"], dtype=np.intp)
    cover = np.asarray(tree["sum_hessian"], dtype=np.float32).astype(np.float64)
    if len(internal) and np.any(cover[internal] <= 0):
        raise NotShallow("an internal node with zero cover")
    return {
        "left": left,
        "right": np.asarray(tree["right_children"], dtype=np.intp),
        "internal": internal,
        "split_index": split_index,
        # split_conditions: the float32 threshold at an internal node, the leaf value at a leaf
        "threshold": np.asarray(tree["split_conditions"], dtype=np.float32),
        "default_left": np.asarray(tree["default_left"], dtype=bool),
        "cover": cover,
        "distinct": np.unique(split_index[internal]),
    }


def _tree_table(p: dict, m: int) -> tuple[np.ndarray, float]:
    """(contributions (2^m patterns, d features), expected value) of one parsed tree: exact
    Shapley values of the cover-weighted value function for every direction pattern."""
    d = len(p["distinct"])
    local = {int(f): j for j, f in enumerate(p["distinct"])}
    bit = {int(node): k for k, node in enumerate(p["internal"])}
    patterns = np.arange(2**m)
    subsets = np.arange(2**d)

    def value(node: int) -> np.ndarray:  # (patterns, subsets)
        if p["left"][node] == -1:
            return np.full((2**m, 2**d), float(p["threshold"][node]))
        lo, hi = value(int(p["left"][node])), value(int(p["right"][node]))
        goes_left = ((patterns >> bit[node]) & 1).astype(bool)[:, None]
        in_subset = ((subsets >> local[int(p["split_index"][node])]) & 1).astype(bool)[None, :]
        c, cl, cr = (p["cover"][i] for i in (node, p["left"][node], p["right"][node]))
        return np.where(in_subset, np.where(goes_left, lo, hi), (lo * cl + hi * cr) / c)

    v = value(0)
    return v @ _shapley_weights(d), float(v[0, 0])


def _shapley_weights(d: int) -> np.ndarray:
    """(2^d, d) matrix W with phi = v @ W the Shapley values of the set function v (one column
    per subset, bit j = player j): phi_i = sum over S without i of |S|!(d-|S|-1)!/d! *
    (v(S + i) - v(S))."""
    w = np.zeros((2**d, d))
    size = np.array([bin(s).count("1") for s in range(2**d)])
    for i in range(d):
        has = ((np.arange(2**d) >> i) & 1).astype(bool)
        # S + i (has i): weight of S = S + i - {i}; S (lacks i): minus its own weight
        s = np.where(has, size - 1, size)
        weight = np.array([math.factorial(k) * math.factorial(d - k - 1) for k in s]) / (
            math.factorial(d)
        )
        w[:, i] = np.where(has, weight, -weight)
    return w


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_XGB_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def shallow_plan(booster) -> ShallowTreeShap | str:
    """The booster's tables (built on first use, checked against xgboost on probe rows, kept
    while the booster lives), or the reason xgboost's ``pred_contribs`` is used instead."""
    rounds = booster.num_boosted_rounds()
    with _LOCK:
        cached = _PLANS.get(booster)
    if cached is not None and cached[0] == rounds:
        return cached[1]
    try:
        plan = ShallowTreeShap.from_booster(booster)
        worst = _probe_difference(plan, booster)
        if not worst <= PROBE_TOLERANCE:
            plan = f"the tables differ from xgboost by {worst:.3g} on probe rows"
            warnings.warn(f"TreeSHAP: {plan}; using xgboost's pred_contribs", stacklevel=2)
    except NotShallow as e:
        plan = str(e)
    with _LOCK:
        _PLANS[booster] = (rounds, plan)
    return plan


def _probe_difference(plan: ShallowTreeShap, booster) -> float:
    """Largest |difference| to xgboost's pred_contribs on probe rows: every feature at a
    random one of its thresholds, just below or above it, or missing."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    probe = np.zeros((64, plan.n_features), dtype=np.float32)
    feats, thr = plan.node_features.ravel(), plan.thresholds.ravel()
    for f in np.unique(feats):
        cuts = thr[feats == f]
        pick = cuts[rng.integers(len(cuts), size=len(probe))]
        side = rng.integers(4, size=len(probe))
        probe[:, f] = np.select(
            [side == 0, side == 1, side == 2],
            [pick, np.nextafter(pick, np.float32(-np.inf)), np.nextafter(pick, np.float32(np.inf))],
            np.float32(np.nan),
        )
    dm = xgb.DMatrix(probe, missing=np.nan, nthread=1)
    ref = booster_with_threads(booster, 1).predict(dm, pred_contribs=True,
                                                   validate_features=False)  # fmt: skip
    return float(np.max(np.abs(plan.contributions(probe) - ref)))


def booster_with_threads(booster, threads: int):
    """A copy of ``booster`` set to ``threads`` xgboost threads (cached while it lives), so
    the caller's booster keeps its own setting (also the stack's members for small inputs,
    :func:`crs_ml.modeling.stack.member_booster`)."""
    with _LOCK:
        copies = _XGB_COPIES.setdefault(booster, {})
        if threads not in copies:
            copies[threads] = booster.copy()
            copies[threads].set_param({"nthread": threads})
        return copies[threads]


def pred_contribs(
    booster, matrix: np.ndarray, threads: int | None = None, feature_names=None
) -> np.ndarray:
    """``booster.predict(DMatrix(matrix), pred_contribs=True)`` as float64 (rows, features + 1):
    by lookup tables when :func:`shallow_plan` has them (in the calling thread), else by
    xgboost on ``threads`` threads (None: all cores). ``matrix``: the model's columns in its
    order, NaN = missing. The values do not depend on ``threads``. ``feature_names``
    (optional): the matrix's column names, checked against the booster's own when it has
    them."""
    names = booster.feature_names
    if feature_names is not None and names and list(names) != [str(n) for n in feature_names]:
        raise ValueError(
            f"TreeSHAP: the columns {list(feature_names)[:5]}... are not the booster's "
            f"features {list(names)[:5]}..."
        )
    plan = shallow_plan(booster)
    if isinstance(plan, ShallowTreeShap):
        return plan.contributions(matrix)
    import xgboost as xgb

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    dm = xgb.DMatrix(matrix, missing=np.nan, nthread=threads or -1)
    model = booster if threads is None else booster_with_threads(booster, threads)
    raw = model.predict(dm, pred_contribs=True, validate_features=False)
    return raw.astype(np.float64)
