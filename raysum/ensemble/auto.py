"""auto: the best single unit, voting, weighted_avg or stacking, whichever scores best out of fold.

The comparison is made where all four are honest and on the same dialogues. The best
single unit is the unit with the best OOF score (``best_single_unit``: each unit scored
on the OOF dialogues it held out); every option is then scored on exactly those
dialogues:

- the single unit: its own summaries of them (it never trained on them);
- voting: its picks (nothing is fit);
- weighted_avg: cross-fitted picks with per-model weights fit on the other OOF
  dialogues (``weighted_avg.select_fitted``);
- stacking: cross-fitted picks of the meta-model chosen by nested cross-fitting
  (``stacking.select(..., nested=True)``), which falls back to voting's picks where a
  meta-model's gain is within noise.

The highest mean competition_score wins; a tie goes to the simpler option, in the order
of OPTIONS. Each ensemble's gain over the single unit is reported with a bootstrap
interval over those dialogues (numpy, seeded). dev and test then get the winner's picks:
the single unit's own summaries, or the ensemble fit on every OOF dialogue. The OOF split
gets the winner's cross-fitted picks; for the single unit, each OOF dialogue's summary
from the unit of its model that held it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from raysum.ensemble import stacking, voting, weighted_avg
from raysum.ensemble._crossfit import LEVEL, RESAMPLES, bootstrap_interval
from raysum.ensemble._evaluate import best_single_unit
from raysum.ensemble._prepare import Prepared, reference_quality
from raysum.ensemble._registry import Choice

OOF = "oof"
SINGLE = "single_unit"
OPTIONS = (SINGLE, "voting", "weighted_avg", "stacking")  # simplest first: a tie goes to the earlier


def _unit_rows(prepared: Prepared, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Per pool, the candidate the single unit submits (its model's plain-input candidate;
    on dev and test the unit's own, on OOF the one of the unit that held the dialogue
    out), and the mask of candidates that are the unit's own."""
    model, _, fold = unit.rpartition("/")
    table = prepared.candidates
    own = ((table["model"] == model) & (table["tta"] == "none")).to_numpy()
    fold_match = table["fold"].isna() if fold == "full" else table["fold"] == int(fold.removeprefix("fold"))
    mine = own & fold_match.fillna(False).to_numpy(dtype=bool)
    oof = prepared.split_mask(OOF)
    eligible = np.where(oof, own, mine)
    rows = np.full(len(prepared.pools), -1)
    positions = np.flatnonzero(eligible)
    first = np.r_[True, prepared.pool_of[positions][1:] != prepared.pool_of[positions][:-1]]
    rows[prepared.pool_of[positions[first]]] = positions[first]
    if (rows < 0).any():
        missing = prepared.pools.loc[rows < 0, ["split", "fname"]].astype(str).agg("/".join, axis=1).tolist()
        raise ValueError(f"auto chose the single unit {unit}, but it has no summary for {len(missing)} "
                         f"dialogue(s), e.g. {missing[:5]}")
    return rows, mine & oof


def _compare(quality: np.ndarray, compared: np.ndarray, picks: dict[str, np.ndarray], unit: str,
             seed: int) -> dict:
    """Each option's score on the ``compared`` pools, each ensemble's gain over the unit
    with its bootstrap interval, the winner and why."""
    per_dialogue = {name: quality[rows[compared]] * 100 for name, rows in picks.items()}
    scores = {name: float(values.mean()) for name, values in per_dialogue.items()}
    chosen = SINGLE
    for name in OPTIONS[1:]:
        if scores[name] > scores[chosen] + 1e-9:
            chosen = name
    gains = {}
    for name in OPTIONS[1:]:
        differences = per_dialogue[name] - per_dialogue[SINGLE]
        gains[name] = {"gain": round(float(differences.mean()), 4),
                       "interval": [round(v, 4) for v in bootstrap_interval(differences, seed)]}
    n = int(compared.sum())
    shown = ", ".join(f"{name} {scores[name]:.2f} ({gains[name]['gain']:+.2f}, {int(LEVEL * 100)}% interval "
                      f"{gains[name]['interval'][0]:+.2f} to {gains[name]['interval'][1]:+.2f})"
                      for name in OPTIONS[1:])
    where = f"on the {n} out-of-fold dialogues {unit} held out"
    if chosen == SINGLE:
        reason = (f"no ensemble beats the best single unit {where}: {unit} {scores[SINGLE]:.2f}; {shown}; "
                  f"the submission is {unit}'s own summaries")
    else:
        reason = (f"{chosen} scores highest {where}: {unit} {scores[SINGLE]:.2f}; {shown}; "
                  f"the submission is {chosen}'s picks")
    return {"chosen": chosen, "unit": unit, "dialogues": n,
            "scores": {name: round(value, 4) for name, value in scores.items()}, "gains": gains,
            "bootstrap": {"resamples": RESAMPLES, "level": LEVEL, "seed": seed}, "reason": reason}


def select(prepared: Prepared, *, references: Mapping[str, Sequence[str]] | None = None, seed: int = 0) -> Choice:
    """The winner's picks (module docstring); ``info``: the comparison (``chosen``, ``unit``,
    ``dialogues``, ``scores``, ``gains``, ``bootstrap``, ``reason``), the fitted weights
    and the nested stacking's choice."""
    if references is None:
        references = prepared.references_by_split.get(OOF, {})
    oof = prepared.split_mask(OOF)
    quality = np.full(len(oof), np.nan)
    if oof.any():
        quality[oof] = reference_quality(prepared, OOF, references)
    if len(set(prepared.candidates.loc[oof & ~np.isnan(quality), "fname"])) < 2:
        raise ValueError("auto compares the options by their out-of-fold score: it needs out-of-fold candidates "
                         "('oof' split) of at least 2 dialogues with references; this experiment has none (run "
                         "with k folds, or choose a strategy)")
    unit, _, _ = best_single_unit(prepared, {OOF: references})
    single, own = _unit_rows(prepared, unit)
    weighted = weighted_avg.select_fitted(prepared, references=references, seed=seed)
    stacked = stacking.select(prepared, references=references, seed=seed, nested=True)
    picks = {SINGLE: single, "voting": voting.select(prepared), "weighted_avg": weighted.rows,
             "stacking": stacked.rows}
    compared = np.zeros(len(prepared.pools), dtype=bool)
    compared[prepared.pool_of[own & ~np.isnan(quality)]] = True
    info = _compare(quality, compared, picks, unit, seed)
    info["weighted_avg"] = weighted.info
    info["stacking"] = {k: v for k, v in stacked.info.items() if k != "cv_oof"}
    return Choice(picks[info["chosen"]], info)
