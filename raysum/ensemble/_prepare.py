"""Candidates prepared once for every strategy: pools, tokens and ROUGE within each pool.

A pool is every candidate of one dialogue in one split, ``(split, fname)``. Preparing
tokenizes every candidate, dialogue and reference once (one batched Kiwi call) and, per
pool, runs one ``pairwise_rouge_f1`` over the candidates, the dialogue and the
references, so each token list is profiled once and every strategy reuses the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from raysum.metrics import pairwise_rouge_f1, rouge_f1, tokenize_many

REQUIRED_COLUMNS = ("split", "fname", "model", "text")
# Candidates are stored in this order; within a pool it is also the tie-break order:
# among equally good candidates the first one wins.
ORDER = ["split", "fname", "model", "fold", "tta", "decoding", "text"]
_MAX_LISTED = 5


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything the strategies share; built by :func:`prepare`, read-only afterwards.

    Arrays are indexed by candidate position (the RangeIndex of ``candidates``); the
    candidates of pool ``k`` are rows ``pools.start[k]`` to ``pools.stop[k]`` (exclusive).
    ROUGE values are F1 on a 0-1 scale in the order R1, R2, RL.
    """

    candidates: pd.DataFrame  # sorted by ORDER, with a `pool` column
    pools: pd.DataFrame  # split, fname, start, stop: one row per (split, fname)
    pool_of: np.ndarray  # pool number of each candidate
    tokens: list[Sequence[str]]  # tokens of each candidate
    dialogue_tokens: dict[tuple[str, str], Sequence[str]]  # (split, fname) -> tokens of its dialogue
    pairwise: list[np.ndarray]  # per pool: (n, n, 3) ROUGE of every candidate pair
    consensus: np.ndarray  # mean over the pool's other candidates of mean(R1, R2, RL)
    dialogue_rouge: np.ndarray  # (N, 3) ROUGE of each candidate to its dialogue
    reference_rouge: np.ndarray  # (N, 3) mean over its references; NaN where none given
    references_by_split: dict = field(default_factory=dict)
    tokenizer: str = "kiwi"

    def pool_ranges(self):
        """(pool, start, stop) for every pool."""
        return _ranges(self.pools)

    def split_mask(self, split: str) -> np.ndarray:
        return (self.candidates["split"] == split).to_numpy()

    def best_per_pool(self, utility: np.ndarray) -> np.ndarray:
        """Position of the highest ``utility`` in each pool; ties go to the first in ORDER.

        Utilities are rounded to 12 decimals first, so sums that differ only in their
        last bits (the same texts summed in another order) count as ties.
        """
        utility = np.round(np.asarray(utility, dtype=float), 12)
        if np.isnan(utility).any():
            raise ValueError("a strategy produced NaN utilities")
        positions = np.arange(len(utility))
        order = np.lexsort((positions, -utility, self.pool_of))
        return order[self.pools["start"].to_numpy()]


def _check_candidates(candidates: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in candidates.columns]
    if missing:
        raise ValueError(f"candidates table lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)}")
    if candidates.empty:
        raise ValueError("candidates table is empty")
    table = candidates.copy()
    if "fold" not in table:
        table["fold"] = pd.NA
    table["fold"] = table["fold"].astype("Int64")
    if "tta" not in table:
        table["tta"] = "none"
    if "decoding" not in table:
        table["decoding"] = "d0"  # a table from before several decoding settings: the model's own
    if "logprob" not in table:
        table["logprob"] = np.nan
    problems = []
    for column in ("split", "fname", "model", "tta", "decoding", "text"):
        bad = ~table[column].map(lambda v: isinstance(v, str))
        if bad.any():
            rows = list(np.flatnonzero(bad.to_numpy())[:_MAX_LISTED])
            problems.append(f"{column} is not a str in {int(bad.sum())} row(s), e.g. rows {rows}")
    if problems:
        raise ValueError("cannot prepare candidates:\n" + "\n".join(f"  - {p}" for p in problems))
    table = table.sort_values(ORDER, kind="stable", na_position="last").reset_index(drop=True)
    return table


