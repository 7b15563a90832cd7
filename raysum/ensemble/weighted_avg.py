"""weighted_avg: minimum-Bayes-risk selection with a weight per model (or model and TTA variant).

Weights: a dict whose keys are model names, or ``"model|tta"`` for one TTA variant of a
model (``"kobart|none"``, ``"kobart|paraphrase_1"``); a ``model|tta`` key wins over the
model's key. Every weight must be a finite number >= 0, their sum positive, every
candidate covered, and every key must name a model (and variant) of the candidates.

With w_i the weight of candidate i and s_ij = (R1_ij + R2_ij + RL_ij) / 3 its ROUGE F1
to candidate j of the same pool, the utility is

    U_i = w_i * sum_{j != i} w_j s_ij / sum_{j != i} w_j

a weighted vote of the others, times the candidate's own weight as a prior (0 where the
others' weights sum to 0). So weight 0 removes a model both as a choice and as a voter,
a dominant weight makes its model's candidate win wherever the candidates disagree, and
equal weights give exactly ``voting``. A pool whose candidates all weigh 0 falls back to
``voting``. Ties go to the first candidate in (model, fold, tta, text) order.

:func:`select_fitted` is how ``auto`` scores this strategy: one weight per model chosen
on the out-of-fold candidates (coordinate search over WEIGHT_GRID, starting from equal
weights, keeping a change only where it raises the mean ROUGE of the picks), with the
OOF picks cross-fitted: each OOF dialogue is picked with weights fit on the other
dialogues only, so their score is not optimistic. dev and test use weights fit on every
OOF dialogue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real

import numpy as np

from raysum.ensemble._crossfit import dialogue_folds
from raysum.ensemble._prepare import Prepared, reference_quality, subset
from raysum.ensemble._registry import Choice

SEPARATOR = "|"
OOF = "oof"
WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0)
FIT_SWEEPS = 3


def candidate_weights(prepared: Prepared, weights: Mapping[str, float]) -> np.ndarray:
    """The weight of every candidate; ValueError listing every problem with ``weights``."""
    table = prepared.candidates
    variants = set(zip(table["model"], table["tta"]))
    models = {model for model, _ in variants}
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a dict of model (or 'model|tta') -> weight, not {type(weights).__name__}")
    problems = []
    for key, value in weights.items():
        if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            problems.append(f"weight of {key!r} is {value!r}; it must be a finite number >= 0")
        model, _, tta = str(key).partition(SEPARATOR)
        if model not in models:
            problems.append(f"weight given for {key!r}, but no candidate comes from model {model!r}")
        elif tta and (model, tta) not in variants:
            problems.append(f"weight given for {key!r}, but model {model!r} has no TTA variant {tta!r}")
    uncovered = sorted(f"{m}{SEPARATOR}{t}" for m, t in variants if m not in weights and f"{m}{SEPARATOR}{t}" not in weights)
    if uncovered:
        problems.append(f"no weight for {', '.join(uncovered)}; give one per model (or per 'model|tta')")
    if not problems and not sum(weights.values()) > 0:
        problems.append("weights must have a positive sum")
    if problems:
        raise ValueError("invalid ensemble weights:\n" + "\n".join(f"  - {p}" for p in problems))
    keyed = [f"{m}{SEPARATOR}{t}" for m, t in zip(table["model"], table["tta"])]
    return np.array([float(weights.get(k, weights.get(m, 0.0))) for k, m in zip(keyed, table["model"])])


def utility(prepared: Prepared, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """U_i of every candidate; equal weights when ``weights`` is None."""
    if weights is None:
        return prepared.consensus.copy()
    w = candidate_weights(prepared, weights)
    out = prepared.consensus.copy()
    for pool, start, stop in prepared.pool_ranges():
        pw = w[start:stop]
        if stop - start < 2 or not pw.any():
            continue  # alone, or every weight 0: plain voting
        agreement = prepared.pairwise[pool].mean(axis=2)
        np.fill_diagonal(agreement, 0.0)
        others = pw.sum() - pw
        votes = np.divide(agreement @ pw, others, out=np.zeros_like(pw), where=others > 0)
        out[start:stop] = pw * votes
    return out


def select(prepared: Prepared, *, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Position of the candidate with the highest weighted utility in every pool."""
    return prepared.best_per_pool(utility(prepared, weights))


