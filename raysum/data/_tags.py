"""Speaker tags, competition masks and the turn structure of a dialogue.

A dialogue is one turn per line, each line starting with its speaker tag and a colon:
``#Person1#: 안녕하세요`` (whitespace after the colon is optional). The competition
replaces personal data with mask tags (``#PhoneNumber#`` ...), which are tags too:
tokenizers and ROUGE must keep every ``#...#`` tag whole.
"""

from __future__ import annotations

import re

SPEAKER_TAGS: tuple[str, ...] = tuple(f"#Person{i}#" for i in range(1, 8))
MASK_TAGS: tuple[str, ...] = (
    "#PhoneNumber#",
    "#Address#",
    "#DateOfBirth#",
    "#Email#",
    "#PassportNumber#",
    "#SSN#",
    "#CardNumber#",
    "#CarNumber#",
)
KNOWN_TAGS: frozenset[str] = frozenset(SPEAKER_TAGS + MASK_TAGS)

# Any tag, known or not: '#' + a letter + letters/digits + '#'.
TAG_PATTERN = re.compile(r"#[A-Za-z][A-Za-z0-9]*#")
# The start of a turn: a tag directly followed by ':' (and optional whitespace).
TURN_PATTERN = re.compile(r"(#[A-Za-z][A-Za-z0-9]*#):\s*")


def split_turns(dialogue: str) -> list[str]:
    """The non-blank lines of a dialogue, stripped: one turn each."""
    return [line.strip() for line in dialogue.split("\n") if line.strip()]


def turn_speaker(turn: str) -> str | None:
    """The speaker tag that opens ``turn`` (``'#Person1#'``), or None when it has none."""
    match = TURN_PATTERN.match(turn)
    return match.group(1) if match else None


def unusual_tags(text: str) -> list[str]:
    """Tags in ``text`` that are neither speaker tags nor competition masks, in first-seen order."""
    return list(dict.fromkeys(tag for tag in TAG_PATTERN.findall(text) if tag not in KNOWN_TAGS))
