"""Ensembles: one summary per dialogue chosen from every unit's candidates.

    from raysum.ensemble import prepare, select, evaluate
    prepared = prepare(candidates, dialogues)             # tokens + pairwise ROUGE, once
    picks = select(prepared, "voting")                    # split, fname, text, model, fold, tta
    picks = select(prepared, "weighted_avg", weights={"kobart": 2, "qwen3-4b": 1})
    result = evaluate(prepared, "stacking", references_by_split={"oof": ..., "dev": ...})

Strategies (one module each, the same ``select(prepared, ...)``): ``voting``
(minimum-Bayes-risk: highest mean ROUGE to the other candidates), ``weighted_avg``
(the same with per-model weights), ``stacking`` (a meta-model trained on out-of-fold
candidates) and ``auto`` (whichever of the best single unit, voting, weighted_avg and
stacking has the best cross-fitted out-of-fold score on the same dialogues). The seed
report's names are aliases: majority_vote -> voting, averaging
and rouge_weighted -> weighted_avg, blending -> stacking. Candidates are compared at
text level with Korean ROUGE, since the models do not share a tokenizer.
"""

from raysum.ensemble import auto, stacking, voting, weighted_avg
from raysum.ensemble._evaluate import (
    CHOSEN_BY_TEXT, best_single_unit, chosen_by, evaluate, score_rows, select, unit_name,
)
from raysum.ensemble._features import FEATURE_DOCS, candidate_features
from raysum.ensemble._prepare import Prepared, prepare, subset
from raysum.ensemble._registry import (
    ALIASES, NEEDS_OOF, STRATEGIES, Choice, canonical, config_problems, register_strategy,
    run_strategy,
)
from raysum.ensemble._stage import ALL_DECODINGS, chosen_decodings, ensemble_stage

register_strategy("voting", voting)
register_strategy("weighted_avg", weighted_avg)
register_strategy("stacking", stacking)
register_strategy("auto", auto)

__all__ = [
    "ALIASES",
    "CHOSEN_BY_TEXT",
    "FEATURE_DOCS",
    "NEEDS_OOF",
    "STRATEGIES",
    "Choice",
    "Prepared",
    "best_single_unit",
    "candidate_features",
    "canonical",
    "chosen_by",
    "ALL_DECODINGS",
    "chosen_decodings",
    "config_problems",
    "ensemble_stage",
    "evaluate",
    "prepare",
    "register_strategy",
    "run_strategy",
    "score_rows",
    "select",
    "subset",
    "unit_name",
]
