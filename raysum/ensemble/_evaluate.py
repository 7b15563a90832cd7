"""Selections as tables, and every strategy scored next to the best single unit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from raysum.ensemble._prepare import Prepared, normalise_references
from raysum.ensemble._registry import canonical, run_strategy
from raysum.metrics import score

SELECTION_COLUMNS = ["split", "fname", "text", "model", "fold", "tta"]
SCORED_SPLITS = ("oof", "dev")

References = Mapping[str, Sequence[str]]


def select(
    prepared: Prepared,
    strategy: str,
    *,
    weights: Mapping[str, float] | None = None,
    references: References | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (split, fname): the chosen candidate's split, fname, text, model, fold, tta.

    ``weights``: for weighted_avg (model or 'model|tta' -> weight). ``references``: OOF
    fname -> references, what stacking learns from (default: those given to ``prepare``).
    """
    choice = run_strategy(prepared, strategy, weights=weights, references=references, seed=seed)
    return _selection_frame(prepared, choice.rows)


def _selection_frame(prepared: Prepared, rows: np.ndarray) -> pd.DataFrame:
    return prepared.candidates.loc[rows, SELECTION_COLUMNS].reset_index(drop=True)


def score_rows(rows: pd.DataFrame, references: References | None, tokenizer: str = "kiwi") -> dict | None:
    """raysum.metrics.score of ``rows``' texts on the fnames that have references; None if none do."""
    if not references:
        return None
    rows = rows[rows["fname"].isin(references)]
    if rows.empty:
        return None
    return score(rows["text"].tolist(), [references[f] for f in rows["fname"]], tokenizer)


def unit_name(model: str, fold) -> str:
    """``<model>/fold<k>``, or ``<model>/full`` for a unit trained without folds."""
    return f"{model}/full" if pd.isna(fold) else f"{model}/fold{int(fold)}"


def best_single_unit(prepared: Prepared, references_by_split: Mapping[str, References]):
    """(unit, its OOF scores, its dev scores) of the unit with the best OOF competition_score.

    A unit is (model, fold); its candidates without TTA (tta == "none") are scored on its
    own held-out part of the OOF split and on dev. Without any OOF scores the best dev
    score decides. Ties go to the first unit name in sorted order. Scores are
    raysum.metrics.score dicts, None for a split without candidates or references.
    """
    references_by_split = _normalised(references_by_split)
    plain = prepared.candidates[prepared.candidates["tta"] == "none"]
    scores = {}
    for (model, fold), rows in plain.groupby(["model", "fold"], dropna=False, sort=False):
        scores[unit_name(model, fold)] = {
            split: score_rows(rows[rows["split"] == split], references_by_split.get(split), prepared.tokenizer)
            for split in SCORED_SPLITS
        }
    for split in SCORED_SPLITS:
        ranked = sorted((-s[split]["competition_score"], unit) for unit, s in scores.items() if s[split])
        if ranked:
            unit = ranked[0][1]
            return unit, scores[unit]["oof"], scores[unit]["dev"]
    raise ValueError("no unit has candidates without TTA on a split with references (oof or dev)")


def chosen_by(best_single: Mapping) -> str:
    """How a ``best_single`` entry was chosen: ``oof`` (by out-of-fold score: some unit has
    OOF scores, the fold modes) or ``dev`` (no unit has any). Entries from before the
    ``chosen_by`` key are told by whether the unit has OOF scores."""
    return best_single.get("chosen_by") or ("oof" if best_single.get("oof") else "dev")


CHOSEN_BY_TEXT = {"oof": "OOF score", "dev": "dev score"}


def _normalised(references_by_split: Mapping[str, References]) -> dict[str, dict[str, list[str]]]:
    return {split: normalise_references(refs, split) for split, refs in (references_by_split or {}).items()}


def evaluate(
    prepared: Prepared,
    strategy: str,
    *,
    weights: Mapping[str, float] | None = None,
    references_by_split: Mapping[str, References],
    seed: int = 0,
) -> dict:
    """Score one strategy on OOF and dev next to the best single unit.

    Returns ``strategy`` (canonical name), ``oof`` and ``dev`` (raysum.metrics.score of
    the selected texts; None without references there; for stacking the OOF selection
    is the cross-fitted one), ``best_single`` = {unit, oof, dev}, ``selections`` (every
    split) and, for stacking, ``stacking`` = {cv_oof, feature_importances, ...}.
    ``best_single.chosen_by`` says how that unit was chosen (see :func:`chosen_by`).
    """
    name = canonical(strategy)
    references_by_split = _normalised(references_by_split)
    choice = run_strategy(
        prepared, name, weights=weights, references=references_by_split.get("oof"), seed=seed
    )
    selections = _selection_frame(prepared, choice.rows)
    result = {"strategy": name}
    for split in SCORED_SPLITS:
        rows = selections[selections["split"] == split]
        result[split] = score_rows(rows, references_by_split.get(split), prepared.tokenizer)
    unit, unit_oof, unit_dev = best_single_unit(prepared, references_by_split)
    result["best_single"] = {"unit": unit, "oof": unit_oof, "dev": unit_dev}
    result["best_single"]["chosen_by"] = chosen_by(result["best_single"])
    result["selections"] = selections
    if choice.info:
        info = dict(choice.info)
        if "cv_oof" in info:  # a strategy that cross-fits its OOF picks: their score
            info["cv_oof"] = result["oof"]
        result[name] = info
    return result
