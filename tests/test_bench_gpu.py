"""scripts/bench_gpu.py (and its bench_gpu_* helpers): the machine-independent counts of training
and of generation, and the whole script on tiny shapes (CPU)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts scripts/ on the path for its helpers
    return module


@pytest.fixture(scope="module")
def counting(bench):
    return importlib.import_module("bench_gpu_counts")


@pytest.fixture(scope="module")
def generation(bench):
    return importlib.import_module("bench_gpu_generate")


@pytest.fixture(scope="module")
def train_and_tokenizer(bench):
    train = bench.bundled_train()
    return train, bench.sample_tokenizer(train)


def packed(lengths: list[int], prompt: int = 2) -> dict:
    from transformers import DataCollatorWithFlattening

    collator = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100, return_flash_attn_kwargs=True)
    return collator([{"input_ids": list(range(1, n + 1)), "labels": [-100] * prompt + list(range(prompt + 1, n + 1))}
                     for n in lengths])


def test_packed_row_counts_sum_of_squares_and_label_rows(counting):
    counts = counting.batch_counts(packed([3, 5]), "causal", loss_head_only=True)
    assert counts["samples"] == 2 and counts["real_tokens"] == counts["computed_tokens"] == 8
    assert counts["attention_elements"] == 3**2 + 5**2
    assert counts["attention_dense_mask"] == (3 + 5) ** 2
    # labels after the 2 prompt tokens: 1 + 3 predicted tokens; the first label of each example is not
    # predicted across the boundary (the collator's separator)
    assert counts["loss_rows"] == counts["logits_rows"] == 1 + 3


def test_padded_rows_count_the_padding(counting):
    batch = {"input_ids": torch.zeros(2, 5, dtype=torch.long),
             "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
             "labels": torch.tensor([[-100, -100, 3, -100, -100], [-100, -100, 3, 4, 5]])}
    counts = counting.batch_counts(batch, "causal", loss_head_only=False)
    assert counts["real_tokens"] == 8 and counts["computed_tokens"] == 10
    assert counts["attention_elements"] == counts["attention_dense_mask"] == 2 * 5**2
    assert counts["logits_rows"] == 10 and counts["loss_rows"] == 1 + 3
    assert counting.batch_counts(batch, "causal", loss_head_only=True)["logits_rows"] == 4


def test_seq2seq_counts_encoder_decoder_and_cross_attention(counting):
    batch = {"input_ids": torch.zeros(2, 6, dtype=torch.long),
             "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2]),
             "labels": torch.tensor([[5, 6, 7], [5, 6, -100]])}
    counts = counting.batch_counts(batch, "seq2seq", loss_head_only=False)
    assert counts["real_tokens"] == 6 + 4 + 3 + 2 and counts["computed_tokens"] == 2 * (6 + 3)
    assert counts["attention_elements"] == 2 * (6**2 + 3**2 + 3 * 6)
    assert counts["logits_rows"] == 6 and counts["loss_rows"] == 5


def test_epoch_counts_of_both_samplers_use_every_example_once(counting):
    from raysum.config.presets import load_preset

    settings = load_preset("llama-3.2-korean-3b")
    lengths = [150 + (37 * i) % 363 for i in range(100)]
    examples = [{"input_ids": [1] * n, "labels": [-100] * (n - 50) + [1] * 50} for n in lengths]
    plain = counting.plain_epoch_batches(examples, 8)
    ours, plan = counting.raysum_planned_batches(settings, examples, budget=4096, packed=True)
    for batches in (plain, ours):
        assert sorted(i for b in batches for i in b) == list(range(100))
    from raysum.training.collators import make_collator

    totals = counting.epoch_counts(examples, ours, make_collator(settings, None, None), "causal", True)["totals"]
    assert totals["samples"] == 100 and totals["real_tokens"] == sum(lengths)
    assert totals["attention_elements"] == sum(n * n for n in lengths)
    assert totals["logits_rows"] == totals["loss_rows"] == 100 * 50
    assert totals["micro_batches"] == plan.micro_batches == len(ours)


def test_tiny_run_writes_every_row_and_raysum_computes_less(tmp_path):
    """The whole script on tiny shapes, as on a GPU but on CPU (about 20 s of CPU)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", BENCH_WORK=str(tmp_path / "work"))
    result = subprocess.run([sys.executable, str(SCRIPT), "--shapes", "tiny", "--out", str(tmp_path / "out")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "bench_gpu.json").read_text())
    rows = {r["shape"]: r for r in report["results"]}
    assert set(rows) == {"kobart-shape", "llama-3b-shape", "qwen3-4b-shape"}
    for shape, row in rows.items():
        for side in ("plain_train", "raysum"):
            assert row[side]["samples_per_s"] > 0 and row[side]["real_tokens_per_s"] > 0, (shape, side)
        plain, ours = row["counts"]["plain"], row["counts"]["raysum"]
        assert plain["samples"] == ours["samples"] == row["train_rows"]  # one epoch of the same rows each side
        assert plain["real_tokens"] == ours["real_tokens"] and plain["loss_rows"] == ours["loss_rows"]
        check_generation_rows(shape, row["kind"], row["generate"])
    for shape in ("llama-3b-shape", "qwen3-4b-shape"):
        plain, ours = rows[shape]["counts"]["plain"], rows[shape]["counts"]["raysum"]
        assert rows[shape]["raysum"]["packed"] and rows[shape]["raysum"]["attention"] == "raysum_varlen"
        assert ours["padding_efficiency"] == 1.0 > plain["padding_efficiency"]
        assert ours["attention_elements"] < plain["attention_elements"] < ours["attention_dense_mask"]
        assert ours["logits_rows"] == ours["loss_rows"] < plain["logits_rows"]
        assert rows[shape]["generate"]["beam4"]["plain"]["estimated"]  # 8 of the 24, scaled
    assert not rows["kobart-shape"]["generate"]["beam4"]["plain"]["estimated"]
    for text in ("raysum/plain", "logits rows/sample", "beam 4 b2 input order: s (est.)", "tokens equal to plain",
                 "positions computed/dialogue", "extra scoring passes"):
        assert text in result.stdout, text


