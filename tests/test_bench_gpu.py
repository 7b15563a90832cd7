"""scripts/bench_gpu.py: its machine-independent counts, and the whole script on tiny shapes (CPU)."""

from __future__ import annotations

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
    spec.loader.exec_module(module)
    return module


def packed(lengths: list[int], prompt: int = 2) -> dict:
    from transformers import DataCollatorWithFlattening

    collator = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100, return_flash_attn_kwargs=True)
    return collator([{"input_ids": list(range(1, n + 1)), "labels": [-100] * prompt + list(range(prompt + 1, n + 1))}
                     for n in lengths])


def test_packed_row_counts_sum_of_squares_and_label_rows(bench):
    counts = bench.batch_counts(packed([3, 5]), "causal", loss_head_only=True)
    assert counts["samples"] == 2 and counts["real_tokens"] == counts["computed_tokens"] == 8
    assert counts["attention_elements"] == 3**2 + 5**2
    assert counts["attention_dense_mask"] == (3 + 5) ** 2
    # labels after the 2 prompt tokens: 1 + 3 predicted tokens; the first label of each example is not
    # predicted across the boundary (the collator's separator)
    assert counts["loss_rows"] == counts["logits_rows"] == 1 + 3


def test_padded_rows_count_the_padding(bench):
    batch = {"input_ids": torch.zeros(2, 5, dtype=torch.long),
             "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
             "labels": torch.tensor([[-100, -100, 3, -100, -100], [-100, -100, 3, 4, 5]])}
    counts = bench.batch_counts(batch, "causal", loss_head_only=False)
    assert counts["real_tokens"] == 8 and counts["computed_tokens"] == 10
    assert counts["attention_elements"] == counts["attention_dense_mask"] == 2 * 5**2
    assert counts["logits_rows"] == 10 and counts["loss_rows"] == 1 + 3
    assert bench.batch_counts(batch, "causal", loss_head_only=True)["logits_rows"] == 4


def test_seq2seq_counts_encoder_decoder_and_cross_attention(bench):
    batch = {"input_ids": torch.zeros(2, 6, dtype=torch.long),
             "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2]),
             "labels": torch.tensor([[5, 6, 7], [5, 6, -100]])}
    counts = bench.batch_counts(batch, "seq2seq", loss_head_only=False)
    assert counts["real_tokens"] == 6 + 4 + 3 + 2 and counts["computed_tokens"] == 2 * (6 + 3)
    assert counts["attention_elements"] == 2 * (6**2 + 3**2 + 3 * 6)
    assert counts["logits_rows"] == 6 and counts["loss_rows"] == 5


def test_epoch_counts_of_both_samplers_use_every_example_once(bench):
    from raysum.config.presets import load_preset

    settings = load_preset("llama-3.2-korean-3b")
    lengths = [150 + (37 * i) % 363 for i in range(100)]
    examples = [{"input_ids": [1] * n, "labels": [-100] * (n - 50) + [1] * 50} for n in lengths]
    plain = bench.plain_epoch_batches(examples, 8)
    ours, plan = bench.raysum_planned_batches(settings, examples, budget=4096, packed=True)
    for batches in (plain, ours):
        assert sorted(i for b in batches for i in b) == list(range(100))
    from raysum.training.collators import make_collator

    totals = bench.epoch_counts(examples, ours, make_collator(settings, None, None), "causal", True)["totals"]
    assert totals["samples"] == 100 and totals["real_tokens"] == sum(lengths)
    assert totals["attention_elements"] == sum(n * n for n in lengths)
    assert totals["logits_rows"] == totals["loss_rows"] == 100 * 50
    assert totals["micro_batches"] == plan.micro_batches == len(ours)


def test_tiny_run_writes_every_row_and_raysum_computes_less(tmp_path):
    """The whole script on tiny shapes, as on a GPU but on CPU (about 25 s on 2 idle cores)."""
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
        assert row["plain_generate"]["mean_new_tokens"] > 0 and row["raysum"]["generate_s"] > 0
        plain, ours = row["counts"]["plain"], row["counts"]["raysum"]
        assert plain["samples"] == ours["samples"] == row["train_rows"]  # one epoch of the same rows each side
        assert plain["real_tokens"] == ours["real_tokens"] and plain["loss_rows"] == ours["loss_rows"]
    for shape in ("llama-3b-shape", "qwen3-4b-shape"):
        plain, ours = rows[shape]["counts"]["plain"], rows[shape]["counts"]["raysum"]
        assert rows[shape]["raysum"]["packed"] and rows[shape]["raysum"]["attention"] == "raysum_varlen"
        assert ours["padding_efficiency"] == 1.0 > plain["padding_efficiency"]
        assert ours["attention_elements"] < plain["attention_elements"] < ours["attention_dense_mask"]
        assert ours["logits_rows"] == ours["loss_rows"] < plain["logits_rows"]
    assert "raysum/plain" in result.stdout and "logits rows/sample" in result.stdout


def test_counts_only_needs_no_model(bench):
    """--counts-only: the same counts from lengths and batching alone (tiny shapes here)."""
    train = bench.bundled_train()
    tokenizer = bench.sample_tokenizer(train)
    shape = bench.SHAPES["qwen3-4b-shape"]
    spec = dict(shape, **{k: v for k, v in bench.TINY.items() if k in shape})
    row = bench.counts_shape("qwen3-4b-shape", spec, bench.TINY_CONFIGS["qwen3-4b-shape"], tokenizer, train, tiny=True)
    plain, ours = row["counts"]["plain"], row["counts"]["raysum"]
    assert row["lengths"]["tokens"]["min"] >= 150 and row["lengths"]["tokens"]["max"] <= 512
    assert 40 <= row["lengths"]["summary"]["min"] and row["lengths"]["summary"]["max"] <= 100
    assert ours["attention_elements"] < plain["attention_elements"] and ours["logits_rows"] < plain["logits_rows"]
    assert row["raysum_plan"]["max_tokens_per_batch"] == bench.TINY_BUDGET["causal"]


def test_timed_rate_leaves_out_the_warm_up_steps(bench):
    clock = type("Clock", (), {"started": 0.0, "ends": [1.0, 2.0, 4.0], "peak_bytes": 3 * 2**30})()
    rate = bench.timed_rate(clock, [(8, 100), (8, 200), (4, 50), (8, 90)], warm=1)  # a 4th batch: prefetched
    assert rate["timed_steps"] == 2 and rate["timed_s"] == 3.0 and rate["timed_samples"] == 12
    assert rate["samples_per_s"] == 4.0 and rate["real_tokens_per_s"] == round(250 / 3) and rate["peak_GiB"] == 3.0
