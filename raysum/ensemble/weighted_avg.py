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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import numpy as np

from raysum.ensemble._prepare import Prepared

SEPARATOR = "|"


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
