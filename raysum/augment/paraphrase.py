"""Augmentation ``paraphrase``: the TTA paraphrase rules applied to the training dialogue.

Exactly the rewrites of the ``paraphrase`` TTA strategy (``raysum.tta.paraphrase``):
per speaker a register (합니다체 / 해요체 / unchanged) for sentence endings, ``네`` <-> ``예``
at an utterance start, opening fillers dropped, lexicon synonyms. Facts are untouched, so
the summary is kept. Not applicable (None) when no rule applies.
"""

from __future__ import annotations

import random

from raysum.tta.paraphrase import rewrite


def augment(example: dict, rng: random.Random) -> dict | None:
    """``example`` with its dialogue paraphrased by rule."""
    dialogue = rewrite(example["dialogue"], rng)
    return None if dialogue == example["dialogue"] else {**example, "dialogue": dialogue}
