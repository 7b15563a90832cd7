"""Rule-based Korean rewrites of one utterance, each a small edit that keeps its facts.

Five kinds of edit, found independently and applied in any non-overlapping combination:

- ``formal``: 해요체 -> 합니다체 at a sentence end (``싶어요.`` -> ``싶습니다.``,
  ``해요?`` -> ``합니까?``, ``이에요/예요`` -> ``입니다``, ``할게요`` -> ``하겠습니다``);
- ``polite``: 합니다체 -> 해요체 (``감사합니다`` -> ``감사해요``, ``됩니다`` -> ``돼요``,
  ``입니다`` -> ``이에요/예요`` by the final sound of the word before it);
- ``yes``: an utterance-opening ``네`` <-> ``예`` (only when punctuation follows, so the
  numeral ``네 명`` is never touched);
- ``filler``: an utterance-opening filler with its pause (``음,`` ``아,`` ``어,`` ``그,``
  ``저기,``) is dropped;
- ``synonym``: a small lexicon of interchangeable everyday words, matched as whole words
  (``그럼`` <-> ``그러면``, ``정말`` <-> ``진짜``, ``성함`` <-> ``이름`` ...).

Only endings whose stem is known to conjugate regularly are rewritten (a ``ㅆ``-final
stem, or a short whitelist such as 좋/없/괜찮/싶); irregular verbs (듣다, 돕다, 놀다 ...)
are left alone rather than guessed. No rule matches a digit, a ``#...#`` tag or a name,
so numbers, times, places, names and tags survive every combination of edits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from raysum.data import TAG_PATTERN, TURN_PATTERN
from raysum.tta._labels import TAG_HAS_FINAL

KINDS: tuple[str, ...] = ("formal", "polite", "yes", "filler", "synonym")

_FINAL_RIEUL, _FINAL_SSANG_SIOS = 8, 20
_BRIGHT_VOWELS = {0, 2, 8, 9}  # ㅏ ㅑ ㅗ ㅘ take -아요; the rest -어요
# Stems (last syllable) that conjugate regularly before -습니다/-어요.
_REGULAR_STEMS = frozenset("없좋많찮않같받먹찾맞늦싫앉읽작넓높낮닫잡씻찍싶")
# ㄹ-final syllables that are the stem itself (놀다, 만들다, 알다 ...) or an irregular stem
# (들을 = 듣다, 도울 = 돕다): "-ㄹ게요" after them cannot be undone by dropping the ㄹ.
_RIEUL_STEMS = frozenset("놀알열살팔걸들불밀빌울졸벌달날돌물널털실길굴끌얼")
_DIGIT_HAS_FINAL = dict(zip("0123456789", [True, True, False, True, False, False, True, True, True, False]))

_END = r"(?=\s*(?:[.?!~…,]|$))"  # a sentence end: punctuation, or the end of the utterance


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` of one utterance by ``new``."""

    start: int
    end: int
    new: str
    kind: str


def _parts(syllable: str) -> tuple[int, int, int] | None:
    code = ord(syllable) - 0xAC00
    if not 0 <= code < 11172:
        return None
    return code // 588, (code % 588) // 28, code % 28


def _compose(lead: int, vowel: int, final: int) -> str:
    return chr(0xAC00 + lead * 588 + vowel * 28 + final)


def has_final_sound(before: str) -> bool | None:
    """Whether the word that ends ``before`` ends in a consonant when read aloud (None: unknown)."""
    if before.endswith("#"):
        tags = TAG_PATTERN.findall(before[-20:])
        return TAG_HAS_FINAL.get(tags[-1]) if tags and before.endswith(tags[-1]) else None
    if not before:
        return None
    last = before[-1]
    if last in _DIGIT_HAS_FINAL:
        return _DIGIT_HAS_FINAL[last]
    parts = _parts(last)
    return None if parts is None else parts[2] != 0


def _is_question(text: str, end: int) -> bool:
    return text[end:].lstrip().startswith("?")


def _eoyo(stem: str) -> str | None:
    """-어요/-아요 for a syllable that ends a regular stem, or None when not known to be regular."""
    parts = _parts(stem)
    if parts is None:
        return None
    if parts[2] == _FINAL_SSANG_SIOS:
        return "어요"
    if stem in _REGULAR_STEMS:
        return "아요" if parts[1] in _BRIGHT_VOWELS else "어요"
    return None


