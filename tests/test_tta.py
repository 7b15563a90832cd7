"""raysum.tta: variants differ from their input, keep its facts, and their labels map back."""

from __future__ import annotations

import random
import re
import runpy
import types
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from raysum.data import SPEAKER_TAGS, TAG_PATTERN
from raysum.errors import ConfigError
from raysum.tta import TTA_STRATEGIES, make_variants, map_back, register_tta, relabel, variant_names
from raysum.tta._korean import apply_edits, utterance_edits
from raysum.tta.paraphrase import rewrite

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "raysum" / "resources" / "data"
STRATEGIES = ["reorder", "paraphrase"]


# The sample's people are a surname and a given name from its generator's lists.
_GEN = runpy.run_path(str(ROOT / "scripts" / "make_sample_data.py"))
NAME = re.compile(f"(?:{'|'.join(_GEN['SURNAMES'])})(?:{'|'.join(_GEN['GIVEN_NAMES'])})")
TIME_WORDS = re.compile(r"오전|오후|아침|저녁|낮|내일|모레|어제|[월화수목금토일]요일|이번 주|다음 주|지난주")
DIGITS = re.compile(r"\d+")


@pytest.fixture(scope="module")
def dev():
    return pd.read_csv(DATA / "dev.csv")


def facts(text: str) -> dict[str, Counter]:
    text = TAG_PATTERN.sub("#", text)  # a speaker tag's number is a label, not a fact
    return {"digits": Counter(DIGITS.findall(text)), "names": Counter(NAME.findall(text)),
            "times": Counter(TIME_WORDS.findall(text))}


def tags_as_original(variant: str, label_map: dict[str, str]) -> Counter:
    return Counter(label_map.get(tag, tag) for tag in TAG_PATTERN.findall(variant))


# ---- the bundled dev set: every strategy changes the input, keeps its facts ------------------

@pytest.mark.parametrize("strategy", STRATEGIES)
def test_variants_differ_on_dev(dev, strategy):
    changed = 0
    for fname, dialogue in zip(dev["fname"], dev["dialogue"]):
        variants = make_variants(dialogue, strategy, 2, seed=42, key=fname)
        changed += all(text != dialogue for text, _ in variants)
    assert changed / len(dev) >= 0.9


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_variants_keep_facts_on_dev(dev, strategy):
    for fname, dialogue in zip(dev["fname"], dev["dialogue"]):
        for text, label_map in make_variants(dialogue, strategy, 3, seed=7, key=fname):
            assert facts(text) == facts(dialogue), (fname, text)
            assert tags_as_original(text, label_map) == Counter(TAG_PATTERN.findall(dialogue)), fname
            assert len(text.split("\n")) == len(dialogue.split("\n"))
            speakers = [line.split(":")[0] for line in text.split("\n")]
            original = [line.split(":")[0] for line in dialogue.split("\n")]
            assert [label_map.get(s, s) for s in speakers] == original  # same turns, same order


def test_variants_of_one_dialogue_differ_from_each_other(dev):
    for fname, dialogue in zip(dev["fname"][:60], dev["dialogue"][:60]):
        for strategy in STRATEGIES:
            texts = [text for text, _ in make_variants(dialogue, strategy, 3, seed=1, key=fname)]
            assert len(set(texts)) == 3, (strategy, fname)


def test_deterministic_per_seed_and_key(dev):
    dialogue, fname = dev["dialogue"][0], dev["fname"][0]
    for strategy in STRATEGIES:
        first = make_variants(dialogue, strategy, 3, seed=5, key=fname)
        assert make_variants(dialogue, strategy, 3, seed=5, key=fname) == first
        assert make_variants(dialogue, strategy, 1, seed=5, key=fname) == first[:1]  # not a function of n
    outputs = {make_variants(d, "paraphrase", 1, seed=5, key="same")[0][0] != make_variants(d, "paraphrase", 1, seed=6, key="same")[0][0]
               for d in dev["dialogue"][:30]}
    assert True in outputs  # the seed matters


def test_variant_names():
    assert variant_names("reorder", 2) == ["reorder_1", "reorder_2"]
    assert make_variants("#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요.", "reorder", 0, 1, "k") == []


# ---- reorder: label permutation and its inverse ----------------------------------------------

def test_reorder_round_trips_the_dialogue(dev):
    for fname, dialogue in zip(dev["fname"], dev["dialogue"]):
        for text, label_map in make_variants(dialogue, "reorder", 2, seed=3, key=fname):
            assert label_map and text != dialogue
            assert map_back(text, label_map) == dialogue


def test_reorder_label_map_restores_a_summary(dev):
    """A summary the model writes about the variant's speakers maps back to the original's."""
    for fname, dialogue, summary in zip(dev["fname"], dev["dialogue"], dev["summary"]):
        _, label_map = make_variants(dialogue, "reorder", 1, seed=3, key=fname)[0]
        forward = {original: variant for variant, original in label_map.items()}
        about_variant = relabel(summary, forward)
        if any(tag in summary for tag in forward):
            assert about_variant != summary
        assert map_back(about_variant, label_map) == summary


