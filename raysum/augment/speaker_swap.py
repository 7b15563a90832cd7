"""Augmentation ``speaker_swap``: #Person1# and #Person2# trade labels, in the dialogue and the summary.

The same conversation with its two main speakers relabelled everywhere (turn prefixes,
mentions inside utterances, the summary), with each attached particle made to agree with
its new tag (``#Person1#은`` <-> ``#Person2#는``). The pair stays a correct
(dialogue, summary) example, and it teaches a model to read who did what from the
conversation rather than from which label usually makes the reservation. Swapping twice
gives the example back. Not applicable (None) to a dialogue without either tag.
"""

from __future__ import annotations

import random

from raysum.tta import relabel

SWAP = {"#Person1#": "#Person2#", "#Person2#": "#Person1#"}


def augment(example: dict, rng: random.Random) -> dict | None:
    """``example`` with #Person1# and #Person2# swapped in its dialogue and summary."""
    if not any(tag in example["dialogue"] for tag in SWAP):
        return None
    return {**example, "dialogue": relabel(example["dialogue"], SWAP), "summary": relabel(example["summary"], SWAP)}
