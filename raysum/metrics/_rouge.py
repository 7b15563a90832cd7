"""ROUGE-1/2/L F1 on token lists, per dialogue (mean over references) and per data set.

The arithmetic is rouge-score's (``rouge_scorer._score_ngrams`` and ``_score_lcs``:
clipped n-gram counts, token-level LCS, F1 = 2PR/(P+R)), so on the same tokens the
numbers agree to the last bit. What differs is speed: rouge-score fills an O(n*m)
Python table for every LCS, while here the LCS runs bit-parallel on Python integers
(Hyyrö 2004), one big-integer step per token of the shorter side. That matters for
ensembles that compare every candidate with every other one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from raysum.metrics._tokenize import token_table

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")

# How many problems a ValueError lists before it only counts the rest.
_MAX_LISTED = 10


class _Profile(NamedTuple):
    """What ROUGE needs from one token list, computed once and reused across pairs."""

    tokens: Sequence[str]
    unigrams: Counter
    bigrams: Counter
    positions: dict  # token -> bit mask of the positions where it occurs


def _profile(tokens: Sequence[str]) -> _Profile:
    positions: dict = {}
    for i, token in enumerate(tokens):
        positions[token] = positions.get(token, 0) | (1 << i)
    return _Profile(tokens, Counter(tokens), Counter(zip(tokens, tokens[1:])), positions)


def _overlap(a: Counter, b: Counter) -> int:
    if len(a) > len(b):
        a, b = b, a
    return sum(min(count, b[gram]) for gram, count in a.items() if gram in b)


def _lcs_length(a: _Profile, b: _Profile) -> int:
    # Hyyrö's bit-vector LCS: a 0 bit in `row` marks a position of `a` used by the
    # LCS so far; each token of `b` updates all positions at once. The bits sit on
    # the longer side so the Python loop runs over the shorter one.
    if len(a.tokens) < len(b.tokens):
        a, b = b, a
    full = (1 << len(a.tokens)) - 1
    row = full
    for token in b.tokens:
        match = a.positions.get(token)
        if match:
            low = row & match
            row = ((row + low) | (row - low)) & full
    return len(a.tokens) - row.bit_count()


def _fmeasure(overlap: int, n_pred: int, n_ref: int) -> float:
    precision = overlap / max(n_pred, 1)
    recall = overlap / max(n_ref, 1)
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _rouge_profiles(pred: _Profile, ref: _Profile) -> tuple[float, float, float]:
    n_pred, n_ref = len(pred.tokens), len(ref.tokens)
    rouge1 = _fmeasure(_overlap(pred.unigrams, ref.unigrams), n_pred, n_ref)
    rouge2 = _fmeasure(
        _overlap(pred.bigrams, ref.bigrams), max(n_pred - 1, 0), max(n_ref - 1, 0)
    )
    if n_pred == 0 or n_ref == 0:
        return rouge1, rouge2, 0.0
    lcs = _lcs_length(pred, ref)
    precision, recall = lcs / n_pred, lcs / n_ref
    rouge_l = 2 * precision * recall / (precision + recall) if lcs else 0.0
    return rouge1, rouge2, rouge_l


def rouge_f1(pred_tokens: Sequence[str], ref_tokens: Sequence[str]) -> tuple[float, float, float]:
    """(ROUGE-1, ROUGE-2, ROUGE-L) F1 of one prediction against one reference, 0-1 scale.

    Equals ``RougeScorer(["rouge1", "rouge2", "rougeL"]).score(ref, pred)`` when the
    scorer's tokenizer yields these same tokens.
    """
    return _rouge_profiles(_profile(pred_tokens), _profile(ref_tokens))


def pairwise_rouge_f1(token_lists: Sequence[Sequence[str]]) -> np.ndarray:
    """ROUGE F1 of every pair of token lists: array ``[i, j, k]`` with k = R1, R2, RL.

    F1 is symmetric, so each pair is computed once; the diagonal is each list
    against itself (1.0, or 0.0 for lists too short to have n-grams).
    """
    profiles = [_profile(tokens) for tokens in token_lists]
    out = np.zeros((len(profiles), len(profiles), 3))
    for i, a in enumerate(profiles):
        for j in range(i, len(profiles)):
            out[i, j] = out[j, i] = _rouge_profiles(a, profiles[j])
    return out


def _check_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if isinstance(predictions, str):
        raise ValueError("predictions must be a list of strings, not a single str")
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} reference lists; "
            "give one list of references per prediction"
        )
    problems = []
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            problems.append(f"prediction {i} is {type(pred).__name__}, not str")
        if isinstance(refs, str):
            problems.append(f"references[{i}] is a str; wrap it in a list: [reference]")
        elif len(refs) == 0:
            problems.append(f"dialogue {i} has no reference")
        elif not all(isinstance(ref, str) for ref in refs):
            problems.append(f"references[{i}] holds a value that is not str")
    if problems:
        listed = problems[:_MAX_LISTED]
        if len(problems) > _MAX_LISTED:
            listed.append(f"... and {len(problems) - _MAX_LISTED} more")
        raise ValueError("cannot score:\n" + "\n".join(f"  - {p}" for p in listed))


def score_dialogues(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str = "kiwi"
) -> pd.DataFrame:
    """One row per dialogue: ROUGE-1/2/L F1 of its prediction, averaged over its references."""
    _check_inputs(predictions, references)
    texts = list(predictions) + [ref for refs in references for ref in refs]
    table = token_table(texts, tokenizer)
    profiles = {text: _profile(tokens) for text, tokens in table.items()}
    rows = []
    for pred, refs in zip(predictions, references):
        per_ref = [_rouge_profiles(profiles[pred], profiles[ref]) for ref in refs]
        rows.append([sum(values) / len(refs) for values in zip(*per_ref)])
    return pd.DataFrame(rows, columns=list(ROUGE_KEYS), dtype=float)


def score(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str = "kiwi"
) -> dict:
    """Data-set ROUGE: mean over dialogues of each dialogue's mean over its references.

    Returns rouge1, rouge2, rougeL (0-1), ``rouge_sum`` = R1+R2+RL,
    ``competition_score`` = (R1+R2+RL)/3*100, and ``n`` dialogues.
    """
    per_dialogue = score_dialogues(predictions, references, tokenizer)
    if per_dialogue.empty:
        raise ValueError("cannot score: no predictions given")
    result = {key: float(per_dialogue[key].mean()) for key in ROUGE_KEYS}
    result["rouge_sum"] = result["rouge1"] + result["rouge2"] + result["rougeL"]
    result["competition_score"] = result["rouge_sum"] / 3 * 100
    result["n"] = len(per_dialogue)
    return result
