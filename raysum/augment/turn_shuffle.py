"""Augmentation ``turn_shuffle``: self-contained question-answer exchanges trade places.

Most turns of a dialogue answer the turn before them, so turns cannot be shuffled
freely. This method moves only *exchanges*: a turn whose utterance ends in a question
(``몇 분이세요?``) together with the next turn when that one is a plain answer (no ``?``,
another speaker: ``4명이에요.``), and only when the question does not itself answer a
question (the turn before it does not end in ``?``); the opening and the closing turn
never move. Exchanges with the same speaker order (#Person2# asks, #Person1# answers)
trade places with each other, so every slot keeps the speakers it had: no speaker talks
twice in a row where they did not before, every line keeps its speaker, every question
keeps its answer, and the multiset of turns is unchanged. The summary is kept, since a
report-style summary does not depend on the order in which details were settled. It is
a noise augmentation: the new order reads naturally more often than not, not always.
Not applicable (None) to a dialogue without two exchanges of the same speaker order
(about a third of the bundled training dialogues have them).
"""

from __future__ import annotations

import random

from raysum.data import turn_speaker
from raysum.tta import split_line

TRIES = 10


def augment(example: dict, rng: random.Random) -> dict | None:
    """``example`` with some of its question-answer exchanges moved into each other's places."""
    turns = example["dialogue"].split("\n")
    groups: dict[tuple, list[int]] = {}
    for start in _exchanges(turns):
        groups.setdefault((turn_speaker(turns[start]), turn_speaker(turns[start + 1])), []).append(start)
    movable = [slots for slots in groups.values() if len(slots) >= 2]
    if not movable:
        return None
    for _ in range(TRIES):
        shuffled = list(turns)
        for slots in movable:
            for slot, source in zip(slots, rng.sample(slots, len(slots))):
                shuffled[slot:slot + 2] = turns[source:source + 2]
        if shuffled != turns:
            return {**example, "dialogue": "\n".join(shuffled)}
    return None


def _asks(turn: str) -> bool:
    return split_line(turn)[1].rstrip().endswith("?")


def _exchanges(turns: list[str]) -> list[int]:
    """Start indices of the movable (question, answer) turn pairs, which never overlap."""
    starts, i = [], 1
    while i + 2 < len(turns):  # the answer comes before the closing turn
        question, answer = turns[i], turns[i + 1]
        if (_asks(question) and "?" not in split_line(answer)[1] and not _asks(turns[i - 1])
                and turn_speaker(question) != turn_speaker(answer)):
            starts.append(i)
            i += 2
        else:
            i += 1
    return starts
