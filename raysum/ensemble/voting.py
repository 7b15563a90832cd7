"""voting: minimum-Bayes-risk selection, the candidate that agrees most with the others.

Per pool (one dialogue in one split), candidate i's utility is its mean ROUGE F1 to
every other candidate j of the pool, ROUGE being the mean of R1, R2 and RL:

    U_i = 1/(n-1) * sum_{j != i} (R1_ij + R2_ij + RL_ij) / 3

(rouge_sum/3, so the same argmax as the mean rouge_sum). The highest U_i wins; ties go
to the first candidate in (model, fold, tta, text) order. A pool of one candidate picks
it. Identical texts from several units count as several votes, as they should.
"""

from __future__ import annotations

import numpy as np

from raysum.ensemble._prepare import Prepared


def utility(prepared: Prepared) -> np.ndarray:
    """U_i of every candidate (0 for a candidate alone in its pool)."""
    return prepared.consensus


def select(prepared: Prepared) -> np.ndarray:
    """Position of the consensus candidate of every pool, in pool order."""
    return prepared.best_per_pool(utility(prepared))