def check_generation_rows(shape: str, kind: str, generate: dict) -> None:
    """Every generation row of one shape: counted from the run, raysum without a second
    scoring pass, greedy (and beam 4) tokens equal to plain `generate`'s."""
    new_tokens = generate["new_tokens"]
    assert 150 <= generate["prompt_tokens"]["min"] and generate["prompt_tokens"]["max"] <= 450
    for key, beams in (("beam4", 4), ("greedy", 1), ("beam4_seed", 4)):
        sides = ("plain",) if key == "beam4_seed" else ("plain", "raysum")
        for side in sides:
            row = generate[key][side]
            counts = row["counts"]
            assert row["timed_s"] > 0 and row["all_s"] >= row["timed_s"], (shape, key, side)
            # one forward per decoding step of each batch: the logits processor's count is the forward hook's
            assert 0 < counts["forward_passes"] == counts["hooked_forwards"] <= counts["batches"] * new_tokens
            assert counts["positions_computed"] >= beams * counts["tokens_kept"] > 0
            # causal prompts are prefilled once per beam, padded; the seq2seq encoder runs once per row
            assert counts["prompt_positions"] >= counts["prompt_tokens"] * (beams if kind == "causal" else 1) > 0
            assert counts["failed_calls"] == 0 and counts["extra_scoring_passes"] == 0
            assert row["mean_new_tokens"] > 1, (shape, key, side)  # not a row that stopped at once
    for key in ("beam4", "greedy"):
        plain, ours = generate[key]["plain"], generate[key]["raysum"]
        assert plain["counts"]["dialogues"] == ours["counts"]["dialogues"] == generate["timed_dialogues"]
        assert plain["counts"]["tokens_kept"] == ours["counts"]["tokens_kept"]
        equal = generate[key]["equal_tokens"]
        assert equal["all_equal"] and equal["distinct_outputs"] > 1, (shape, key, equal)  # not one summary for all
    assert generate["beam4_seed"]["plain"]["estimated"]  # its first batches only


def test_only_picks_shapes_and_parts(bench):
    assert bench.selection([]) == (list(bench.SHAPES), ["train", "generate"])
    assert bench.selection(["generate", "qwen3-4b-shape"]) == (["qwen3-4b-shape"], ["generate"])
    assert bench.selection(["llama-3b-shape"], no_generate=True) == (["llama-3b-shape"], ["train"])
    assert bench.selection(["generate"], no_generate=True)[1] == []


@pytest.fixture(scope="module")
def tiny_llama(bench, train_and_tokenizer):
    train, tokenizer = train_and_tokenizer
    spec = bench.SHAPES["llama-3b-shape"]
    settings = bench.unit_settings("tiny", spec, "(not saved)", cuda=False, tiny=True)
    model, _ = bench.build_checkpoint(spec, bench.model_config(spec, bench.TINY_CONFIGS["llama-3b-shape"], tokenizer),
                                      tokenizer, None, cuda=False)
    sources = bench.generation_sources(tokenizer, settings, 5, train, low=30, high=60)
    return model.eval(), tokenizer, sources


