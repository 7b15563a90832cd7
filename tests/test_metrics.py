"""Korean ROUGE: kiwi morphemes vs rouge-score's tokenizer, exact agreement, averaging."""

from __future__ import annotations

import multiprocessing
import os
import random

import numpy as np
import pytest
from rouge_score import rouge_scorer

from raysum import metrics
from raysum.metrics import _tokenize

KEYS = ["rouge1", "rouge2", "rougeL"]


class SplitTokenizer:
    """rouge-score tokenizer object that splits on whitespace and nothing else."""

    def tokenize(self, text):
        return text.split()


def rouge_score_f1(pred, ref, tokenizer=None):
    scores = rouge_scorer.RougeScorer(KEYS, tokenizer=tokenizer).score(ref, pred)
    return tuple(scores[k].fmeasure for k in KEYS)


@pytest.fixture(scope="module", autouse=True)
def kiwi_ready():
    metrics.tokenize("")  # pay Kiwi's start-up once for the module


def test_identical_korean_is_perfect_with_kiwi_but_zero_with_rouge_score_default():
    text = "두 사람이 내일 만나기로 했다"
    # rouge-score keeps only [a-z0-9]: Hangul vanishes, nothing is left to match.
    assert rouge_scorer.RougeScorer(KEYS).score(text, text)["rouge1"].fmeasure == 0.0
    assert rouge_score_f1(text, text) == (0.0, 0.0, 0.0)
    assert metrics.score([text], [[text]]) == pytest.approx(
        {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rouge_sum": 3.0,
         "competition_score": 100.0, "n": 1}
    )


def test_shared_digit_fools_rouge_score_default_but_not_kiwi():
    pred, ref = "회의는 3시에 시작한다", "고객이 사과 3개를 샀다"
    # Only "3" survives rouge-score's default tokenizer on both sides: a perfect match.
    assert rouge_score_f1(pred, ref) == (1.0, 0.0, 1.0)
    kiwi = metrics.score_dialogues([pred], [[ref]]).iloc[0]
    assert kiwi["rouge1"] == pytest.approx(2 * (1 / 8) * (1 / 9) / (1 / 8 + 1 / 9))
    assert kiwi["rouge1"] < 0.2 and kiwi["rouge2"] == 0.0


def test_whitespace_mode_equals_rouge_score_on_split_tokens():
    preds = ["두 사람이 내일 만나기로 했다", "#Person1#은 환불을 요청한다 요청한다", ""]
    refs = [
        ["두 사람은 내일 만나기로 했다", "내일 두 사람이 만난다"],
        ["#Person1#은 환불을 요청한다"],
        ["아무 말도 없다"],
    ]
    got = metrics.score_dialogues(preds, refs, tokenizer="whitespace")
    for i, (pred, rs) in enumerate(zip(preds, refs)):
        want = np.mean([rouge_score_f1(pred, r, SplitTokenizer()) for r in rs], axis=0)
        np.testing.assert_allclose(got.loc[i, KEYS].to_numpy(), want, atol=1e-12)
    assert metrics.tokenize("  a  b\tc\n", "whitespace") == ["a", "b", "c"]


def test_korean_tokenizer_plugs_into_rouge_scorer():
    pred = "#Person1#은 #Person2#에게 내일 전화하기로 했다."
    ref = "#Person2#는 #Person1#에게 내일 전화를 받는다."
    scorer = rouge_scorer.RougeScorer(KEYS, tokenizer=metrics.KoreanTokenizer())
    scores = scorer.score(ref, pred)
    ours = metrics.score_dialogues([pred], [[ref]]).iloc[0]
    for key in KEYS:
        assert ours[key] == pytest.approx(scores[key].fmeasure, abs=1e-12)
    assert 0.3 < ours["rouge1"] < 1.0


def test_tags_stay_whole_under_kiwi():
    tokens = metrics.tokenize("#Person1#: 제 번호는 #PhoneNumber#입니다. #Person2#는 #Address#에 살아요.")
    for tag in ["#Person1#", "#PhoneNumber#", "#Person2#", "#Address#"]:
        assert tag in tokens
    # The particle after a tag is still analysed, not glued to it.
    assert tokens[tokens.index("#PhoneNumber#") + 1] == "이"
    assert "#CarNumber#" in metrics.tokenize("차량 번호는 #CarNumber#이다")
    assert metrics.tokenize("#Ab1##X#") == ["#Ab1#", "#X#"]


@pytest.mark.parametrize(
    ("text", "morphemes"),
    [
        ("두 사람이 내일 만나기로 했다", ["두", "사람", "이", "내일", "만나", "기", "로", "하", "었", "다"]),
        (
            "#Person1#은 #Person2#에게 #PhoneNumber#로 전화해 달라고 부탁한다.",
            ["#Person1#", "은", "#Person2#", "에게", "#PhoneNumber#", "로", "전화", "하", "어",
             "달", "라고", "부탁", "하", "\u11ab다", "."],
        ),
        (
            "고객은 환불을 요청했지만 직원은 영수증이 필요하다고 설명합니다.",
            ["고객", "은", "환불", "을", "요청", "하", "었", "지만", "직원", "은", "영수증", "이",
             "필요", "하", "다고", "설명", "하", "\u11b8니다", "."],
        ),
    ],
)
def test_kiwi_morphemes_pinned(text, morphemes):
    assert metrics.tokenize(text) == morphemes


