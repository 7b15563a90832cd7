"""stacking: a meta-model learns each candidate's quality from the out-of-fold candidates.

On the "oof" split every training dialogue's references are known, so each OOF
candidate gets a target: its ROUGE F1 to the references (mean of R1/R2/RL, then over
the references) minus the mean of that over its pool. Subtracting the pool mean makes
it a ranking target: how much better than its rivals a candidate is, without the
dialogue's difficulty, which no choice within the pool can change. A seeded
scikit-learn ``HistGradientBoostingRegressor`` learns it from pool-relative features
(:mod:`raysum.ensemble._features`), and each pool's candidate with the highest
prediction wins (ties: first in (model, fold, tta, text) order).

dev and test are picked by the meta-model fit on all OOF candidates. The OOF split's
own selection is cross-fitted: OOF dialogues are split by fname with ``GroupKFold``
and each dialogue is picked by a meta-model that never saw it, so the OOF score of the
selection is an honest estimate (``info["cv_oof"]``).

``select(..., nested=True)`` is the stacking ``auto`` compares (small OOF sets, weak
candidates): the meta-model is chosen among META_MODELS by nested cross-fitting. Each
outer part of the OOF dialogues is picked by the meta-model that won an inner
cross-fitting on the other parts; dev and test by the one that wins over every OOF
dialogue. "consensus" fits nothing and ranks by consensus (voting's picks); a fitted
meta-model replaces it only where its gain in the mean ROUGE of the picks is larger than
one standard error over the held-out dialogues (the one-standard-error rule), so a gain
within noise falls back to voting's picks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from raysum.ensemble._crossfit import MAX_SPLITS, best_in_groups, dialogue_folds
from raysum.ensemble._features import candidate_features
from raysum.ensemble._prepare import Prepared, reference_quality
from raysum.ensemble._registry import Choice

OOF = "oof"
# The fewest OOF dialogues a capped evaluation (max_eval_samples) may leave stacking: below it
# each cross-fitted meta-model learns from a few dozen pools, and with min_samples_leaf 20
# candidates its trees have hardly a split to make.
MIN_OOF_DIALOGUES = 50
IMPORTANCE_ROWS = 2000
INNER_SPLITS = 3
CONSENSUS = "consensus"
# The meta-model of plain stacking.
DEFAULT_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 20,
                  "l2_regularization": 1.0}
# What nested cross-fitting chooses from, simplest first (None: no fit, rank by consensus).
META_MODELS = {
    CONSENSUS: None,
    "regularised": {"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 7, "min_samples_leaf": 40,
                    "l2_regularization": 10.0},
    "default": DEFAULT_PARAMS,
}


def _fit_meta_model(features: pd.DataFrame, target: np.ndarray, seed: int, params: dict | None = None):
    """The meta-model (``params``, default DEFAULT_PARAMS) fit on ``features`` (index =
    candidate positions) and ``target``."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    # Histogram boosting: ~10x faster than GradientBoostingRegressor at 5k rows and
    # ~20x at 100k (a full competition OOF split with TTA), for the same fit.
    model = HistGradientBoostingRegressor(**(params or DEFAULT_PARAMS), early_stopping=False, random_state=seed)
    return model.fit(features, target)


def _one_thread():
    """The meta-model's OpenMP threads limited to one. Its tables are small (thousands to
    ~100k candidates, 20-odd features): each boosting split is too short to share out, and
    threads that spin-wait for each other collapse as soon as another process is busy. On
    the 2-core machine with one other busy process, the demo's stacking took 48 s with two
    threads and 4 s with one; one thread fits 100k rows in about 3 s. The fit is the same
    whatever the thread count (each feature's histogram is built by one thread)."""
    import sklearn.ensemble  # noqa: F401 - its OpenMP runtime loaded first: a limit covers loaded libraries only
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def _importances(model, features: pd.DataFrame, target: np.ndarray, seed: int) -> dict[str, float]:
    """Permutation importance: the drop in the meta-model's R^2 on (at most
    IMPORTANCE_ROWS of) its training candidates when one feature is shuffled."""
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(features), size=min(IMPORTANCE_ROWS, len(features)), replace=False)
    result = permutation_importance(
        model, features.iloc[rows], target[rows], n_repeats=3, random_state=seed
    )
    ranked = sorted(zip(features.columns, result.importances_mean), key=lambda kv: -kv[1])
    return {name: round(float(value), 6) for name, value in ranked}


