"""Speaker-label permutations that keep Korean particles in agreement with their tag.

A summary says ``#Person1#은`` but ``#Person2#는``: the particle follows how the tag is
read aloud ("퍼슨 원" ends in a consonant, "퍼슨 투" does not). Relabelling a text
therefore replaces every tag of the mapping at once (so a swap does not cascade) and
re-picks the particle directly attached to a replaced tag. Tags outside the mapping and
their particles are left exactly as they are, so relabelling with a mapping and then
with its inverse gives back the original text whenever its particles agreed to begin
with.
"""

from __future__ import annotations

import re

from raysum.data import SPEAKER_TAGS, TAG_PATTERN

# Whether the tag, read aloud, ends in a final consonant (batchim). "#Person7#" is "세븐".
TAG_HAS_FINAL: dict[str, bool] = {
    "#Person1#": True, "#Person2#": False, "#Person3#": False, "#Person4#": False,
    "#Person5#": False, "#Person6#": False, "#Person7#": True,
    "#PhoneNumber#": False, "#Address#": False, "#DateOfBirth#": False, "#Email#": True,
    "#PassportNumber#": False, "#SSN#": True, "#CardNumber#": False, "#CarNumber#": False,
}

# (after a consonant, after a vowel): particles and copula endings that attach to a noun.
PARTICLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("은", "는"), ("이", "가"), ("을", "를"), ("과", "와"), ("으로", "로"), ("이랑", "랑"),
    ("이나", "나"), ("이에요", "예요"), ("이요", "요"), ("이라고", "라고"), ("이라는", "라는"),
    ("이죠", "죠"), ("이고", "고"), ("이고요", "고요"), ("이다", "다"), ("이면", "면"),
    ("이며", "며"), ("이라서", "라서"), ("이었다", "였다"), ("이지만", "지만"),
)
_FORMS = {form: pair for pair in PARTICLE_PAIRS for form in pair}
_PARTICLE = "|".join(sorted(_FORMS, key=len, reverse=True))
# A tag and, when one is attached and ends the word, its particle.
_TAG_WITH_PARTICLE = re.compile(rf"({TAG_PATTERN.pattern})(?:({_PARTICLE})(?![가-힣]))?")


def agreeing_particle(tag: str, particle: str) -> str:
    """The form of ``particle`` that fits ``tag`` ("은" for "#Person1#", "는" for "#Person2#");
    ``particle`` unchanged when it is not a known particle or the tag's sound is unknown."""
    pair = _FORMS.get(particle)
    if pair is None or tag not in TAG_HAS_FINAL:
        return particle
    return pair[0] if TAG_HAS_FINAL[tag] else pair[1]


def relabel(text: str, mapping: dict[str, str]) -> str:
    """``text`` with every tag in ``mapping`` replaced by its image, all at once, and the
    particle attached to each replaced tag made to agree with the new tag."""
    if not mapping:
        return text

    def replace(match: re.Match) -> str:
        tag, particle = match.group(1), match.group(2) or ""
        new = mapping.get(tag, tag)
        if new == tag:
            return match.group(0)
        return new + agreeing_particle(new, particle)

    return _TAG_WITH_PARTICLE.sub(replace, text)


def inverse(mapping: dict[str, str]) -> dict[str, str]:
    """The inverse of a one-to-one mapping, without the tags it leaves in place."""
    images = list(mapping.values())
    if len(set(images)) != len(images):
        raise ValueError(f"label mapping is not one-to-one: {mapping}")
    return {new: old for old, new in mapping.items() if new != old}


def speakers(dialogue: str) -> list[str]:
    """The speaker tags used anywhere in ``dialogue``, in order of first appearance."""
    return [tag for tag in dict.fromkeys(TAG_PATTERN.findall(dialogue)) if tag in SPEAKER_TAGS]
