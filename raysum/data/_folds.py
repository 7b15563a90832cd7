"""Seeded sampling of training rows and k-fold assignment by fname.

Folds are a table ``fname,fold`` rather than index arrays so that they can be written
next to an experiment, read back on ``--resume`` and joined with the out-of-fold
candidates, whatever order a later stage keeps its rows in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raysum.errors import ConfigError


def sample_rows(df: pd.DataFrame, n: int | None, seed: int,
                name: str = "max_train_samples") -> tuple[pd.DataFrame, str | None]:
    """A seeded random sample of ``n`` rows, kept in their original order.

    ``n`` None or not below ``len(df)`` gives every row, with a note saying so when
    ``n`` was given (a note, not an error: asking for more rows than exist is common when
    one setting serves several datasets). ``n <= 0`` raises ValueError. ``name`` is the
    setting named in messages.
    """
    if n is None:
        return df.reset_index(drop=True), None
    if n <= 0:
        raise ValueError(f"{name} must be a positive number of rows, got {n}")
    if n >= len(df):
        relation = "is above" if n > len(df) else "equals"
        return df.reset_index(drop=True), f"{name}={n:,} {relation} the {len(df):,} rows: using all rows"
    chosen = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[chosen].reset_index(drop=True), None


def assign_folds(df: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Columns ``fname,fold`` (fold in 0..k-1), one row per dialogue in ``df``'s order.

    Uses scikit-learn's ``KFold(n_splits=k, shuffle=True, random_state=seed)``: the same
    seed gives the same folds, fold sizes differ by at most one. ``k`` above the number of
    dialogues is a ConfigError (every fold needs a held-out dialogue); ``k < 2`` ValueError.
    """
    from sklearn.model_selection import KFold

    if k < 2:
        raise ValueError(f"k-fold needs 2 <= k <= number of dialogues ({len(df)}), got k={k}")
    if k > len(df):
        raise ConfigError(f"k_folds={k} is more than the {len(df):,} training dialogue(s) to split (after "
                          f"max_train_samples, when set): every fold needs a held-out dialogue; lower k_folds "
                          f"or use more training data")
    fnames = df["fname"].astype(str)
    duplicated = fnames[fnames.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"fname must be unique to assign folds; duplicated: {', '.join(duplicated[:5])}")
    fold = np.empty(len(df), dtype=int)
    for i, (_, heldout) in enumerate(KFold(n_splits=k, shuffle=True, random_state=seed).split(fnames)):
        fold[heldout] = i
    return pd.DataFrame({"fname": fnames.to_numpy(), "fold": fold})


def fold_split(df: pd.DataFrame, folds: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train_df, heldout_df)``: the rows of ``df`` outside and inside ``fold``, in ``df``'s order."""
    n_folds = int(folds["fold"].max()) + 1 if len(folds) else 0
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    fold_of = df["fname"].astype(str).map(dict(zip(folds["fname"].astype(str), folds["fold"])))
    missing = df.loc[fold_of.isna(), "fname"].tolist()
    if missing:
        raise ValueError(f"{len(missing)} dialogue(s) have no fold (e.g. {missing[0]!r}): "
                         f"the folds were assigned on another dataset")
    inside = (fold_of == fold).to_numpy()
    return df[~inside].reset_index(drop=True), df[inside].reset_index(drop=True)