def _oof_quality(prepared: Prepared, references: Mapping[str, Sequence[str]] | None) -> np.ndarray:
    """Each OOF candidate's ROUGE F1 to its references; NaN where it has none."""
    if references is None:
        references = prepared.references_by_split.get(OOF, {})
    return reference_quality(prepared, OOF, references)


def _training_target(prepared: Prepared, quality: np.ndarray) -> np.ndarray:
    """Quality minus its pool's mean for every OOF candidate; NaN where it has no references."""
    pools = prepared.pool_of[prepared.split_mask(OOF)]
    frame = pd.DataFrame({"pool": pools, "quality": quality})
    return (frame["quality"] - frame.groupby("pool")["quality"].transform("mean")).to_numpy()


def _cross_fitted(features: pd.DataFrame, target: np.ndarray, groups: np.ndarray, seed: int):
    """Predictions for every OOF candidate from a meta-model that never saw its dialogue."""
    labelled = ~np.isnan(target)
    folds = dialogue_folds(groups, labelled, MAX_SPLITS)
    predictions = np.zeros(len(features))
    for train, held_out in folds:
        train = train[labelled[train]]
        if len(train) == 0:
            continue  # only unlabelled dialogues outside this part: nothing to learn from
        model = _fit_meta_model(features.iloc[train], target[train], seed)
        predictions[held_out] = model.predict(features.iloc[held_out])
    return predictions, len(folds)