# ---------------------------------------------------------------- 합니다체 -> 해요체

_SEUMNIDA = re.compile(r"([가-힣])습니[다까]" + _END)
_BNIDA = {"합": "해요", "됩": "돼요", "십": "세요", "립": "려요", "갑": "가요", "옵": "와요",
          "봅": "봐요", "줍": "줘요", "냅": "내요", "겁": "거예요"}
_BNIDA_FIXED = re.compile(r"(아닙|[" + "".join(_BNIDA) + r"])니[다까]" + _END)
_IMNIDA = re.compile(r"입니[다까]" + _END)


def _to_polite(text: str) -> list[Edit]:
    edits = []
    for m in _SEUMNIDA.finditer(text):
        if (ending := _eoyo(m.group(1))) is not None:
            edits.append(Edit(m.start(), m.end(), m.group(1) + ending, "polite"))
    for m in _BNIDA_FIXED.finditer(text):
        new = "아니에요" if m.group(1) == "아닙" else _BNIDA[m.group(1)]
        edits.append(Edit(m.start(), m.end(), new, "polite"))
    for m in _IMNIDA.finditer(text):
        final = has_final_sound(text[: m.start()])
        if final is not None:
            edits.append(Edit(m.start(), m.end(), "이에요" if final else "예요", "polite"))
    return edits


# ---------------------------------------------------------------- 해요체 -> 합니다체

_EOYO = re.compile(r"([가-힣])([어아])요" + _END)
_FIXED_POLITE = re.compile(r"(해|돼|려|아니에|거예)요" + _END)
_FIXED_FORMAL = {"해": "합", "돼": "됩", "려": "립", "아니에": "아닙", "거예": "겁"}
_IEYO = re.compile(r"(이에요|예요)" + _END)
_SEYO_QUESTION = re.compile(r"세요(?=\s*\?)")
_LGEYO = re.compile(r"([가-힣])게요" + _END)


def _formal_end(text: str, end: int) -> str:
    return "니까" if _is_question(text, end) else "니다"


def _to_formal(text: str) -> list[Edit]:
    edits = []
    for m in _EOYO.finditer(text):
        if _eoyo(m.group(1)) == m.group(2) + "요":
            edits.append(Edit(m.start(), m.end(), m.group(1) + "습" + _formal_end(text, m.end()), "formal"))
    for m in _FIXED_POLITE.finditer(text):
        edits.append(Edit(m.start(), m.end(), _FIXED_FORMAL[m.group(1)] + _formal_end(text, m.end()), "formal"))
    for m in _IEYO.finditer(text):
        before = text[: m.start()]
        if before.endswith(("거", "아니", "뭐")) or has_final_sound(before) is None:
            continue  # 거예요/아니에요 are fixed forms above; 뭐입니까 is not said
        edits.append(Edit(m.start(), m.end(), "입" + _formal_end(text, m.end()), "formal"))
    for m in _SEYO_QUESTION.finditer(text):
        edits.append(Edit(m.start(), m.end(), "십니까", "formal"))
    for m in _LGEYO.finditer(text):
        if _is_question(text, m.end()):
            continue
        edit = _lgeyo(text, m)
        if edit is not None:
            edits.append(edit)
    return edits


def _lgeyo(text: str, m: re.Match) -> Edit | None:
    """-(으)ㄹ게요 -> -겠습니다: 할게요 -> 하겠습니다, 있을게요 -> 있겠습니다, 뵐게요 -> 뵙겠습니다."""
    syllable = m.group(1)
    parts = _parts(syllable)
    if parts is None or parts[2] != _FINAL_RIEUL:
        return None
    if syllable == "을":
        stem = text[m.start() - 1] if m.start() > 0 else ""
        if _parts(stem) is None or stem in _RIEUL_STEMS:
            return None
        return Edit(m.start(), m.end(), "겠습니다", "formal")
    if syllable in _RIEUL_STEMS:
        return None
    stem = "뵙" if syllable == "뵐" else _compose(parts[0], parts[1], 0)
    return Edit(m.start(), m.end(), stem + "겠습니다", "formal")