def _pools(table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    key = table["split"] + "\x00" + table["fname"]
    new_pool = np.r_[True, key.to_numpy()[1:] != key.to_numpy()[:-1]]
    pool_of = np.cumsum(new_pool) - 1
    starts = np.flatnonzero(new_pool)
    pools = table.loc[starts, ["split", "fname"]].reset_index(drop=True)
    pools["start"] = starts
    pools["stop"] = np.r_[starts[1:], len(table)]
    return pools, pool_of


def normalise_references(references: Mapping[str, Sequence[str]], split: str) -> dict[str, list[str]]:
    """fname -> list of references (parquet gives arrays); fnames without any are left out."""
    out = {}
    for fname, refs in references.items():
        if isinstance(refs, str):
            raise ValueError(f"references of {split}/{fname} is a str; give a list of references")
        refs = list(refs)
        if not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references of {split}/{fname} hold a value that is not str")
        if refs:
            out[fname] = refs
    return out


def _dialogues_by_split(dialogues: Mapping, splits) -> dict[str, Mapping[str, str]]:
    """split -> fname -> dialogue for every split in ``splits``. ``dialogues`` is either
    that already (what ``Experiment.dialogues()`` gives: an fname may name different
    dialogues in different splits) or one fname -> dialogue mapping for every split."""
    values = list(dialogues.values())
    if values and all(isinstance(v, Mapping) for v in values):
        return {s: dialogues.get(s, {}) for s in splits}
    if all(isinstance(v, str) for v in values):
        return {s: dialogues for s in splits}
    raise ValueError("dialogues must map fname -> dialogue text, or split -> fname -> dialogue text")


def prepare(
    candidates: pd.DataFrame,
    dialogues: Mapping[str, str] | Mapping[str, Mapping[str, str]],
    *,
    references_by_split: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    tokenizer: str = "kiwi",
) -> Prepared:
    """Tokenize and score every pool once; the result feeds every strategy.

    ``candidates``: the candidates table (split, fname, model, text; fold, tta, logprob
    where known). ``dialogues``: split -> fname -> dialogue text for every (split, fname)
    of the table (an fname may name different dialogues in different splits), or one
    fname -> dialogue text for all splits.
    ``references_by_split``: optional split -> fname -> references, for ROUGE of each
    candidate to its references (what stacking learns from on the "oof" split).
    """
    table = _check_candidates(candidates)
    pools, pool_of = _pools(table)
    by_split = _dialogues_by_split(dialogues, pools["split"].unique())
    keys = list(zip(pools["split"], pools["fname"]))
    missing = sorted(f"{s}/{f}" for s, f in keys if f not in by_split[s])
    if missing:
        raise ValueError(f"no dialogue for {len(missing)} fname(s), e.g. {missing[:_MAX_LISTED]}")
    dialogue_of = {(s, f): by_split[s][f] for s, f in keys}
    references_by_split = {s: normalise_references(r, s) for s, r in (references_by_split or {}).items()}
    pool_refs = [references_by_split.get(s, {}).get(f, []) for s, f in zip(pools["split"], pools["fname"])]

    texts = table["text"].tolist()
    distinct = list(dict.fromkeys(texts + list(dialogue_of.values()) + [r for rs in pool_refs for r in rs]))
    token_of = dict(zip(distinct, map(tuple, tokenize_many(distinct, tokenizer))))
    tokens = [token_of[t] for t in texts]
    dialogue_tokens = {key: token_of[dialogue] for key, dialogue in dialogue_of.items()}

    n_rows = len(table)
    pairwise, consensus = [], np.zeros(n_rows)
    dialogue_rouge = np.zeros((n_rows, 3))
    reference_rouge = np.full((n_rows, 3), np.nan)
    for (_, start, stop), key, refs in zip(_ranges(pools), keys, pool_refs):
        n = stop - start
        lists = tokens[start:stop] + [dialogue_tokens[key]] + [token_of[r] for r in refs]
        scores = pairwise_rouge_f1(lists)
        pairwise.append(scores[:n, :n].copy())
        dialogue_rouge[start:stop] = scores[:n, n]
        if refs:
            reference_rouge[start:stop] = scores[:n, n + 1 :].mean(axis=1)
        consensus[start:stop] = _consensus(scores[:n, :n])
    table["pool"] = pool_of
    return Prepared(
        candidates=table,
        pools=pools,
        pool_of=pool_of,
        tokens=tokens,
        dialogue_tokens=dialogue_tokens,
        pairwise=pairwise,
        consensus=consensus,
        dialogue_rouge=dialogue_rouge,
        reference_rouge=reference_rouge,
        references_by_split=references_by_split,
        tokenizer=tokenizer,
    )


def subset(prepared: Prepared, keep: np.ndarray) -> Prepared:
    """The prepared candidates restricted to the rows where ``keep`` (a boolean mask over
    candidate positions) is true, without tokenizing or scoring again: the pairwise ROUGE
    of the kept candidates is sliced, their consensus recomputed among themselves. Pools
    left empty disappear. (The decoding search scores one decoding choice per model so.)"""
    rows = np.flatnonzero(np.asarray(keep, dtype=bool))
    if not len(rows):
        raise ValueError("subset keeps no candidate")
    table = prepared.candidates.iloc[rows].drop(columns="pool").reset_index(drop=True)
    pools, pool_of = _pools(table)
    old_start = prepared.pools["start"].to_numpy()[prepared.pool_of[rows]]
    local = rows - old_start  # each kept row's position inside its old pool
    pairwise, consensus = [], np.zeros(len(rows))
    for pool, start, stop in _ranges(pools):
        index = local[start:stop]
        scores = prepared.pairwise[prepared.pool_of[rows[start]]][np.ix_(index, index)]
        pairwise.append(scores)
        consensus[start:stop] = _consensus(scores)
    table["pool"] = pool_of
    return Prepared(
        candidates=table,
        pools=pools,
        pool_of=pool_of,
        tokens=[prepared.tokens[i] for i in rows] if prepared.tokens else [],
        dialogue_tokens=prepared.dialogue_tokens,
        pairwise=pairwise,
        consensus=consensus,
        dialogue_rouge=prepared.dialogue_rouge[rows],
        reference_rouge=prepared.reference_rouge[rows],
        references_by_split=prepared.references_by_split,
        tokenizer=prepared.tokenizer,
    )


def _consensus(scores: np.ndarray) -> np.ndarray:
    """Each candidate's mean ROUGE (mean of R1/R2/RL) to the other candidates of its pool."""
    n = scores.shape[0]
    if n < 2:
        return np.zeros(n)
    agreement = scores.mean(axis=2)
    return (agreement.sum(axis=1) - np.diagonal(agreement)) / (n - 1)


def _ranges(pools: pd.DataFrame):
    return zip(range(len(pools)), pools["start"].to_numpy(), pools["stop"].to_numpy())


def reference_quality(prepared: Prepared, split: str, references: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Mean ROUGE F1 (mean of R1, R2, RL, then over the references) of each candidate of
    ``split`` to ``references``; NaN for candidates whose fname has none.

    Reuses the prepared values when ``references`` are the ones given to ``prepare``.
    """
    mask = prepared.split_mask(split)
    references = normalise_references(references, split)
    if references == prepared.references_by_split.get(split):
        return prepared.reference_rouge[mask].mean(axis=1)
    table = prepared.candidates[mask]
    distinct = list(dict.fromkeys(r for f in table["fname"].unique() for r in references.get(f, [])))
    token_of = dict(zip(distinct, map(tuple, tokenize_many(distinct, prepared.tokenizer))))
    quality = np.full(len(table), np.nan)
    for i, (position, fname) in enumerate(zip(np.flatnonzero(mask), table["fname"])):
        refs = references.get(fname)
        if refs:
            candidate = prepared.tokens[position]
            quality[i] = np.mean([np.mean(rouge_f1(candidate, token_of[r])) for r in refs])
    return quality
