"""TTA strategy ``reorder``: the same dialogue with its speakers relabelled.

A variant permutes the speaker tags present in the dialogue (``#Person1#`` <-> ``#Person2#``
for two speakers; any non-identity permutation for more), consistently on every line and
wherever a tag is mentioned inside an utterance, with attached particles made to agree
(``#Person2#는`` -> ``#Person1#은``). Its label map takes each variant tag back to the
original one, so ``map_back`` turns a summary generated for the variant into a summary
about the original speakers. Who speaks first and how the roles are labelled is exactly
what a summarizer tends to over-fit, which makes the relabelled input a useful second
opinion while every word said stays the same.

Turns are not reordered: in a dialogue almost every turn answers the one before it, and
no rule found tells which turns could swap places without changing what is said.

When the dialogue's own speakers have no permutation left that is not in ``taken``
(two speakers have only one), the permutation takes in the first speaker tag the
dialogue does not use (``#Person1#`` -> ``#Person3#``, ``#Person2#`` -> ``#Person1#``, ...).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Collection

from raysum.data import SPEAKER_TAGS
from raysum.tta._labels import inverse, relabel, speakers

MAX_ENUMERATED = 5  # speakers whose permutations are listed in full (5! = 120)


def variant(dialogue: str, rng: random.Random, taken: Collection[str] = ()) -> tuple[str, dict[str, str]]:
    """``dialogue`` with its speakers relabelled (differs from it and from ``taken`` when possible),
    and the map from the variant's tags back to the original's."""
    present = speakers(dialogue)
    unused = [tag for tag in SPEAKER_TAGS if tag not in present]
    pools = [present] + [present + unused[: k + 1] for k in range(min(len(unused), 2))]
    fallback = (dialogue, {})
    for pool in pools:
        for mapping in _mappings(present, pool, rng):
            text = relabel(dialogue, mapping)
            if text == dialogue:
                continue
            if text not in taken:
                return text, inverse(mapping)
            fallback = (text, inverse(mapping))
    return fallback


def _mappings(present: list[str], pool: list[str], rng: random.Random):
    """Non-identity one-to-one maps of ``present`` into ``pool``, in random order."""
    if len(pool) <= MAX_ENUMERATED:
        images = list(itertools.permutations(pool, len(present)))
        rng.shuffle(images)
    else:
        images = [tuple(rng.sample(pool, len(present))) for _ in range(50)]
    for image in images:
        mapping = {old: new for old, new in zip(present, image) if old != new}
        if mapping:
            yield mapping