# ---------------------------------------------------------------- utterance openings

_YES = re.compile(r"^(네|예)(?=[,.!]|\s*$)")
_FILLER = re.compile(r"^(?:음|아|어|그|저기|에|흠|엄)(?:,|\.{2,}|…)\s*(?=\S)")


def _openings(text: str) -> list[Edit]:
    edits = []
    if m := _YES.match(text):
        edits.append(Edit(0, m.end(), "예" if m.group(1) == "네" else "네", "yes"))
    if m := _FILLER.match(text):
        edits.append(Edit(0, m.end(), "", "filler"))
    return edits


# ---------------------------------------------------------------- lexicon

# Interchangeable both ways: (word, word, suffixes allowed directly after it).
SYNONYM_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("그럼", "그러면", ""),
    ("정말", "진짜", "요|로"),
    ("감사합니다", "고맙습니다", ""),
    ("감사해요", "고마워요", ""),
    ("잠깐만요", "잠시만요", ""),
    ("잠깐", "잠시", "만"),
    ("그런데", "근데", ""),
    ("빨리", "얼른", ""),
    ("요즘", "요새", "은|는|도"),
    ("꼭", "반드시", ""),
    ("성함", "이름", "이|을|은|도"),
    ("어때요", "어떠세요", ""),
    ("다시 한 번", "한 번 더", ""),
    ("보통", "대개", ""),
)
# One way only: the reverse would not always mean the same.
SYNONYMS_ONE_WAY: tuple[tuple[str, str, str], ...] = (
    ("괜찮아요", "좋아요", ""),
    ("가능할까요", "될까요", ""),
    ("조금", "좀", ""),   # 좀 is mostly a softener ("예약 좀 하려고"), not "a little"
)


def _lexicon() -> list[tuple[re.Pattern, str]]:
    entries = [(a, b, s) for a, b, s in SYNONYM_PAIRS] + [(b, a, s) for a, b, s in SYNONYM_PAIRS]
    entries += list(SYNONYMS_ONE_WAY)
    compiled = []
    for word, new, suffixes in entries:
        after = f"(?:{suffixes})?" if suffixes else ""
        compiled.append((re.compile(rf"(?<![가-힣]){re.escape(word)}(?={after}(?![가-힣]))"), new))
    return compiled


_LEXICON = _lexicon()


def _synonyms(text: str) -> list[Edit]:
    return [Edit(m.start(), m.end(), new, "synonym") for pattern, new in _LEXICON for m in pattern.finditer(text)]


# ---------------------------------------------------------------- finding and applying

_FINDERS: dict[str, Callable[[str], list[Edit]]] = {
    "formal": _to_formal, "polite": _to_polite, "synonym": _synonyms,
}


def utterance_edits(text: str, kinds: Collection[str] = KINDS) -> list[Edit]:
    """Every edit of the given kinds that applies to ``text`` (they may overlap)."""
    edits = [e for kind, find in _FINDERS.items() if kind in kinds for e in find(text)]
    edits += [e for e in _openings(text) if e.kind in kinds]
    return sorted(edits, key=lambda e: (e.start, e.end))


def pick(edits: list[Edit], rng: random.Random, chance: Callable[[Edit], float]) -> list[Edit]:
    """A random non-overlapping subset: each edit kept with probability ``chance(edit)``,
    visited in random order so that no kind always wins an overlap."""
    order = list(edits)
    rng.shuffle(order)
    kept: list[Edit] = []
    for edit in order:
        if rng.random() < chance(edit) and all(edit.end <= k.start or k.end <= edit.start for k in kept):
            kept.append(edit)
    return sorted(kept, key=lambda e: e.start)


def apply_edits(text: str, edits: list[Edit]) -> str:
    """``text`` with non-overlapping ``edits`` applied."""
    out, at = [], 0
    for edit in sorted(edits, key=lambda e: e.start):
        out += [text[at:edit.start], edit.new]
        at = edit.end
    out.append(text[at:])
    return "".join(out)


def split_line(line: str) -> tuple[str, str]:
    """(speaker prefix with its colon, utterance) of one dialogue line; no prefix: ("", line)."""
    m = TURN_PATTERN.match(line)
    return (line[: m.end()], line[m.end():]) if m else ("", line)
