"""Generation: batched and sorted by length, input order kept, tags kept in the text,
log-probs equal to generate's own scores."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from raysum.config import load_preset
from raysum.generation import generate_summaries
from raysum.models import encode_sources, load_model_and_tokenizer

DIALOGUES = [
    "#Person1#: 안녕하세요.\n#Person2#: 네.",
    "#Person1#: 주소가 어떻게 되세요?\n#Person2#: #Address# 에 살아요! 전화는 #PhoneNumber# 로 주세요.\n#Person1#: 알겠어요.",
    "#Person1#: 토요일 오후 2시에 고깃집에서 만나요.\n#Person2#: 좋아요, 선물은 향수로 해요.",
    "#Person1#: 오늘 날씨가 좋네요.",
    "#Person1#: 다음 주 화요일 캠핑 말인데요, 날씨 확인했어요?\n#Person2#: 아직요.\n#Person1#: 눈이 많이 온대요.",
]
SUMMARIES = ["#Person1#과 #Person2#는 인사한다.", "#Person2#는 #Address# 에 살고 번호는 #PhoneNumber# 이다.",
             "두 사람은 토요일에 만난다.", "#Person1#은 날씨 이야기를 한다.", "캠핑 날 눈이 온다."]
TEXTS = (DIALOGUES + SUMMARIES) * 6


def tiny(preset: str, tmp_path, **overrides):
    # Forced-output tests need plain decoding: no n-gram blocking from the preset.
    settings = dataclasses.replace(load_preset(preset), **{"no_repeat_ngram_size": 0, **overrides})
    model, tokenizer = load_model_and_tokenizer(settings, TEXTS, cache_dir=tmp_path, device="cpu", seed=0)
    return settings, model, tokenizer


@pytest.mark.parametrize("preset", ["tiny-bart", "tiny-llama"])
def test_batched_generation_keeps_input_order_and_matches_one_by_one(preset, tmp_path):
    settings, model, tokenizer = tiny(preset, tmp_path, num_beams=2, max_length=6, generation_batch_size=2)
    calls = []
    original = model.generate
    model.generate = lambda **kw: calls.append(kw["input_ids"].shape) or original(**kw)
    batched = generate_summaries(model, tokenizer, settings, DIALOGUES)
    assert len(calls) == math.ceil(len(DIALOGUES) / 2)  # one model call per batch, not per dialogue
    lengths = [shape[1] for shape in calls]
    assert lengths == sorted(lengths, reverse=True)  # longest batch first
    single = dataclasses.replace(settings, generation_batch_size=1)
    one_by_one = [generate_summaries(model, tokenizer, single, [d])[0] for d in DIALOGUES]
    for got, expected in zip(batched, one_by_one):
        assert got["text"] == expected["text"]
        assert got["n_tokens"] == expected["n_tokens"]
        assert got["logprob"] == pytest.approx(expected["logprob"], abs=1e-4)
    assert all(1 <= r["n_tokens"] <= 6 and r["logprob"] < 0 for r in batched)
    if settings.kind == "causal":
        assert tokenizer.padding_side == "left"


@pytest.mark.parametrize("preset", ["tiny-bart", "tiny-llama"])
def test_logprob_is_the_mean_of_generates_own_token_scores(preset, tmp_path):
    settings, model, tokenizer = tiny(preset, tmp_path, num_beams=1, max_length=5, generation_batch_size=8)
    # our scores are the raw model's; a forced final eos would be 0 in generate's scores
    model.generation_config.forced_eos_token_id = None
    model.eval()
    ours = generate_summaries(model, tokenizer, settings, DIALOGUES)
    for dialogue, result in zip(DIALOGUES, ours):
        ids = torch.tensor([encode_sources(tokenizer, settings, [dialogue])[0]])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                                 max_new_tokens=5, output_scores=True, return_dict_in_generate=True,
                                 pad_token_id=tokenizer.pad_token_id)
        scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)[0]
        n = result["n_tokens"]
        assert scores[:n].mean().item() == pytest.approx(result["logprob"], abs=1e-4)


def _force(model, tokenizer, tokens: list[str]) -> None:
    """Bias generation so that it produces `tokens` then eos (whatever the weights)."""
    ids = tokenizer.convert_tokens_to_ids(tokens) + [tokenizer.eos_token_id]
    bias = {(ids[0],): 50.0}
    for previous, following in zip(ids, ids[1:]):
        bias[(previous, following)] = 200.0
    model.generation_config.sequence_bias = bias


@pytest.mark.parametrize("preset", ["tiny-bart", "tiny-llama"])
def test_speaker_and_mask_tags_stay_in_the_text(preset, tmp_path):
    settings, model, tokenizer = tiny(preset, tmp_path, num_beams=2, max_length=8)
    _force(model, tokenizer, ["#Person1#", ":", "#PhoneNumber#"])
    results = generate_summaries(model, tokenizer, settings, DIALOGUES[:2])
    for result in results:
        assert result["text"] == "#Person1#:#PhoneNumber#"
        assert result["n_tokens"] == 4  # three tokens and eos
    # A checkpoint that registered the tags as special tokens (the competition baseline
    # does) still keeps them: only bos/eos/pad and chat markers are stripped.
    tokenizer.add_special_tokens({"additional_special_tokens": ["#Person1#", "#PhoneNumber#"]},
                                 replace_extra_special_tokens=False)
    assert "#Person1#" not in tokenizer.decode(tokenizer.convert_tokens_to_ids(["#Person1#"]), skip_special_tokens=True)
    assert generate_summaries(model, tokenizer, settings, DIALOGUES[:1])[0]["text"] == "#Person1#:#PhoneNumber#"


def test_causal_generation_decodes_only_new_tokens(tmp_path):
    settings, model, tokenizer = tiny("tiny-llama", tmp_path, num_beams=1, max_length=4)
    _force(model, tokenizer, ["#Person2#"])
    result = generate_summaries(model, tokenizer, settings, [DIALOGUES[2]])[0]
    assert result["text"] == "#Person2#"  # no prompt, no chat markers, no eos


def test_empty_input_gives_no_summaries(tmp_path):
    settings, model, tokenizer = tiny("tiny-bart", tmp_path)
    assert generate_summaries(model, tokenizer, settings, []) == []