def test_map_back_is_simultaneous_and_fixes_particles():
    swap = {"#Person1#": "#Person2#", "#Person2#": "#Person1#"}
    summary = "#Person1#은 #Person2#에게 토요일 오후 7시에 4명 자리를 예약한다. #Person2#는 #Person1#과 통화한다."
    swapped = map_back(summary, swap)
    assert swapped == "#Person2#는 #Person1#에게 토요일 오후 7시에 4명 자리를 예약한다. #Person1#은 #Person2#와 통화한다."
    assert map_back(swapped, swap) == summary
    # tags outside the map, and text that only looks like a label, are left alone
    assert map_back("#Person3#는 Person1을 #PhoneNumber#로 부른다.", swap) == "#Person3#는 Person1을 #PhoneNumber#로 부른다."
    assert map_back("#Person1#이번", swap) == "#Person2#이번"  # not a particle: only the tag changes
    assert map_back(summary, {}) == summary


def test_reorder_three_speakers_and_extra_labels():
    dialogue = "#Person1#: 어디 가요?\n#Person2#: 영화 보러요.\n#Person3#: 저도 갈래요.\n#Person1#: 좋아요."
    variants = make_variants(dialogue, "reorder", 5, seed=0, key="x")
    assert len({text for text, _ in variants}) == 5  # 3! - 1 permutations
    for text, label_map in variants:
        assert map_back(text, label_map) == dialogue
    two = "#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요."
    texts = [text for text, _ in make_variants(two, "reorder", 2, seed=0, key="y")]
    assert texts[0] == "#Person2#: 안녕하세요.\n#Person1#: 네, 안녕하세요."
    assert texts[1] != texts[0] and TAG_PATTERN.findall(texts[1])[0] in SPEAKER_TAGS[2:]


# ---- paraphrase rules -------------------------------------------------------------------------

def edited(text: str, kind: str) -> str:
    return apply_edits(text, [e for e in utterance_edits(text, {kind})])


@pytest.mark.parametrize("kind, before, after", [
    ("formal", "예약하고 싶어요.", "예약하고 싶습니다."),
    ("formal", "뭐 해요?", "뭐 합니까?"),
    ("formal", "김민수예요. 그때 뵐게요.", "김민수입니다. 그때 뵙겠습니다."),
    ("formal", "박지훈이에요. 제가 할게요.", "박지훈입니다. 제가 하겠습니다."),
    ("formal", "#Email#이에요.", "#Email#입니다."),
    ("formal", "그날 집에 있을게요.", "그날 집에 있겠습니다."),
    ("formal", "제가 만들게요. 잘 들을게요.", "제가 만들게요. 잘 들을게요."),  # ㄹ-stem and ㄷ-irregular left alone
    ("polite", "감사합니다! 등록해 드렸습니다.", "감사해요! 등록해 드렸어요."),
    ("polite", "22만 원입니다. 센터입니다.", "22만 원이에요. 센터예요."),
    ("polite", "#PhoneNumber#입니다.", "#PhoneNumber#예요."),
    ("polite", "반갑습니다. 괜찮습니다.", "반갑습니다. 괜찮아요."),  # 반갑다 is irregular: kept
    ("polite", "언제 오십니까?", "언제 오세요?"),
    ("yes", "네, 맞아요.", "예, 맞아요."),
    ("yes", "네 명이요.", "네 명이요."),  # the numeral is not 'yes'
    ("filler", "음, 내일 오후 3시요.", "내일 오후 3시요."),
    ("filler", "아니요, 괜찮아요.", "아니요, 괜찮아요."),
    ("filler", "그 시간대는 좋아요.", "그 시간대는 좋아요."),  # a determiner, not a filler
    ("synonym", "그럼 정말요? 그럼요.", "그러면 진짜요? 그럼요."),
    ("synonym", "바른제약 성함이 뭐예요?", "바른제약 이름이 뭐예요?"),
])
def test_rules(kind, before, after):
    assert edited(before, kind) == after


def test_paraphrase_changes_every_dev_dialogue_and_keeps_tags(dev):
    rng = random.Random(0)
    for dialogue in dev["dialogue"]:
        text = rewrite(dialogue, rng)
        assert text != dialogue
        assert TAG_PATTERN.findall(text) == TAG_PATTERN.findall(dialogue)
    assert rewrite("#Person1#: ㅋㅋ\n#Person2#: ㅎㅎ", rng) == "#Person1#: ㅋㅋ\n#Person2#: ㅎㅎ"  # nothing applies


# ---- the registry -----------------------------------------------------------------------------

def test_registry():
    assert set(STRATEGIES) <= set(TTA_STRATEGIES)
    with pytest.raises(ConfigError, match="unknown TTA strategy 'nope'.*paraphrase"):
        make_variants("#Person1#: 안녕", "nope", 1, 0, "k")
    with pytest.raises(TypeError):
        register_tta("broken", types.SimpleNamespace())
    shout = types.SimpleNamespace(variant=lambda dialogue, rng, taken=(): (dialogue + "!", {}))
    register_tta("shout", shout)
    try:
        assert make_variants("#Person1#: 안녕", "shout", 2, 0, "k") == [("#Person1#: 안녕!", {})] * 2
    finally:
        TTA_STRATEGIES.pop("shout")
