"""Candidate features for stacking, each relative to the candidate's pool or model.

Out-of-fold pools hold one candidate per model (x TTA variants), dev and test pools one
per unit (models x folds x variants), so a feature that depends on the pool's size
(a raw sum, a raw rank) would not mean the same on both sides. Every feature here is a
mean, a share, a normalised rank or a z-score, and the pool size is a feature of its
own so the meta-model can condition on it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from raysum.ensemble._prepare import Prepared

SPEAKER_TAG = re.compile(r"#Person\d+#")

# One line per feature: what the meta-model sees (model one-hots come after these).
FEATURE_DOCS = {
    "consensus": "mean ROUGE F1 (mean of R1/R2/RL) to the pool's other candidates",
    "consensus_rank": "rank of consensus in the pool, 0 = highest, 1 = lowest",
    "consensus_gap": "consensus minus the pool's mean consensus",
    "consensus_max": "ROUGE F1 to the pool's closest other candidate",
    "length": "length in kiwi morphemes",
    "length_to_dialogue": "length / the dialogue's length in morphemes",
    "length_to_pool": "length / the pool's median length",
    "logprob_z": "mean token log-prob, z-scored over the candidates of its model in its split",
    "logprob_z_gap": "logprob_z minus the pool's mean logprob_z",
    "dialogue_rouge": "ROUGE F1 (mean of R1/R2/RL) to the dialogue",
    "dialogue_rouge_gap": "dialogue_rouge minus the pool's mean",
    "speaker_tags": "share of the #PersonN# tags in the candidate that occur in the dialogue (1 if none)",
    "repetition": "share of the candidate's morpheme bigrams that repeat an earlier one",
    "tta": "1 for a TTA variant's candidate, 0 for the plain input's",
    "pool_size": "number of candidates in the pool",
}


def _pool_mean(values: np.ndarray, prepared: Prepared) -> np.ndarray:
    sums = np.bincount(prepared.pool_of, weights=values)
    counts = np.bincount(prepared.pool_of)
    return (sums / counts)[prepared.pool_of]


def _pool_median(values: np.ndarray, prepared: Prepared) -> np.ndarray:
    out = np.empty_like(values, dtype=float)
    for _, start, stop in prepared.pool_ranges():
        out[start:stop] = np.median(values[start:stop])
    return out


def _consensus_rank(prepared: Prepared) -> np.ndarray:
    frame = pd.DataFrame({"pool": prepared.pool_of, "consensus": prepared.consensus})
    rank = frame.groupby("pool")["consensus"].rank(method="average", ascending=False).to_numpy() - 1
    size = np.bincount(prepared.pool_of)[prepared.pool_of]
    return np.divide(rank, size - 1, out=np.zeros_like(rank), where=size > 1)


def _consensus_max(prepared: Prepared) -> np.ndarray:
    out = np.zeros(len(prepared.candidates))
    for pool, start, stop in prepared.pool_ranges():
        if stop - start > 1:
            agreement = prepared.pairwise[pool].mean(axis=2)
            np.fill_diagonal(agreement, -np.inf)
            out[start:stop] = agreement.max(axis=1)
    return out


def _logprob_z(table: pd.DataFrame) -> np.ndarray:
    """Within (model, split): a candidate's features never depend on another split's rows, so
    the OOF and dev features a stage-2 search fits on (no test candidates) are exactly the ones
    finalize fits on (with them), and both pick the same summaries."""
    logprob = pd.to_numeric(table["logprob"], errors="coerce")
    grouped = logprob.groupby([table["model"], table["split"]])
    std = grouped.transform("std").fillna(0.0)
    z = (logprob - grouped.transform("mean")) / std.where(std > 0)
    return z.fillna(0.0).to_numpy()


def _speaker_tags(table: pd.DataFrame, dialogues: dict[tuple[str, str], set[str]]) -> np.ndarray:
    out = np.ones(len(table))
    for i, (text, key) in enumerate(zip(table["text"], zip(table["split"], table["fname"]))):
        tags = SPEAKER_TAG.findall(text)
        if tags:
            out[i] = sum(tag in dialogues[key] for tag in tags) / len(tags)
    return out


def _repetition(tokens) -> np.ndarray:
    out = np.zeros(len(tokens))
    for i, toks in enumerate(tokens):
        bigrams = list(zip(toks, toks[1:]))
        if bigrams:
            out[i] = 1.0 - len(set(bigrams)) / len(bigrams)
    return out


def candidate_features(prepared: Prepared, models: list[str] | None = None) -> pd.DataFrame:
    """One row per candidate (index = its position), the columns of FEATURE_DOCS then
    ``model=<name>`` one-hots for ``models`` (default: every model of the candidates)."""
    table = prepared.candidates
    # An fname is a dialogue only within its split (train and dev may reuse a name).
    dialogue_tags = {key: set(SPEAKER_TAG.findall(" ".join(toks))) for key, toks in prepared.dialogue_tokens.items()}
    length = np.array([len(t) for t in prepared.tokens], dtype=float)
    dialogue_length = np.array([len(prepared.dialogue_tokens[key]) for key in zip(table["split"], table["fname"])],
                               dtype=float)
    pool_median = _pool_median(length, prepared)
    logprob_z = _logprob_z(table)
    dialogue_rouge = prepared.dialogue_rouge.mean(axis=1)
    features = pd.DataFrame(
        {
            "consensus": prepared.consensus,
            "consensus_rank": _consensus_rank(prepared),
            "consensus_gap": prepared.consensus - _pool_mean(prepared.consensus, prepared),
            "consensus_max": _consensus_max(prepared),
            "length": length,
            "length_to_dialogue": np.divide(length, dialogue_length, out=np.zeros_like(length), where=dialogue_length > 0),
            "length_to_pool": np.divide(length, pool_median, out=np.ones_like(length), where=pool_median > 0),
            "logprob_z": logprob_z,
            "logprob_z_gap": logprob_z - _pool_mean(logprob_z, prepared),
            "dialogue_rouge": dialogue_rouge,
            "dialogue_rouge_gap": dialogue_rouge - _pool_mean(dialogue_rouge, prepared),
            "speaker_tags": _speaker_tags(table, dialogue_tags),
            "repetition": _repetition(prepared.tokens),
            "tta": (table["tta"] != "none").to_numpy(dtype=float),
            "pool_size": np.bincount(prepared.pool_of)[prepared.pool_of].astype(float),
        },
        index=table.index,
    )
    for model in models if models is not None else sorted(table["model"].unique()):
        features[f"model={model}"] = (table["model"] == model).to_numpy(dtype=float)
    return features
