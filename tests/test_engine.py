"""The generation engine: token for token what stock `generate` gives, whatever the batch,
budget or input order; log-probs from the generation equal the teacher-forced ones;
seeded sampling; the static KV cache; token-budget batches."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from raysum.generation import Decoding, GenerationEngine, _logprobs, prepare_model
from raysum.generation._budget import cuda_rows, fixed_rows, kv_bytes_per_token, plan_batches
from raysum.generation._sampling import gumbel
from raysum.generation._text import until_eos
from raysum.models import encode_sources
from test_generation import DIALOGUES, tiny

MAX_NEW = 8


def _stock(model, engine, source: list[int], decoding: Decoding) -> list[int]:
    """What `model.generate` gives for one unpadded source, up to and including its eos."""
    ids = torch.tensor([source])
    beams = decoding.num_beams
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=beams,
                         max_new_tokens=decoding.max_new_tokens,
                         no_repeat_ngram_size=decoding.no_repeat_ngram_size or None,
                         length_penalty=decoding.length_penalty if beams > 1 else None,
                         early_stopping=True if beams > 1 else None, temperature=None, top_p=None, top_k=None,
                         eos_token_id=engine.eos, pad_token_id=engine.tokenizer.pad_token_id)
    new = out[:, ids.shape[1]:] if engine.causal else out[:, 1:]
    return new[0, :int(until_eos(new, engine.eos).sum())].tolist()


def _tokens(rows) -> list[list[int]]:
    return [row.tokens for row in rows]


@pytest.fixture(scope="module", params=["tiny-bart", "tiny-llama"])
def model_and_sources(request, tmp_path_factory):
    settings, model, tokenizer = tiny(request.param, tmp_path_factory.mktemp(request.param))
    model.eval()
    return model, tokenizer, encode_sources(tokenizer, settings, DIALOGUES)


@pytest.mark.parametrize("beams", [1, 2])
def test_engine_output_is_stock_generate_whatever_the_batches(model_and_sources, beams):
    model, tokenizer, sources = model_and_sources
    decoding = Decoding(num_beams=beams, max_new_tokens=MAX_NEW, no_repeat_ngram_size=2, length_penalty=1.5)
    engine = GenerationEngine(model, tokenizer)
    expected = [_stock(model, engine, source, decoding) for source in sources]
    assert len({len(e) for e in expected}) > 1 or any(len(e) > 1 for e in expected)  # not all trivially empty
    assert _tokens(engine.generate(sources, decoding, max_rows=8)) == expected
    assert _tokens(engine.generate(sources, decoding, max_rows=1)) == expected
    small = GenerationEngine(model, tokenizer, token_budget=2 * (max(map(len, sources)) + MAX_NEW))
    assert _tokens(small.generate(sources, decoding, max_rows=8)) == expected
    assert _tokens(engine.generate(sources[::-1], decoding, max_rows=3)) == expected[::-1]


@pytest.mark.parametrize("beams", [1, 2])
def test_logprob_comes_from_the_generation_and_equals_the_teacher_forced_one(model_and_sources, beams, monkeypatch):
    model, tokenizer, sources = model_and_sources
    # n-gram blocking and a length penalty change what is chosen, not the raw log-probs
    decoding = Decoding(num_beams=beams, max_new_tokens=MAX_NEW, no_repeat_ngram_size=2, length_penalty=1.5)
    second_passes = []
    original = _logprobs.teacher_forced
    monkeypatch.setattr(_logprobs, "teacher_forced", lambda *a, **k: second_passes.append(1) or original(*a, **k))
    engine = GenerationEngine(model, tokenizer)
    rows = engine.generate(sources, decoding, max_rows=3)
    assert second_passes == []  # no second forward pass
    for source, row in zip(sources, rows):
        ids = torch.tensor([source])
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        start = [model.config.decoder_start_token_id] if not engine.causal else source
        sequence = torch.tensor([start + row.tokens])
        new = torch.tensor([row.tokens])
        with torch.no_grad():
            reference = original(model, batch, sequence, new, torch.ones_like(new), engine.causal)
        assert row.logprob == pytest.approx(float(reference[0]), abs=1e-4)
        assert row.logprob < 0


def test_a_token_outside_the_kept_candidates_is_scored_teacher_forced(model_and_sources, monkeypatch):
    model, tokenizer, sources = model_and_sources
    decoding = Decoding(num_beams=2, max_new_tokens=MAX_NEW)
    expected = GenerationEngine(model, tokenizer).generate(sources, decoding, max_rows=8)
    def nothing_found(self, new, parents=None):
        return torch.zeros(new.shape), torch.zeros(new.shape, dtype=torch.bool)

    monkeypatch.setattr(_logprobs.StepLogProbs, "lookup", nothing_found)
    fallback = GenerationEngine(model, tokenizer).generate(sources, decoding, max_rows=8)
    assert _tokens(fallback) == _tokens(expected)
    assert [r.logprob for r in fallback] == pytest.approx([r.logprob for r in expected], abs=1e-4)


def test_a_transformers_without_callable_custom_generate_scores_teacher_forced(model_and_sources, monkeypatch):
    from raysum.generation import engine as engine_module

    model, tokenizer, sources = model_and_sources
    decoding = Decoding(num_beams=2, max_new_tokens=MAX_NEW)
    expected = GenerationEngine(model, tokenizer).generate(sources, decoding, max_rows=8)
    monkeypatch.setattr(engine_module, "recording_supported", lambda: False)
    notes = []
    older = GenerationEngine(model, tokenizer, log=notes.append).generate(sources, decoding, max_rows=8)
    assert _tokens(older) == _tokens(expected)
    assert [r.logprob for r in older] == pytest.approx([r.logprob for r in expected], abs=1e-4)
    assert len(notes) == 1 and "teacher-forced" in notes[0]


def test_static_cache_generates_what_the_dynamic_one_does(model_and_sources):
    model, tokenizer, sources = model_and_sources
    decoding = Decoding(num_beams=1, max_new_tokens=MAX_NEW)
    dynamic = GenerationEngine(model, tokenizer, cache="dynamic").generate(sources, decoding, max_rows=3)
    static = GenerationEngine(model, tokenizer, cache="static").generate(sources, decoding, max_rows=3)
    assert _tokens(static) == _tokens(dynamic)
    assert [r.logprob for r in static] == pytest.approx([r.logprob for r in dynamic], abs=1e-4)


def test_a_failing_static_cache_falls_back_to_the_dynamic_one_with_a_note(model_and_sources, monkeypatch):
    model, tokenizer, sources = model_and_sources
    decoding = Decoding(num_beams=1, max_new_tokens=MAX_NEW)
    expected = GenerationEngine(model, tokenizer).generate(sources, decoding, max_rows=3)
    original = model.generate

    def generate(**kwargs):
        if kwargs.get("cache_implementation") == "static":
            raise RuntimeError("accessing tensor output of CUDAGraphs that has been overwritten")
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", generate)
    notes = []
    engine = GenerationEngine(model, tokenizer, cache="static", log=notes.append)
    assert _tokens(engine.generate(sources, decoding, max_rows=3)) == _tokens(expected)
    assert len(notes) == 1 and "static KV cache failed (RuntimeError" in notes[0] and engine.cache == "dynamic"


def test_sampling_is_seeded_per_dialogue_not_per_batch(model_and_sources, monkeypatch):
    model, tokenizer, sources = model_and_sources
    decoding = Decoding(num_beams=1, max_new_tokens=MAX_NEW, do_sample=True, temperature=1.5, top_p=0.95, seed=11)
    engine = GenerationEngine(model, tokenizer)
    drawn = _tokens(engine.generate(sources, decoding, max_rows=8))
    assert _tokens(engine.generate(sources, decoding, max_rows=1)) == drawn
    assert _tokens(engine.generate(sources[::-1], decoding, max_rows=2)) == drawn[::-1]
    other = _tokens(engine.generate(sources, dataclasses.replace(decoding, seed=12), max_rows=8))
    greedy = _tokens(engine.generate(sources, Decoding(num_beams=1, max_new_tokens=MAX_NEW), max_rows=8))
    assert other != drawn and drawn != greedy  # the seed and the sampling matter
    second_passes = []
    monkeypatch.setattr(_logprobs, "teacher_forced", lambda *a, **k: second_passes.append(1))
    rows = engine.generate(sources, decoding, max_rows=8)
    assert second_passes == [] and all(r.logprob < 0 for r in rows if r.tokens)


def test_gumbel_draws_follow_the_distribution_and_top_p_keeps_the_nucleus():
    from raysum.generation._sampling import SeededSampler

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    keys = torch.arange(20000)
    picks = (probs.log()[None, :] + gumbel(keys, 0, 4)).argmax(-1)
    frequencies = torch.bincount(picks, minlength=4).float() / len(keys)
    assert torch.allclose(frequencies, probs, atol=0.015)
    assert not torch.equal(picks, (probs.log()[None, :] + gumbel(keys, 1, 4)).argmax(-1))  # steps draw anew
    sampler = SeededSampler(temperature=1.0, top_p=0.7, keys=keys)
    out = sampler(None, probs.log().repeat(len(keys), 1))
    chosen = out.argmax(-1)
    assert set(chosen.tolist()) == {0, 1}  # 0.5 + 0.3 covers 0.7: the rest is cut
    assert torch.isinf(out).sum(-1).eq(3).all()  # one finite token per row: greedy search takes it


def test_merged_lora_generates_what_the_adapters_do(tmp_path):
    from raysum.config import load_preset
    from raysum.models.loading import apply_lora

    settings, model, tokenizer = tiny("tiny-llama", tmp_path)
    settings = dataclasses.replace(settings, lora=load_preset("qwen3-4b").lora)
    model = apply_lora(model, settings)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # adapters that change the output
    sources = encode_sources(tokenizer, settings, DIALOGUES)
    decoding = Decoding(num_beams=1, max_new_tokens=MAX_NEW)
    unmerged = GenerationEngine(model, tokenizer, cache="dynamic").generate(sources, decoding, max_rows=8)
    merged_model = prepare_model(model)
    assert not any("lora" in name for name, _ in merged_model.named_parameters())
    merged = GenerationEngine(merged_model, tokenizer).generate(sources, decoding, max_rows=8)
    assert _tokens(merged) == _tokens(unmerged)
    assert [r.logprob for r in merged] == pytest.approx([r.logprob for r in unmerged], abs=1e-4)


def test_on_cuda_greedy_takes_the_static_cache_and_beams_the_dynamic_one_with_a_note(model_and_sources, monkeypatch):
    """The decisions alone (no GPU here): the device is faked."""
    from raysum.generation import engine as engine_module

    model, tokenizer, _ = model_and_sources
    notes = []
    engine = GenerationEngine(model, tokenizer, log=notes.append)
    monkeypatch.setattr(GenerationEngine, "device", property(lambda self: torch.device("cuda")))
    assert engine._static(Decoding(num_beams=1)) is True and notes == []
    assert engine._static(Decoding(num_beams=4)) is False and engine._static(Decoding(num_beams=2)) is False
    assert len(notes) == 1 and "dynamic KV cache: beam search (num_beams 4)" in notes[0]  # said once
    monkeypatch.setattr(type(model), "_can_compile_fullgraph", False)
    assert engine._static(Decoding(num_beams=1)) is False and f"does not compile {type(model).__name__}" in notes[-1]
    assert GenerationEngine(model, tokenizer, cache="dynamic")._static(Decoding(num_beams=1)) is False
    # the budget: free memory through the KV cache's bytes per token, generation_batch_size the row cap
    monkeypatch.setattr(engine_module, "usable_gpu_memory", lambda device, share: 1 << 30)
    rows_for = engine._rows_for(Decoding(num_beams=2, max_new_tokens=MAX_NEW), max_rows=64, longest=100, gpu_share=1.0)
    assert rows_for(108) > 1000  # a tiny model: memory would allow far more rows than the cap ...
    assert plan_batches([100] * 200, MAX_NEW, 64, rows_for)[0] == list(range(64))  # ... which bounds them


def test_engine_summaries_of_no_dialogues(model_and_sources):
    from raysum.config import load_preset

    model, tokenizer, _ = model_and_sources
    settings = load_preset("tiny-bart")
    assert GenerationEngine(model, tokenizer).summaries(settings, []) == []
    assert GenerationEngine(model, tokenizer).generate([], Decoding(), max_rows=4) == []


# --------------------------------------------------------------------------- token budget


def test_batches_are_longest_first_within_the_budget_and_the_row_cap():
    lengths = [5, 20, 12, 20, 7, 3]
    # rows = budget // (longest + max new): 65 // 30 = 2, 65 // 22 = 2, 65 // 15 = 4 (2 left)
    assert plan_batches(lengths, max_new=10, max_rows=3, rows_for=fixed_rows(65)) == [[1, 3], [2, 4], [0, 5]]
    assert plan_batches(lengths, max_new=10, max_rows=4, rows_for=fixed_rows(10_000)) == [[1, 3, 2, 4], [0, 5]]
    assert [len(b) for b in plan_batches(lengths, 10, 8, fixed_rows(1))] == [1] * 6  # at least one row


def test_kv_bytes_and_cuda_rows_come_from_the_model_shapes():
    from transformers import BartConfig, LlamaConfig

    llama = LlamaConfig(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                        intermediate_size=8192, vocab_size=128256)
    assert kv_bytes_per_token(llama, 2) == 28 * 8 * 128 * 2 * 2  # layers x kv heads x head dim x (k, v) x bf16
    bart = BartConfig(d_model=768, encoder_layers=6, decoder_layers=6, decoder_attention_heads=16, vocab_size=30000)
    assert kv_bytes_per_token(bart, 2) == 6 * 16 * 48 * 2 * 2
    gib = 1 << 30
    rows = cuda_rows(llama, 2, beams=4, usable_bytes=100 * gib, max_rows=128)
    assert rows(600) > rows(1200) >= 1 and rows(600) < 100 * gib // (600 * kv_bytes_per_token(llama, 2) * 4)
    assert cuda_rows(llama, 2, beams=4, usable_bytes=1 * gib, max_rows=128)(600) == 1  # logits alone do not fit