def test_tokenize_many_batches_and_caches(monkeypatch):
    calls = []
    analyze = _tokenize._analyze

    def counting(texts):
        calls.append(list(texts))
        return analyze(texts)

    monkeypatch.setattr(_tokenize, "_analyze", counting)
    metrics.clear_cache()
    a, b = "영화를 보러 갔다", "저녁을 먹었다"
    first = metrics.tokenize_many([a, b, a])
    assert first[0] == first[2] == metrics.tokenize(a)
    first[0].append("changed")  # callers get copies, the cache is untouched
    assert metrics.tokenize(a) == first[2]
    metrics.score([a, b], [[b], [a, b]])
    assert calls == [[a, b]]


def test_rouge_f1_equals_rouge_score_on_random_tokens():
    rng = random.Random(1234)
    scorer = rouge_scorer.RougeScorer(KEYS, tokenizer=SplitTokenizer())
    worst = 0.0
    for _ in range(3000):
        vocab = rng.choice(["ab", "abcd", "abcdefghijklmnopqrstuvwxyz"])
        pred = [rng.choice(vocab) for _ in range(rng.choice([0, 1, 2, rng.randint(0, 80)]))]
        ref = [rng.choice(vocab) for _ in range(rng.choice([0, 1, 2, rng.randint(0, 80)]))]
        if rng.random() < 0.1:
            ref = list(pred)
        want = scorer.score(" ".join(ref), " ".join(pred))
        got = metrics.rouge_f1(pred, ref)
        worst = max(worst, *(abs(g - want[k].fmeasure) for g, k in zip(got, KEYS)))
    assert worst <= 1e-9
    assert metrics.rouge_f1([], []) == (0.0, 0.0, 0.0)
    assert metrics.rouge_f1(["a"], ["a"]) == (1.0, 0.0, 1.0)
    # LCS of a b c b d a b / b d c a b a is 4 (b c b a, b d a b, ...)
    assert metrics.rouge_f1(list("abcbdab"), list("bdcaba"))[2] == pytest.approx(2 * 4 / (7 + 6))


def test_pairwise_matches_rouge_f1():
    lists = [["a", "b", "c"], ["a", "c"], [], ["c", "b", "a", "a"]]
    table = metrics.pairwise_rouge_f1(lists)
    assert table.shape == (4, 4, 3)
    for i, a in enumerate(lists):
        for j, b in enumerate(lists):
            assert tuple(table[i, j]) == metrics.rouge_f1(a, b)


def test_multi_reference_mean_and_dataset_mean():
    preds = ["a b c d", "x y"]
    refs = [["a b c d", "e f g h"], ["x y"]]
    per = metrics.score_dialogues(preds, refs, tokenizer="whitespace")
    assert list(per.columns) == KEYS
    np.testing.assert_allclose(per.to_numpy(), [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    total = metrics.score(preds, refs, tokenizer="whitespace")
    assert total["rouge1"] == pytest.approx(0.75)
    assert total["n"] == 2 and isinstance(total["n"], int)


def test_rouge_sum_and_competition_score():
    preds = ["a b c", "a b"]
    refs = [["a b d"], ["a c"]]
    total = metrics.score(preds, refs, tokenizer="whitespace")
    r1 = (2 / 3 + 1 / 2) / 2
    r2 = (1 / 2 + 0) / 2
    assert (total["rouge1"], total["rouge2"], total["rougeL"]) == pytest.approx((r1, r2, r1))
    assert total["rouge_sum"] == pytest.approx(r1 + r2 + r1)
    assert total["competition_score"] == pytest.approx((r1 + r2 + r1) / 3 * 100)
    assert all(isinstance(total[k], float) for k in [*KEYS, "rouge_sum", "competition_score"])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="2 predictions but 1 reference"):
        metrics.score(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="dialogue 1 has no reference"):
        metrics.score(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="wrap it in a list"):
        metrics.score(["a"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        metrics.score([], [])
    for call in (
        lambda: metrics.tokenize("a", "mecab"),
        lambda: metrics.score(["a"], [["a"]], tokenizer="mecab"),
        lambda: metrics.KoreanTokenizer("mecab"),
    ):
        with pytest.raises(ValueError, match="kiwi, whitespace"):
            call()
    assert metrics.TOKENIZERS == ("kiwi", "whitespace")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_builds_its_own_kiwi():
    # The parent's Kiwi has worker threads the child lacks; reusing or freeing it there hangs.
    metrics.tokenize_many(["부모 프로세스가 먼저 분석한다", "둘째 문장"])
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(metrics.tokenize_many, (["#Person1#는 자식이다", "셋"],))
        assert child.get(timeout=40) == [["#Person1#", "는", "자식", "이", "다"], ["셋"]]
