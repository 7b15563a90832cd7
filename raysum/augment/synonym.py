"""Augmentation ``synonym``: everyday words of the dialogue swapped for synonyms.

Uses the lexicon of the TTA paraphrase rules (``raysum.tta._korean``: ``그럼`` <-> ``그러면``,
``정말`` <-> ``진짜``, ``감사합니다`` <-> ``고맙습니다``, ``성함`` <-> ``이름``,
``괜찮아요`` -> ``좋아요`` ...), matched as whole words; about half of the matches in a
dialogue are swapped, at least one. Only the dialogue changes: names, numbers, times,
places and tags are never in the lexicon, so the summary still holds. Not applicable
(None) when no lexicon word occurs.
"""

from __future__ import annotations

import random

from raysum.tta.paraphrase import rewrite


def augment(example: dict, rng: random.Random) -> dict | None:
    """``example`` with some of its dialogue's words replaced by synonyms."""
    dialogue = rewrite(example["dialogue"], rng, kinds={"synonym"})
    return None if dialogue == example["dialogue"] else {**example, "dialogue": dialogue}