class _OOFTable:
    """What nested cross-fitting reads: the OOF candidates' features, target, quality,
    consensus, dialogue and pool, row for row."""

    def __init__(self, features, target, quality, consensus, fnames, pools, seed):
        self.features, self.target, self.quality = features, target, quality
        self.consensus, self.fnames, self.pools, self.seed = consensus, fnames, pools, seed
        self.labelled = ~np.isnan(target)

    def predict(self, name: str, train: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Meta-model ``name`` fit on rows ``train``, scoring ``rows``."""
        return self.predict_other(name, train, self.features.iloc[rows], self.consensus[rows])

    def predict_other(self, name: str, train: np.ndarray, features: pd.DataFrame, consensus: np.ndarray):
        """Meta-model ``name`` fit on rows ``train``, scoring candidates with ``features`` and
        ``consensus`` (what "consensus" ranks by)."""
        params = META_MODELS[name]
        train = train[self.labelled[train]]
        if params is None or not len(train):
            return consensus
        return _fit_meta_model(self.features.iloc[train], self.target[train], self.seed, params).predict(features)

    def picked_quality(self, predictions: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Quality of each labelled pool's pick among ``rows`` (in pool order)."""
        picks = rows[best_in_groups(predictions, self.pools[rows])]
        quality = self.quality[picks]
        return quality[~np.isnan(quality)]

    def choose(self, rows: np.ndarray, max_splits: int) -> tuple[str, dict[str, float]]:
        """The meta-model cross-fitting over ``rows`` chooses (one-standard-error rule
        against consensus), and each one's cross-fitted score (competition_score scale)."""
        folds = dialogue_folds(self.fnames[rows], self.labelled[rows], max_splits)
        if not folds:
            return CONSENSUS, {}
        predictions = {name: np.zeros(len(rows)) for name in META_MODELS}
        for train, held_out in folds:
            for name in META_MODELS:
                predictions[name][held_out] = self.predict(name, rows[train], rows[held_out])
        quality = {name: self.picked_quality(p, rows) for name, p in predictions.items()}
        base = quality[CONSENSUS]
        chosen, best = CONSENSUS, base.mean()
        for name, q in quality.items():
            gain = q - base
            noise = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else np.inf
            if gain.mean() > noise and q.mean() > best:
                chosen, best = name, q.mean()
        return chosen, {name: round(float(q.mean() * 100), 4) for name, q in quality.items()}


def _nested(table: _OOFTable, other: pd.DataFrame, other_consensus: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Nested cross-fitting: OOF predictions (each part by the meta-model its inner
    cross-fitting chose), predictions for ``other`` (the one chosen over every OOF
    dialogue, fit on all of them) and what was chosen where."""
    every = np.arange(len(table.target))
    predictions = np.zeros(len(every))
    by_fold = []
    for train, held_out in dialogue_folds(table.fnames, table.labelled, MAX_SPLITS):
        name, _ = table.choose(train, INNER_SPLITS)
        by_fold.append(name)
        predictions[held_out] = table.predict(name, train, held_out)
    name, scores = table.choose(every, MAX_SPLITS)
    other_predictions = table.predict_other(name, every, other, other_consensus) if len(other) else np.zeros(0)
    return predictions, other_predictions, {"meta_model": name, "meta_model_by_fold": by_fold,
                                            "meta_model_cv": scores, "fallback": name == CONSENSUS}


def select(
    prepared: Prepared, *, references: Mapping[str, Sequence[str]] | None = None, seed: int = 0,
    nested: bool = False,
) -> Choice:
    """Cross-fitted picks for OOF pools, the all-OOF meta-model's picks for every other split.

    ``references``: OOF fname -> references (default: those given to ``prepare``).
    ``seed``: the meta-model's random_state (without early stopping or subsampling the
    boosting is deterministic anyway) and the rows permutation importance shuffles.
    ``nested``: the meta-model chosen by nested cross-fitting (module docstring).
    """
    oof = prepared.split_mask(OOF)
    quality = _oof_quality(prepared, references) if oof.any() else np.array([])
    target = _training_target(prepared, quality) if oof.any() else np.array([])
    labelled = ~np.isnan(target)
    oof_fnames = prepared.candidates.loc[oof, "fname"].to_numpy()
    if len(np.unique(oof_fnames[labelled])) < 2:
        raise ValueError(
            "stacking learns from out-of-fold candidates ('oof' split) of at least 2 dialogues "
            "with references; this experiment has none (run with k folds, or choose voting)"
        )
    features = candidate_features(prepared)
    predictions = np.zeros(len(features))
    if nested:
        table = _OOFTable(features[oof], target, quality, prepared.consensus[oof], oof_fnames,
                          prepared.pool_of[oof], seed)
        with _one_thread():
            predictions[oof], predictions[~oof], info = _nested(table, features[~oof], prepared.consensus[~oof])
        info.update(cv_oof=None, n_train_candidates=int(labelled.sum()),
                    n_train_dialogues=int(len(np.unique(oof_fnames[labelled]))))
        return Choice(prepared.best_per_pool(predictions), info)
    with _one_thread():
        predictions[oof], n_splits = _cross_fitted(features[oof], target, oof_fnames, seed)
        train = features[oof][labelled]
        model = _fit_meta_model(train, target[labelled], seed)
        if (~oof).any():
            predictions[~oof] = model.predict(features[~oof])
        importances = _importances(model, train, target[labelled], seed)
    info = {
        "cv_oof": None,  # the OOF score of these cross-fitted picks, filled in by evaluate
        "feature_importances": importances,
        "n_splits": n_splits,
        "n_train_candidates": int(labelled.sum()),
        "n_train_dialogues": int(len(np.unique(oof_fnames[labelled]))),
    }
    return Choice(prepared.best_per_pool(predictions), info)