class _PoolArrays:
    """Pools padded to one size, so the picks of many weight vectors cost a few array
    operations each: agreement (P, n, n) with a zero diagonal, each candidate's model
    index (-1 for padding), its consensus and its quality."""

    def __init__(self, prepared: Prepared, pools: np.ndarray, quality: np.ndarray, models: list[str]):
        starts = prepared.pools["start"].to_numpy()[pools]
        stops = prepared.pools["stop"].to_numpy()[pools]
        width = int((stops - starts).max())
        index = {m: i for i, m in enumerate(models)}
        model_of = prepared.candidates["model"].map(index).to_numpy()
        self.agreement = np.zeros((len(pools), width, width))
        self.model = np.full((len(pools), width), -1)
        self.consensus = np.zeros((len(pools), width))
        self.quality = np.zeros((len(pools), width))
        for k, (pool, start, stop) in enumerate(zip(pools, starts, stops)):
            n = stop - start
            agreement = prepared.pairwise[pool].mean(axis=2)
            np.fill_diagonal(agreement, 0.0)
            self.agreement[k, :n, :n] = agreement
            self.model[k, :n] = model_of[start:stop]
            self.consensus[k, :n] = prepared.consensus[start:stop]
            self.quality[k, :n] = quality[start:stop]

    def part(self, keep: np.ndarray) -> "_PoolArrays":
        """The same arrays for the pools where ``keep`` is true."""
        out = object.__new__(_PoolArrays)
        for name in ("agreement", "model", "consensus", "quality"):
            setattr(out, name, getattr(self, name)[keep])
        return out

    def pick_quality(self, weights: np.ndarray) -> float:
        """Mean quality of the candidates ``weights`` (one per model) pick, as ``utility`` picks."""
        w = np.where(self.model >= 0, weights[np.maximum(self.model, 0)], 0.0)
        others = w.sum(axis=1, keepdims=True) - w
        votes = np.divide(np.einsum("pij,pj->pi", self.agreement, w), others, out=np.zeros_like(w),
                          where=others > 0)
        value = w * votes
        plain = (w.sum(axis=1) == 0) | ((self.model >= 0).sum(axis=1) < 2)
        value[plain] = self.consensus[plain]  # every weight 0, or alone: plain voting
        value = np.where(self.model >= 0, np.round(value, 12), -np.inf)
        picks = value.argmax(axis=1)  # the first of equal values: the first in ORDER
        return float(self.quality[np.arange(len(picks)), picks].mean())


def fit_weights(prepared: Prepared, quality: np.ndarray, pools: np.ndarray) -> dict[str, float]:
    """Per-model weights whose picks have the highest mean ``quality`` (one value per
    candidate) over ``pools``; a coordinate search over WEIGHT_GRID from equal weights."""
    models = sorted(prepared.candidates["model"].unique())
    return _search(_PoolArrays(prepared, pools, quality, models), models)


def _search(arrays: _PoolArrays, models: list[str]) -> dict[str, float]:
    weights = np.ones(len(models))
    best = arrays.pick_quality(weights)
    for _ in range(FIT_SWEEPS):
        changed = False
        for m in range(len(models)):
            for value in WEIGHT_GRID:
                trial = weights.copy()
                trial[m] = value
                if trial.sum() == 0 or value == weights[m]:
                    continue
                score = arrays.pick_quality(trial)
                if score > best + 1e-12:
                    best, weights, changed = score, trial, True
        if not changed:
            break
    return {model: float(w) for model, w in zip(models, weights)}


def select_fitted(prepared: Prepared, *, references: Mapping[str, Sequence[str]] | None = None,
                  seed: int = 0) -> Choice:
    """Weights fit on the OOF candidates; cross-fitted picks for OOF pools, the weights fit
    on every OOF dialogue for the other splits. ``info``: those weights and each part's."""
    del seed  # the search is deterministic
    oof = prepared.split_mask(OOF)
    if references is None:
        references = prepared.references_by_split.get(OOF, {})
    quality = np.full(len(oof), np.nan)
    quality[oof] = reference_quality(prepared, OOF, references)
    pool_of = prepared.pool_of
    oof_pools = np.unique(pool_of[oof])
    labelled = np.array([not np.isnan(quality[prepared.pools["start"][p]]) for p in oof_pools], dtype=bool)
    if labelled.sum() < 2:
        raise ValueError("weighted_avg fits its weights on out-of-fold candidates ('oof' split) of at least 2 "
                         "dialogues with references; this experiment has none")
    fnames = prepared.pools["fname"].to_numpy()[oof_pools]
    models = sorted(prepared.candidates["model"].unique())
    arrays = _PoolArrays(prepared, oof_pools, quality, models)
    all_weights = _search(arrays.part(labelled), models)
    rows = select(prepared, weights=all_weights)
    positions = np.flatnonzero(oof)
    oof_only = subset(prepared, oof)  # its pools: oof_pools, in the same order
    present = set(oof_only.candidates["model"])
    by_fold = []
    for train, held_out in dialogue_folds(fnames, labelled):
        keep = np.zeros(len(oof_pools), dtype=bool)
        keep[train] = True
        fold_weights = _search(arrays.part(keep & labelled), models)
        by_fold.append(fold_weights)
        fold_rows = select(oof_only, weights={m: w for m, w in fold_weights.items() if m in present})
        rows[oof_pools[held_out]] = positions[fold_rows[held_out]]
    return Choice(rows, {"weights": all_weights, "weights_by_fold": by_fold})