def test_generation_counts_come_from_the_run(generation, tiny_llama):
    from raysum.generation import GenerationEngine

    model, tokenizer, sources = tiny_llama
    engine = GenerationEngine(model, tokenizer)
    decoding = generation.decoding("beam4", 5)
    record, outputs = generation.plain_generate(model, tokenizer, sources, [4, 3, 2, 1, 0], 2, decoding, engine.eos,
                                                causal=True)
    calls = record["calls"]
    assert [c["rows"] for c in calls] == [2, 2, 1] and sorted(outputs) == list(range(5))
    for call in calls:  # each step a forward over every row's 4 beams, the prefill over the padded prompts
        assert call["steps"] == call["hooked_forwards"] and 0 < call["steps"] <= 5
        assert call["positions"] == call["steps"] * call["rows"] * 4
        assert call["prompt_positions"] == call["rows"] * 4 * call["width"]
    row = generation.summary(calls, outputs, record["seconds"], dialogues=10, scoring=[])
    assert row["estimated"] and row["all_s"] == pytest.approx(2 * row["timed_s"], abs=0.002)
    assert row["counts"]["forward_passes"] == sum(c["steps"] for c in calls)
    assert "generate" not in vars(model)  # the recording wrapper is gone


def test_raysum_counts_its_fallback_scoring_pass(generation, tiny_llama, monkeypatch):
    """0 extra scoring passes is measured, not assumed: the teacher-forced fallback shows."""
    import torch

    from raysum.generation import GenerationEngine, _logprobs

    model, tokenizer, sources = tiny_llama
    engine = GenerationEngine(model, tokenizer)
    decoding = generation.decoding("greedy", 5)
    record, expected = generation.raysum_generate(engine, sources, [0, 1, 2, 3, 4], decoding, 2, causal=True)
    assert record["scoring"] == [] and len(record["calls"]) == 3  # batches of 2, 2, 1

    def nothing_found(self, new, parents=None):
        return torch.zeros(new.shape), torch.zeros(new.shape, dtype=torch.bool)

    monkeypatch.setattr(_logprobs.StepLogProbs, "lookup", nothing_found)
    record, outputs = generation.raysum_generate(engine, sources, [0, 1, 2, 3, 4], decoding, 2, causal=True)
    assert outputs == expected and record["scoring"] == [2, 2, 1]  # one pass per batch, over its rows
    row = generation.summary(record["calls"], outputs, 1.0, 5, record["scoring"])
    assert row["counts"]["extra_scoring_passes"] == 3


def test_random_bart_eos_is_held_back_only_while_generating(bench, generation, train_and_tokenizer):
    _, tokenizer = train_and_tokenizer
    spec = bench.SHAPES["kobart-shape"]
    model, _ = bench.build_checkpoint(spec, bench.model_config(spec, bench.TINY_CONFIGS["kobart-shape"], tokenizer),
                                      tokenizer, None, cuda=False)
    eos = [tokenizer.eos_token_id]
    with generation.eos_held_back(model, eos):
        assert float(model.final_logits_bias[0, eos[0]]) == -1e4
    assert float(model.final_logits_bias.abs().sum()) == 0.0


def test_counts_only_needs_no_model(bench, train_and_tokenizer):
    """--counts-only: the same counts from lengths and batching alone (tiny shapes here)."""
    train, tokenizer = train_and_tokenizer
    shape = bench.SHAPES["qwen3-4b-shape"]
    spec = dict(shape, **{k: v for k, v in bench.TINY.items() if k in shape})
    row = bench.counts_shape("qwen3-4b-shape", spec, bench.TINY_CONFIGS["qwen3-4b-shape"], tokenizer, train, tiny=True)
    plain, ours = row["counts"]["plain"], row["counts"]["raysum"]
    assert row["lengths"]["tokens"]["min"] >= 150 and row["lengths"]["tokens"]["max"] <= 512
    assert 40 <= row["lengths"]["summary"]["min"] and row["lengths"]["summary"]["max"] <= 100
    assert ours["attention_elements"] < plain["attention_elements"] and ours["logits_rows"] < plain["logits_rows"]
    assert row["raysum_plan"]["max_tokens_per_batch"] == bench.TINY_BUDGET["causal"]


def test_timed_rate_leaves_out_the_warm_up_steps(bench):
    timed_rate = importlib.import_module("bench_gpu_train").timed_rate
    clock = type("Clock", (), {"started": 0.0, "ends": [1.0, 2.0, 4.0], "peak_bytes": 3 * 2**30})()
    rate = timed_rate(clock, [(8, 100), (8, 200), (4, 50), (8, 90)], warm=1)  # a 4th batch: prefetched
    assert rate["timed_steps"] == 2 and rate["timed_s"] == 3.0 and rate["timed_samples"] == 12
    assert rate["samples_per_s"] == 4.0 and rate["real_tokens_per_s"] == round(250 / 3) and rate["peak_GiB"] == 3.0
