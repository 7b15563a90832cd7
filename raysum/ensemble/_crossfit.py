"""Cross-fitting by dialogue, picks per pool and a bootstrap over dialogues: what every
strategy that learns from the out-of-fold candidates uses to stay honest about it."""

from __future__ import annotations

import numpy as np

MAX_SPLITS = 5
RESAMPLES = 1000
LEVEL = 0.95


def dialogue_folds(groups: np.ndarray, labelled: np.ndarray, max_splits: int = MAX_SPLITS) -> list:
    """``GroupKFold`` (train, held_out) positions over ``groups`` (one fname per row), as many
    parts as there are labelled dialogues up to ``max_splits``; [] with fewer than 2."""
    from sklearn.model_selection import GroupKFold

    n_splits = min(max_splits, len(np.unique(groups[labelled])))
    if n_splits < 2:
        return []
    return list(GroupKFold(n_splits=n_splits).split(np.zeros(len(groups)), groups=groups))


def best_in_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Position of the highest value in each group (groups in sorted order); ties go to the
    first position, as in ``Prepared.best_per_pool`` (values rounded to 12 decimals)."""
    values = np.round(np.asarray(values, dtype=float), 12)
    positions = np.arange(len(values))
    order = np.lexsort((positions, -values, groups))
    first = np.r_[True, groups[order][1:] != groups[order][:-1]]
    return order[first]


def bootstrap_interval(differences: np.ndarray, seed: int, level: float = LEVEL,
                       resamples: int = RESAMPLES) -> list[float]:
    """[low, high] of the mean of per-dialogue ``differences``, by resampling dialogues with a
    seeded numpy generator (percentile interval)."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return [float(low), float(high)]
