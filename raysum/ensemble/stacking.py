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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from raysum.ensemble._features import candidate_features
from raysum.ensemble._prepare import Prepared, reference_quality
from raysum.ensemble._registry import Choice

OOF = "oof"
MAX_SPLITS = 5
# The fewest OOF dialogues a capped evaluation (max_eval_samples) may leave stacking: below it
# each cross-fitted meta-model learns from a few dozen pools, and with min_samples_leaf 20
# candidates its trees have hardly a split to make.
MIN_OOF_DIALOGUES = 50
IMPORTANCE_ROWS = 2000


def _fit_meta_model(features: pd.DataFrame, target: np.ndarray, seed: int):
    """The meta-model fit on ``features`` (index = candidate positions) and ``target``."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    # Histogram boosting: ~10x faster than GradientBoostingRegressor at 5k rows and
    # ~20x at 100k (a full competition OOF split with TTA), for the same fit.
    model = HistGradientBoostingRegressor(
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )
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


def _training_target(prepared: Prepared, references: Mapping[str, Sequence[str]] | None) -> np.ndarray:
    """Quality minus its pool's mean for every OOF candidate; NaN where it has no references."""
    if references is None:
        references = prepared.references_by_split.get(OOF, {})
    quality = reference_quality(prepared, OOF, references)
    pools = prepared.pool_of[prepared.split_mask(OOF)]
    frame = pd.DataFrame({"pool": pools, "quality": quality})
    return (frame["quality"] - frame.groupby("pool")["quality"].transform("mean")).to_numpy()


def _cross_fitted(features: pd.DataFrame, target: np.ndarray, groups: np.ndarray, seed: int):
    """Predictions for every OOF candidate from a meta-model that never saw its dialogue."""
    from sklearn.model_selection import GroupKFold

    labelled = ~np.isnan(target)
    n_splits = min(MAX_SPLITS, len(np.unique(groups[labelled])))
    predictions = np.zeros(len(features))
    for train, held_out in GroupKFold(n_splits=n_splits).split(features, groups=groups):
        train = train[labelled[train]]
        if len(train) == 0:
            continue  # only unlabelled dialogues outside this part: nothing to learn from
        model = _fit_meta_model(features.iloc[train], target[train], seed)
        predictions[held_out] = model.predict(features.iloc[held_out])
    return predictions, n_splits


def select(
    prepared: Prepared, *, references: Mapping[str, Sequence[str]] | None = None, seed: int = 0
) -> Choice:
    """Cross-fitted picks for OOF pools, the all-OOF meta-model's picks for every other split.

    ``references``: OOF fname -> references (default: those given to ``prepare``).
    ``seed``: the meta-model's random_state (without early stopping or subsampling the
    boosting is deterministic anyway) and the rows permutation importance shuffles.
    """
    oof = prepared.split_mask(OOF)
    target = _training_target(prepared, references) if oof.any() else np.array([])
    labelled = ~np.isnan(target)
    oof_fnames = prepared.candidates.loc[oof, "fname"].to_numpy()
    if len(np.unique(oof_fnames[labelled])) < 2:
        raise ValueError(
            "stacking learns from out-of-fold candidates ('oof' split) of at least 2 dialogues "
            "with references; this experiment has none (run with k folds, or choose voting)"
        )
    features = candidate_features(prepared)
    predictions = np.zeros(len(features))
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
