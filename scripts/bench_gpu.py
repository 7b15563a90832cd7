"""raysum next to plain transformers + peft on one GPU, in one process: training and generation.

For each model shape the script builds a randomly initialised model, saves it with a
tokenizer trained on the bundled Korean sample (so raysum loads it through the real
`from_pretrained` path), then generates with both sides and trains both sides:

  kobart-shape    BART, d_model 768, 6+6 layers, vocab 30000: full fine-tune
  llama-3b-shape  Llama-3.2-3B: hidden 3072, 28 layers, 24/8 heads, vocab 128256, LoRA r16 x 7 projections
  qwen3-4b-shape  Qwen3-4B: hidden 2560, intermediate 9728, 36 layers, 32/8 heads, head_dim 128,
                  vocab 151936, tied embeddings (the H200 baseline's shape), LoRA r16 x 7 projections

Training (bench_gpu_train.py). Rows have the H200 baseline's lengths, built deterministically
(seed 0) by cutting the bundled dialogues and summaries to sampled token counts: KoBART
sources of 512 tokens and targets of 100; causal rows of 150-512 tokens (uniform, mean ~331)
of which 40-100 are the summary (with eos).

  plain   `transformers.Trainer` + peft at the strongest plain settings of the H200
          baseline (docs/bench/h200-hf-baseline.json and its length-sorted run): bf16, length-grouped
          batches (`LengthGroupedSampler`), the largest batch measured to fit (KoBART 50,
          causal 8), dense sdpa attention over padded rows, logits at every position;
          `max_steps` = warm-up + timed steps.
  raysum  `raysum.training.run_unit` (called directly, no Ray; it trains, the generation rows
          below time its engine) with the presets' settings (kobart, llama-3.2-korean-3b,
          qwen3-4b; 1 epoch) and its defaults on a GPU: `packing: auto` (packed rows, varlen
          attention), logits only at summary tokens, `max_tokens_per_batch: auto`.

Both sides are timed over the optimizer steps after the first `warm` ones (CUDA
synchronised at each step end); samples/s, real tokens/s and the peak GPU memory of
training are printed with the ratio raysum/plain. Beside the times, counts that no machine
changes (bench_gpu_counts.py), from the batches each side builds over one epoch of the
training rows: real tokens against tokens computed (padding efficiency), attention score
elements (per layer and head: padded rows x width^2; packed rows under raysum's varlen
attention sum(len^2), beside (sum len)^2 that a dense block-diagonal mask would cost;
seq2seq: encoder S^2 + decoder T^2 + cross T x S), and vocabulary-head (logits) rows
computed against rows that carry loss.

Generation (bench_gpu_generate.py, whose docstring has the details): 499 prompts of the H200
baseline's lengths (150-450 tokens, uniform, seed 1, cut from the bundled dialogues), up to
100 new tokens, beam 4 and greedy, on the same random model (bf16 on a GPU). Plain
`model.generate` at the seed's batch (KoBART 50, causal 10; input order) and at the
strongest plain setting (longest first; beam 4: KoBART 500, causal 128; greedy 500 / 512)
next to raysum's `GenerationEngine` over `prepare_model`'s model, as a unit uses it (its
times include its log-probs; plain generates only, as the seed did). The causal shapes
time 128 of the 499 dialogues on each side (plain's second batch of 128, longest first:
prompts near the median, one batch each side) and the seed's row its first batches; the
table marks what is scaled to 499 "(est.)". Counts from
the runs: decoder forward passes (steps x batches), token positions computed (rows x beams
x steps, finished and padded rows included) against tokens kept (up to eos), extra scoring
passes (the engine's teacher-forced fallback; the earlier raysum path scored every batch
once more), and whether greedy tokens equal plain's. Random weights seldom end a row (the
random BART's eos is held back), so nearly every row runs the 100 steps.

Run on a GPU machine from the repository root (needs torch, transformers, peft, accelerate,
pandas + pyarrow and the raysum checkout; not Ray), then the GPU tests as a second command:

    HF_HUB_OFFLINE=1 python scripts/bench_gpu.py --out $OUT/bench
    python -m pytest -m gpu tests/test_packing.py tests/test_batching.py tests/test_loss_head.py \
        tests/test_deepspeed_qlora.py tests/test_engine.py

Time on one H200, estimated from the baselines' rates (not measured), in seconds:

                  generation rows, one side each                                 training
                  beam 4  beam 4  greedy  greedy               beam 4     save  plain  unit:        counts
                  plain   raysum  plain   raysum               seed batch       train  load + train
  kobart-shape    11      11-15   3-5     20-60 (compiles)     10         1     5      2 + 5        5
  llama-3b-shape  17-27   17-27   5-7     30-90 (compile)       7         9     8-15   5 + 12-45    8
  qwen3-4b-shape  23-36   23-36   7-10    40-110 (compile)      7        11     9-18   6 + 15-45    8

(beam 4: KoBART's 499 at batch 500 took 12 s on the baseline, 25 s at batch 50 (4 of its 10
batches timed here); Llama's 128 shortest prompts in one batch 16.7 s, prompts near the
median 1-1.6x that, Qwen 1.33x Llama; a seed batch of 10 7.3 s (Llama), 6.5 s (Qwen), one
timed; greedy: the 499 in one batch of 512 took 20 s (Llama) and 29 s (Qwen), 128 of them a
quarter; the engine's compiled greedy decoding compiles at its first batch and at each new
batch shape, the widest unknown of the run; training as before: 18 steps x 8 at the bench's
11-26 samples/s for Llama, 9-21 for Qwen, KoBART 32 x 50 at ~870/s, the unit's 384 causal
rows at plain's rate to 3x it.) Per shape 75-120, 120-245 and 150-290 s, plus ~30 s of
start-up: 6.5-11.5 minutes, about 9 in the middle, the compiles deciding where in the range
the run lands. The device's limit is 10 minutes a command: a row starts only if the most it
is expected to take (NEED_S: 45 s a generation row, 120 s raysum's compiling greedy row,
30 s plain training, 75 s the unit) ends before --deadline-s (585 s), else it is marked
skipped in the JSON, which is rewritten after each row; the skipped rows run as a second
command with --only (e.g. `--only qwen3-4b-shape train`).

    --shapes tiny      the same code with tiny shapes on CPU (a check of the script, ~20 s of CPU;
                       packed rows and fixed token budgets stand in for the GPU defaults); the
                       generation rows run 24 prompts, 8 new tokens, batches scaled down
    --only ...         shapes and/or parts: `train`, `generate` (default: every shape, both parts)
    --no-generate      the same as `--only train`
    --counts-only      the training counts alone: no model is built, no GPU needed; with the full
                       shapes raysum's `auto` budget is modelled for an H200 (bench_gpu_counts.H200_FREE_BYTES), the
                       real run records the budget it got (generation counts need the runs)
    --rows N           N training rows for every shape (e.g. 9966, a 5-fold unit's share of 12,457)
Writes `<out>/bench_gpu.json` and prints a table with the ratios last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench_gpu_* helpers, also when imported by path

from bench_gpu_counts import (
    IGNORE_INDEX,
    epoch_counts,
    modelled_auto_budget,
    plain_collator,
    plain_epoch_batches,
    planned_counts,
)
from bench_gpu_generate import generation_rows
from bench_gpu_train import plain_train, raysum_counts_and_rate, raysum_unit

STARTED = time.perf_counter()
N_GENERATE = 499
NEW_TOKENS = 100
PARTS = ("train", "generate")
# The longest a row of each kind is expected to take on an H200 (Qwen's, from the baselines'
# rates): a row starts only if it still ends before --deadline-s.
NEED_S = {"generate": 45, "compile": 120, "plain_train": 30, "unit": 75}

SHAPES = {
    "kobart-shape": dict(
        kind="seq2seq", architecture="bart", preset="kobart", train_rows=2000, plain_batch=50, plain_steps=30, warm=2,
        generate=dict(seed_batch=50, seed_timed_batches=4, sorted_batch={"beam4": 500, "greedy": 500},
                      timed_ranks=None),
        config=dict(vocab_size=30000, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=16,
                    decoder_attention_heads=16, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                    max_position_embeddings=1026)),
    "llama-3b-shape": dict(
        kind="causal", architecture="llama", preset="llama-3.2-korean-3b", train_rows=384, plain_batch=8,
        plain_steps=16, warm=2, generate=dict(seed_batch=10, seed_timed_batches=1,
                                              sorted_batch={"beam4": 128, "greedy": 512}, timed_ranks=(128, 256)),
        config=dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                    num_attention_heads=24, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
                    rope_theta=500000.0, tie_word_embeddings=True)),
    "qwen3-4b-shape": dict(
        kind="causal", architecture="qwen3", preset="qwen3-4b", train_rows=384, plain_batch=8, plain_steps=16, warm=2,
        generate=dict(seed_batch=10, seed_timed_batches=1, sorted_batch={"beam4": 128, "greedy": 512},
                      timed_ranks=(128, 256)),
        config=dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                    num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
                    tie_word_embeddings=True)),
}
# --shapes tiny: tiny configs, few rows and steps, short generation with the batches scaled
# down (the causal shapes still time one batch's prompts only, the seed's row its first batch),
# and on the raysum side what the GPU defaults do made explicit (packed rows, a token budget,
# the engine's row cap), since on CPU `auto` pads and turns the budgets off.
# Their weights are drawn wider than the default 0.02 so that each prompt gets its own summary
# (at 0.02 a tiny random model writes one and the same for all, and the token-equality check
# of the generation rows would hold whatever order the outputs came back in).
TINY_CONFIGS = {
    "kobart-shape": dict(vocab_size=3000, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                         max_position_embeddings=1026, init_std=0.3),
    "llama-3b-shape": dict(vocab_size=3000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                           tie_word_embeddings=True, initializer_range=0.3),
    "qwen3-4b-shape": dict(vocab_size=3000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                           tie_word_embeddings=True, initializer_range=0.3),
}
TINY = dict(train_rows=40, plain_batch=8, plain_steps=3, warm=1, n_generate=24, new_tokens=8)
TINY_GENERATE = {
    "seq2seq": dict(seed_batch=5, seed_timed_batches=2, sorted_batch={"beam4": 24, "greedy": 24}, timed_ranks=None,
                    engine_rows=16),
    "causal": dict(seed_batch=2, seed_timed_batches=1, sorted_batch={"beam4": 8, "greedy": 24}, timed_ranks=(8, 16),
                   engine_rows=8),
}
TINY_BUDGET = {"seq2seq": 8 * (512 + 104), "causal": 4096}


# ---------------------------------------------------------------- rows and tokenizer
def bundled_train():
    from raysum.data import bundled_data, load_dataset

    return load_dataset(bundled_data("train"))


def sample_tokenizer(train):
    """The tokenizer every shape uses: trained on the bundled sample (and the prompt's words)."""
    from raysum.config.schema import ModelSettings
    from raysum.models.tokenizer import train_tokenizer

    texts = train["dialogue"].tolist() + [r[0] for r in train["references"]]
    return train_tokenizer(texts + [ModelSettings().prompt_template.replace("{dialogue}", " ")], 8000)



def generation_sources(tokenizer, settings, n: int, train, seed: int = 1, low: int = 150, high: int = 450):
    """The model inputs both sides generate from: `n` prompts of the H200 baseline's lengths
    (`low`-`high` tokens, uniform), cut from the bundled dialogues like the training rows."""
    import numpy as np

    from raysum.models.prompts import encode_sources

    rng = np.random.default_rng(seed)
    overhead = len(encode_sources(tokenizer, settings, [""])[0])  # bos + eos, or the chat template
    dialogues = _token_slices(tokenizer, "\n".join(train["dialogue"]), rng.integers(low, high + 1, n) - overhead, rng)
    return encode_sources(tokenizer, settings, dialogues)


def realistic_rows(tokenizer, settings, n: int, train, seed: int = 0):
    """`n` training rows (fname, dialogue, summary) whose encoded lengths are the H200
    baseline's: seq2seq sources of max_source_length (512) and targets of max_target_length
    (100) tokens; causal rows of 150-512 tokens, 40-100 of them the summary with its eos."""
    import numpy as np
    import pandas as pd

    from raysum.models.prompts import encode_sources

    rng = np.random.default_rng(seed)
    if settings.kind == "causal":
        totals, summaries = rng.integers(150, 513, n), rng.integers(40, 101, n)
        overhead = len(encode_sources(tokenizer, settings, [""])[0])  # chat template around the dialogue
        dialogue_tokens, summary_tokens = totals - summaries - overhead, summaries - 1
    else:  # longer than the limits: truncation makes every row exactly max_source/target_length
        dialogue_tokens = np.full(n, settings.max_source_length + 8)
        summary_tokens = np.full(n, settings.max_target_length + 8)
    dialogues = _token_slices(tokenizer, "\n".join(train["dialogue"]), dialogue_tokens, rng)
    summaries = _token_slices(tokenizer, " ".join(r[0] for r in train["references"]), summary_tokens, rng)
    return pd.DataFrame({"fname": [f"bench_{i:05d}" for i in range(n)], "dialogue": dialogues, "summary": summaries})


def _token_slices(tokenizer, pool: str, counts, rng) -> list[str]:
    """Pieces of `pool` that tokenize (alone, as the prompt code tokenizes them) to `counts`
    tokens, each starting at a random word: the cut is moved by the difference, and a piece
    still off after a few moves starts elsewhere (a last one off by a token or two stays)."""
    offsets = tokenizer(pool, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    longest = int(max(counts))
    words = [i for i, (start, _) in enumerate(offsets[:len(offsets) - longest - 64])
             if start == 0 or pool[start - 1].isspace()]
    counts = [int(c) for c in counts]
    starts, ends, texts = [0] * len(counts), [0] * len(counts), [""] * len(counts)

    def cut(i):
        texts[i] = pool[offsets[starts[i]][0]:offsets[ends[i] - 1][1]].strip()

    todo = list(range(len(counts)))
    for _ in range(6):
        for i, word in zip(todo, rng.integers(0, len(words), len(todo))):
            starts[i] = words[word]
            ends[i] = starts[i] + counts[i]
            cut(i)
        for _ in range(4):
            got = [len(ids) for ids in tokenizer([texts[i] for i in todo], add_special_tokens=False)["input_ids"]]
            wrong = [(i, g) for i, g in zip(todo, got) if g != counts[i]]
            todo = [i for i, _ in wrong]
            if not todo:
                return texts
            for i, g in wrong:
                ends[i] = max(starts[i] + 1, ends[i] + counts[i] - g)
                cut(i)
    return texts


def length_stats(examples: list[dict], kind: str) -> dict:
    from raysum.training.batching import example_lengths

    lengths = [example_lengths(e, kind) for e in examples]
    columns = list(zip(*lengths))
    names = ("source", "target") if kind == "seq2seq" else ("tokens",)
    stats = {name: {"min": min(c), "mean": round(sum(c) / len(c), 1), "max": max(c)} for name, c in zip(names, columns)}
    if kind == "causal":
        summary = [sum(1 for x in e["labels"] if x != IGNORE_INDEX) for e in examples]
        stats["summary"] = {"min": min(summary), "mean": round(sum(summary) / len(summary), 1), "max": max(summary)}
    return stats



# ---------------------------------------------------------------- settings and models
def unit_settings(name: str, spec: dict, checkpoint: str, cuda: bool, tiny: bool):
    """The preset's settings for one epoch on the random checkpoint. On a GPU raysum's
    defaults stay (packing auto, max_tokens_per_batch auto); tiny runs make them explicit."""
    from raysum.config.presets import load_preset

    settings = load_preset(spec["preset"])
    changes = dict(name=name, checkpoint=checkpoint, epochs=1, max_tokens_per_batch="auto",
                   resources=dataclasses.replace(settings.resources, use_gpu=cuda))
    if tiny:
        changes.update(packing="packed", max_tokens_per_batch=TINY_BUDGET[spec["kind"]], dataloader_num_workers=0)
    return dataclasses.replace(settings, **changes)


def model_config(spec: dict, config_kwargs: dict, tokenizer):
    from raysum.models.architectures import get_architecture

    kwargs = dict(config_kwargs, vocab_size=max(config_kwargs["vocab_size"], len(tokenizer)),
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if spec["kind"] == "seq2seq":
        kwargs.update(decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    return get_architecture(spec["architecture"]).build_config(**kwargs)


def build_checkpoint(spec: dict, config, tokenizer, target: Path | None, cuda: bool):
    """A random model of the shape, saved to `target` with the tokenizer (for the unit; not
    when only generating: `target` None)."""
    import torch

    from raysum.models.architectures import get_architecture

    dtype = torch.bfloat16 if cuda and spec["kind"] == "causal" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda" if cuda else "cpu"):
            model = get_architecture(spec["architecture"]).build_model(config)
    finally:
        torch.set_default_dtype(previous)
    if target is None:
        return model, None
    started = time.perf_counter()
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return model, round(time.perf_counter() - started, 1)


# ---------------------------------------------------------------- one shape
def bench_shape(name: str, spec: dict, config_kwargs: dict, tokenizer, train, work: Path, cuda: bool, tiny: bool,
                parts: list[str], result: dict, progress, fits) -> None:
    """Generation, then training, of one shape, written into `result` as each row finishes
    (`progress()` saves it); a row starts only if `fits(its kind)` (see NEED_S)."""
    import gc

    import torch

    from raysum.models import encode_examples

    checkpoint = work / name / "checkpoint"
    settings = unit_settings(name, spec, str(checkpoint), cuda, tiny)
    config = model_config(spec, config_kwargs, tokenizer)
    model, save_s = build_checkpoint(spec, config, tokenizer, checkpoint if "train" in parts else None, cuda)
    result.update(kind=spec["kind"], preset=spec["preset"], params=sum(p.numel() for p in model.parameters()),
                  save_s=save_s)
    if "generate" in parts:
        plan = dict(TINY_GENERATE[spec["kind"]] if tiny else dict(spec["generate"],
                                                                   engine_rows=settings.generation_batch_size),
                    new_tokens=TINY["new_tokens"] if tiny else NEW_TOKENS)
        sources = generation_sources(tokenizer, settings, TINY["n_generate"] if tiny else N_GENERATE, train)
        generation_rows(model, tokenizer, settings, sources, plan, cuda, fits, progress,
                        result.setdefault("generate", {}))
        if cuda and spec["kind"] == "seq2seq":
            model.float()  # full fine-tune: fp32 master weights with bf16 autocast, as raysum trains
    if "train" in parts:
        rows = realistic_rows(tokenizer, settings, spec["train_rows"], train)
        examples = encode_examples(tokenizer, settings, rows["dialogue"].tolist(), rows["summary"].tolist())
        result.update(train_rows=len(rows), lengths=length_stats(examples, spec["kind"]))
        if fits("plain_train"):
            result["plain_train"] = plain_train(model, tokenizer, settings, examples, spec, work / name / "plain",
                                                cuda)
            print(name, "plain train", result["plain_train"], flush=True)
        else:
            result["plain_train"] = {"skipped": "deadline (--deadline-s)"}
        progress()
    del model  # the unit loads the checkpoint into memory this model no longer holds
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    if "train" in parts:
        unit_and_counts(name, spec, settings, config, tokenizer, rows, examples, work, cuda, tiny, result, fits)
        progress()
    shutil.rmtree(checkpoint, ignore_errors=True)


def unit_and_counts(name: str, spec: dict, settings, config, tokenizer, rows, examples: list[dict], work: Path,
                    cuda: bool, tiny: bool, result: dict, fits) -> None:
    """raysum's unit on the saved checkpoint, then the counts of both sides' batches."""
    import gc

    import torch

    if cuda:
        result["gpu_allocated_before_unit_GiB"] = round(torch.cuda.memory_allocated() / 2**30, 2)
    if not fits("unit"):
        result["raysum"] = {"skipped": "deadline (--deadline-s)"}
        return
    result["raysum"], seen = raysum_unit(settings, rows, work / name, cuda)
    raysum_counts, rate = raysum_counts_and_rate(settings, seen, spec["warm"])
    if rate is not None:
        result["raysum"].update(rate)
    print(name, "raysum unit", result["raysum"], flush=True)
    del seen
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    if raysum_counts is None:  # the Trainer was not seen: count the planned batches instead
        raysum_counts = planned_counts(settings, config, tokenizer, examples, tiny)["raysum"]
        raysum_counts["note"] = "counted from the planned batches, not the unit's Trainer"
    plain_counts = epoch_counts(examples, plain_epoch_batches(examples, spec["plain_batch"]), plain_collator(tokenizer),
                                spec["kind"], False)
    result["counts"] = {"plain": plain_counts["totals"], "raysum": raysum_counts["totals"],
                        "raysum_batches": raysum_counts.get("note", "epoch 0 of the unit Trainer's own sampler")}
    if not tiny:
        result["modelled_auto_budget"] = modelled_auto_budget(settings, config, examples)


def counts_shape(name: str, spec: dict, config_kwargs: dict, tokenizer, train, tiny: bool) -> dict:
    """--counts-only: the counts of one shape from lengths and batching alone."""
    from raysum.models import encode_examples

    settings = unit_settings(name, spec, "(not built)", cuda=not tiny, tiny=tiny)
    config = model_config(spec, config_kwargs, tokenizer)
    rows = realistic_rows(tokenizer, settings, spec["train_rows"], train)
    examples = encode_examples(tokenizer, settings, rows["dialogue"].tolist(), rows["summary"].tolist())
    ours = planned_counts(settings, config, tokenizer, examples, tiny)["raysum"]
    plain = epoch_counts(examples, plain_epoch_batches(examples, spec["plain_batch"]), plain_collator(tokenizer),
                         spec["kind"], False)
    return {"shape": name, "kind": spec["kind"], "preset": spec["preset"], "train_rows": len(rows),
            "lengths": length_stats(examples, spec["kind"]), "plain_batch": spec["plain_batch"],
            "raysum_plan": ours["plan"], "modelled_auto_budget": ours.get("modelled_auto_budget"),
            "counts": {"plain": plain["totals"], "raysum": ours["totals"]}}



# ---------------------------------------------------------------- output
COUNT_ROWS = (("padding efficiency", "padding_efficiency", "{:.3f}"),
              ("tokens computed/sample", "computed_tokens_per_sample", "{:,.1f}"),
              ("attention elem/sample", "attention_elements_per_sample", "{:,.0f}"),
              ("  with a dense mask", "attention_dense_mask_per_sample", "{:,.0f}"),
              ("logits rows/sample", "logits_rows_per_sample", "{:,.1f}"),
              ("loss rows/sample", "loss_rows_per_sample", "{:,.1f}"),
              ("micro-batches", "micro_batches", "{:,}"))
GENERATION_COUNT_ROWS = (("  forward passes/dialogue", "forward_passes_per_dialogue", "{:,.2f}"),
                         ("  positions computed/dialogue", "positions_computed_per_dialogue", "{:,.1f}"),
                         ("  tokens kept/dialogue", "tokens_kept_per_dialogue", "{:,.1f}"),
                         ("  extra scoring passes", "extra_scoring_passes", "{:,}"))
WIDTH = 34  # of the measure column


def _get(record, *keys):
    """record[k1][k2]..., or None where a row is missing, skipped or failed."""
    for key in keys:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def _line(shape: str, measure: str, plain, ours, fmt: str = "{:,.2f}") -> str:
    ratio = f"{ours / plain:12.3f}x" if plain and ours is not None and plain is not None else ""
    show = (lambda v: fmt.format(v) if v is not None else "-")
    return f"{shape:16} {measure:{WIDTH}} {show(plain):>14} {show(ours):>14} {ratio:>13}"


def _generation_lines(shape: str, rows: dict) -> list[str]:
    """Beam 4 and greedy at plain's strongest setting, then beam 4 at the seed's batch, each
    next to raysum's engine (the same engine row serves the seed's comparison)."""
    lines = []
    for key in ("beam4", "greedy", "beam4_seed"):
        entry = rows.get(key) or {}
        plain = entry.get("plain")
        ours = _get(rows, "beam4", "raysum") if key == "beam4_seed" else entry.get("raysum")
        setting = entry.get("plain_setting") or {}
        est = " (est.)" if any(_get(side, "estimated") for side in (plain, ours)) else ""
        decoding = "greedy" if key == "greedy" else "beam 4"
        measure = f"{decoding} b{setting.get('batch')} {setting.get('order', '')}: s{est}"
        lines.append(_line(shape, measure, _get(plain, "all_s"), _get(ours, "all_s")))
        for label, name, fmt in GENERATION_COUNT_ROWS:
            lines.append(_line(shape, label, _get(plain, "counts", name), _get(ours, "counts", name), fmt))
        equal = entry.get("equal_tokens")
        if equal:
            lines.append(f"{shape:16} {'  tokens equal to plain':{WIDTH}} {'':>14} "
                         f"{str(equal['equal']) + '/' + str(equal['dialogues']):>14}")
    return lines


def table(results: list[dict]) -> str:
    lines = [f"{'shape':16} {'measure':{WIDTH}} {'plain HF':>14} {'raysum':>14} {'raysum/plain':>13}"]
    for r in results:
        for problem in ("error", "skipped"):
            if problem in r:
                lines.append(f"{r['shape']:16} {problem}: {r[problem][:90]}")
        if "plain_train" in r:
            p, u = r["plain_train"], r.get("raysum")
            lines.append(_line(r["shape"], "train samples/s", _get(p, "samples_per_s"), _get(u, "samples_per_s")))
            lines.append(_line(r["shape"], "train real tokens/s", _get(p, "real_tokens_per_s"),
                               _get(u, "real_tokens_per_s"), "{:,.0f}"))
            lines.append(_line(r["shape"], "train peak GiB", _get(p, "peak_GiB"), _get(u, "peak_GiB")))
        if "generate" in r:
            lines.extend(_generation_lines(r["shape"], r["generate"]))
        if "counts" in r:
            plain, ours = r["counts"]["plain"], r["counts"]["raysum"]
            for label, key, fmt in COUNT_ROWS:
                lines.append(_line(r["shape"], label, plain[key], ours[key], fmt))
    if any("generate" in r for r in results):
        lines.append("generation: (est.) = timed on fewer dialogues, scaled to all by their number; raysum's times "
                     "include its log-probs, plain generates only; the earlier raysum path scored each batch once more")
    return "\n".join(lines)


def selection(only: list[str], no_generate: bool = False) -> tuple[list[str], list[str]]:
    """(shapes, parts) that `--only` (shape names and/or parts, in any order) and
    `--no-generate` pick: every shape and both parts unless named."""
    shapes = [s for s in SHAPES if s in only] or list(SHAPES)
    parts = [p for p in PARTS if p in only] or list(PARTS)
    return shapes, [p for p in parts if not (no_generate and p == "generate")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/bench_gpu")
    parser.add_argument("--shapes", choices=["full", "tiny"], default="full")
    parser.add_argument("--only", nargs="*", default=[], choices=[*SHAPES, *PARTS], metavar="SHAPE_OR_PART",
                        help=f"shapes ({', '.join(SHAPES)}) and/or parts ({', '.join(PARTS)}); default: all of both")
    parser.add_argument("--counts-only", action="store_true", help="training counts only; no model, no GPU")
    parser.add_argument("--no-generate", action="store_true", help="the same as --only train")
    parser.add_argument("--rows", type=int, help="training rows of every shape (default: the shape's train_rows)")
    parser.add_argument("--deadline-s", type=float, default=585.0,
                        help="a row starts only if its expected length (NEED_S) ends before this many seconds after "
                             "the start (the device's limit is 600)")
    ns = parser.parse_args()
    import torch
    import transformers

    shapes, parts = selection(ns.only, ns.no_generate)
    if not parts:
        parser.error("--no-generate with --only generate leaves nothing to run")
    tiny = ns.shapes == "tiny"
    if tiny:  # tiny models gain nothing from threads; on a busy 2-core machine spinning ones made it 5x slower
        torch.set_num_threads(1)
    cuda = torch.cuda.is_available() and not ns.counts_only
    if not tiny and not cuda and not ns.counts_only:
        print("the full shapes need a CUDA GPU; use --shapes tiny for a CPU check of the script, or --counts-only")
        return 2
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("BENCH_WORK", "/tmp/bench_gpu_work"))
    shutil.rmtree(work, ignore_errors=True)
    env = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
           "transformers": transformers.__version__, "shapes": ns.shapes,
           "mode": "counts-only" if ns.counts_only else "+".join(parts), "deadline_s": ns.deadline_s}
    train = bundled_train()
    tokenizer = sample_tokenizer(train)
    results: list[dict] = []

    def save() -> None:
        (out / "bench_gpu.json").write_text(json.dumps({"env": env, "results": results}, indent=1))

    def fits(kind: str) -> bool:
        return time.perf_counter() - STARTED + (0 if tiny else NEED_S[kind]) <= ns.deadline_s

    for name in shapes:
        spec = dict(SHAPES[name], **({k: v for k, v in TINY.items() if k in SHAPES[name]} if tiny else {}))
        if ns.rows:
            spec["train_rows"] = ns.rows
        config_kwargs = TINY_CONFIGS[name] if tiny else spec["config"]
        started = time.perf_counter()
        result = {"shape": name}
        results.append(result)
        try:
            if ns.counts_only:
                result.update(counts_shape(name, spec, config_kwargs, tokenizer, train, tiny))
            elif not fits("generate"):
                result["skipped"] = "deadline (--deadline-s)"
            else:
                bench_shape(name, spec, config_kwargs, tokenizer, train, work, cuda, tiny, parts, result, save, fits)
        except Exception as exc:  # noqa: BLE001 - one shape failing still reports the others
            import traceback

            traceback.print_exc()
            result["error"] = repr(exc)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        save()
    env["wall_s"] = round(time.perf_counter() - STARTED, 1)
    save()
    print(json.dumps(env))
    print(table(results))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
