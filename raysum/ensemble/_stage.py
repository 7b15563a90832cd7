"""The ensemble stage of an experiment: its candidates prepared once (tokens, pairwise
ROUGE), each strategy evaluated on OOF and dev next to the best single unit (stacking
fitted), and the test selection of the one submitted.

It reads the experiment directory (candidates, dialogues, references) and writes
nothing: what it returns — scores, ensemble info and the submitted test rows — is small
and goes back to the command, which writes the files. ``raysum.launch.ensemble_task``
runs it as a Ray task with its own CPUs, so the heavy part happens where the cluster has
room, not in the driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from raysum.ensemble._evaluate import SELECTION_COLUMNS, evaluate
from raysum.ensemble._prepare import prepare
from raysum.ensemble._registry import canonical
from raysum.experiment import Experiment
from raysum.experiment.candidates import DECODING_COLUMN as DECODING
from raysum.generation.decodings import default_decoding


# A model's "label" that pools every decoding setting it generated (its own and d1..d3):
# the ensemble then chooses among all of them, e.g. among sampled candidates.
ALL_DECODINGS = "all"


def chosen_decodings(candidates: pd.DataFrame, decodings: Mapping[str, str] | None) -> pd.DataFrame:
    """Every model's candidates of its chosen decoding label, or of every label it generated
    (``ALL_DECODINGS``); None: each model's own, d0."""
    if not decodings:
        return default_decoding(candidates)
    keep = pd.Series(False, index=candidates.index)
    for model, label in decodings.items():
        mine = candidates["model"] == model
        keep |= mine if label == ALL_DECODINGS else mine & (candidates[DECODING] == label)
    return candidates[keep].reset_index(drop=True)


def ensemble_stage(path: str | Path, strategies: list[str], *, submit: str | None = None,
                   weights: Mapping[str, float] | None = None, decodings: Mapping[str, str] | None = None,
                   seed: int = 0) -> dict:
    """Evaluate ``strategies`` on the experiment's candidates (``decodings``: model ->
    label, default each model's own). Returns ``ensembles``: strategy -> its evaluate()
    result without the selections (OOF, dev, best_single, stacking info); ``test``: the
    test rows (split, fname, text, model, fold, tta) of ``submit``, None without one.
    ``weights`` apply to weighted_avg only."""
    exp = Experiment(path)
    candidates = chosen_decodings(exp.candidates(), decodings)
    refs = exp.references()
    references = {"oof": refs["oof"], "dev": refs["dev"]}
    prepared = prepare(candidates, exp.dialogues())
    ensembles, test = {}, None
    for strategy in map(canonical, strategies):
        result = evaluate(prepared, strategy, weights=weights if strategy == "weighted_avg" else None,
                          references_by_split=references, seed=seed)
        selections = result.pop("selections")
        result.pop("strategy")
        ensembles[strategy] = result
        if submit is not None and strategy == canonical(submit):
            test = selections.loc[selections["split"] == "test", SELECTION_COLUMNS].reset_index(drop=True)
    return {"ensembles": ensembles, "test": test}
