"""TTA strategy ``paraphrase``: the same dialogue said a little differently.

Each variant rewrites utterances with the Korean rules of ``raysum.tta._korean``:

- per speaker, a register is drawn for the variant: 합니다체 (``싶어요`` -> ``싶습니다``,
  ``할게요`` -> ``하겠습니다``), 해요체 (``감사합니다`` -> ``감사해요``, ``입니다`` ->
  ``이에요/예요``), or unchanged; most sentence endings of that speaker follow it;
- an opening ``네`` becomes ``예`` (and back), about half the time;
- an opening filler (``음,`` ``아,`` ``어,`` ``그,`` ``저기,``) is dropped, about half the time;
- about half of the lexicon's everyday words are swapped for a synonym
  (``그럼`` -> ``그러면``, ``정말`` -> ``진짜``, ``괜찮아요`` -> ``좋아요`` ...).

Speaker tags, mask tags, digits, names, places and times are never matched by a rule, so
they are the same in every variant, and the label map is always ``{}``. A variant is
never a silent copy: when the draw changes nothing (or repeats a variant already made
for the dialogue, see ``taken``), it is drawn again, and the last resort applies every
applicable rule at once. A dialogue where no rule applies at all is returned unchanged;
on the bundled dev set that never happens.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from raysum.tta._korean import KINDS, Edit, apply_edits, pick, split_line, utterance_edits

ATTEMPTS = 8
REGISTER_CHANCE = 0.85   # share of a speaker's sentence endings that follow the drawn register
OTHER_CHANCE = 0.5       # share of yes/filler/synonym edits applied


def variant(dialogue: str, rng: random.Random, taken: Collection[str] = ()) -> tuple[str, dict[str, str]]:
    """A paraphrase of ``dialogue`` that differs from it and from every text in ``taken``."""
    return rewrite(dialogue, rng, KINDS, taken), {}


def rewrite(dialogue: str, rng: random.Random, kinds: Collection[str] = KINDS,
            taken: Collection[str] = ()) -> str:
    """``dialogue`` rewritten with edits of ``kinds`` only (see ``raysum.tta._korean.KINDS``);
    ``dialogue`` itself when none applies."""
    lines = [split_line(line) for line in dialogue.split("\n")]
    edits = [utterance_edits(text, kinds) for _, text in lines]
    if not any(edits):
        return dialogue
    speakers = sorted({prefix.split(":")[0] for prefix, _ in lines})
    candidate = dialogue
    for _ in range(ATTEMPTS):
        register = {speaker: rng.choice(("formal", "polite", None)) for speaker in speakers}
        chosen = [pick(line_edits, rng, _chance(register.get(prefix.split(":")[0])))
                  for (prefix, _), line_edits in zip(lines, edits)]
        candidate = _join(lines, chosen)
        if candidate != dialogue and candidate not in taken:
            return candidate
    # Last resort: every applicable rule, sentence endings towards whichever register has more.
    n_formal = sum(e.kind == "formal" for line_edits in edits for e in line_edits)
    n_polite = sum(e.kind == "polite" for line_edits in edits for e in line_edits)
    everything = _chance("formal" if n_formal >= n_polite else "polite", certain=True)
    chosen = [pick(line_edits, rng, everything) for line_edits in edits]
    fallback = _join(lines, chosen)
    return fallback if fallback != dialogue else candidate


def _chance(register: str | None, certain: bool = False):
    def chance(edit: Edit) -> float:
        if edit.kind in ("formal", "polite"):
            return (1.0 if certain else REGISTER_CHANCE) if edit.kind == register else 0.0
        return 1.0 if certain else OTHER_CHANCE
    return chance


def _join(lines: list[tuple[str, str]], chosen: list[list[Edit]]) -> str:
    return "\n".join(prefix + apply_edits(text, line_edits) for (prefix, text), line_edits in zip(lines, chosen))
