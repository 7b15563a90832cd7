"""raysum's training unit next to plain transformers + peft, on one GPU, in one process.

For each model shape the script builds a randomly initialised model, saves it with a
tokenizer trained on the bundled Korean sample (so raysum loads it through the real
`from_pretrained` path), and trains both sides on the same rows:

  kobart-shape    BART, d_model 768, 6+6 layers, vocab 30000: full fine-tune
  llama-3b-shape  Llama-3.2-3B: hidden 3072, 28 layers, 24/8 heads, vocab 128256, LoRA r16 x 7 projections
  qwen3-4b-shape  Qwen3-4B: hidden 2560, intermediate 9728, 36 layers, 32/8 heads, head_dim 128,
                  vocab 151936, tied embeddings (the H200 baseline's shape), LoRA r16 x 7 projections

Rows have the H200 baseline's lengths, built deterministically (seed 0) by cutting the
bundled dialogues and summaries to sampled token counts: KoBART sources of 512 tokens and
targets of 100; causal rows of 150-512 tokens (uniform, mean ~331) of which 40-100 are
the summary (with eos).

  plain   `transformers.Trainer` + peft at the strongest plain settings of the H200
          baseline (docs/bench/h200-hf-baseline.json and its length-sorted run): bf16, length-grouped
          batches (`LengthGroupedSampler`), the largest batch measured to fit (KoBART 50,
          causal 8), dense sdpa attention over padded rows, logits at every position;
          `max_steps` = warm-up + timed steps.
  raysum  `raysum.training.run_unit` (called directly, no Ray) with the presets' settings
          (kobart, llama-3.2-korean-3b, qwen3-4b; 1 epoch) and its defaults on a GPU:
          `packing: auto` (packed rows, varlen attention), logits only at summary tokens,
          `max_tokens_per_batch: auto` (micro-batches sized from free GPU memory).

Both sides are timed over the optimizer steps after the first `warm` ones (CUDA
synchronised at each step end); samples/s, real tokens/s (tokens of the examples, no
padding) and the peak GPU memory of training are printed with the ratio raysum/plain.
Beside the times, counts that no machine changes, from the batches each side builds over
one epoch of the training rows (plain: its sampler with seed 0 and its collator; raysum:
the unit's own token-budget sampler and collator): real tokens against tokens computed
(padding efficiency), attention score elements (per layer and head: padded rows x
width^2; packed rows under raysum's varlen attention sum(len^2), beside (sum len)^2 that a
dense block-diagonal mask would cost; seq2seq: encoder S^2 + decoder T^2 + cross T x S),
and vocabulary-head (logits) rows computed against rows that carry loss.

Generation rows (unchanged from the first version of this script; a later issue reworks
them): 499 dialogues, beam 4, up to 100 new tokens, plain `generate` in input order at
the seed's batch size (50 KoBART, 10 causal: first 5 batches timed and extrapolated)
against the unit's own generation (raysum.generation's engine, see docs/units.md). Random
weights rarely emit eos, so both sides generate close to 100 tokens.

Run on a GPU machine from the repository root (needs torch, transformers, peft, accelerate,
pandas + pyarrow and the raysum checkout; not Ray):

    HF_HUB_OFFLINE=1 python scripts/bench_gpu.py --out $OUT/bench
    python -m pytest -m gpu tests/test_packing.py tests/test_batching.py tests/test_loss_head.py \\
        tests/test_deepspeed_qlora.py          # the GPU tests, as a second command

Time on one H200, estimated from the baseline's rates (not measured), in seconds:

                 save  plain generate  plain train  unit: load + train  unit: save + generate  counts
  kobart-shape      1        28         2 + 3 setup       2 + 5              5 + 25                 5
  llama-3b-shape    9        38        6-13 + 2          5 + 12-45          3 + 75                 8
  qwen3-4b-shape   11        34        7-16 + 2          6 + 15-45          3 + 95                 8

(plain train: 18 steps x 8 at the bench's 11-26 samples/s for Llama, 9-21 for Qwen; KoBART
32 x 50 at ~870/s; the unit's 384 causal rows at anywhere from plain's rate to 3x it;
generation: the bench's 499-dialogue times at batch 50 / 128 and a few seconds more),
plus ~30 s of start-up: 7.5-9 minutes in all, 2.5-4 with `--no-generate`; the
device's limit is 10 minutes a command. The JSON is rewritten after each shape, so a run
cut short keeps the shapes it finished.

    --shapes tiny      the same code with tiny shapes on CPU (a check of the script, 15-40 s;
                       packed rows and a fixed token budget stand in for the GPU defaults)
    --counts-only      the machine-independent counts alone: no model is built, no GPU needed;
                       with the full shapes raysum's `auto` budget is modelled for an H200
                       (H200_FREE_BYTES), the real run records the budget it got
    --no-generate      skip the generation rows
    --rows N           N training rows for every shape (e.g. 9966, a 5-fold unit's share of 12,457)
Writes `<out>/bench_gpu.json` and prints a table with the ratios last.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_GENERATE = 499
NEW_TOKENS = 100
IGNORE_INDEX = -100
# An H200 as torch sees it after a unit loaded its model: 143,771 MiB (nvidia-smi) less ~1 GiB
# of CUDA context and workspaces, less the weights (see modelled_auto_budget).
H200_FREE_BYTES = (143_771 - 1024) * 2**20

SHAPES = {
    "kobart-shape": dict(
        kind="seq2seq", architecture="bart", preset="kobart", train_rows=2000, plain_batch=50, plain_steps=30, warm=2,
        seed_gen_batch=50, gen_batches=None,
        config=dict(vocab_size=30000, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=16,
                    decoder_attention_heads=16, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                    max_position_embeddings=1026)),
    "llama-3b-shape": dict(
        kind="causal", architecture="llama", preset="llama-3.2-korean-3b", train_rows=384, plain_batch=8,
        plain_steps=16, warm=2, seed_gen_batch=10, gen_batches=5,
        config=dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                    num_attention_heads=24, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
                    rope_theta=500000.0, tie_word_embeddings=True)),
    "qwen3-4b-shape": dict(
        kind="causal", architecture="qwen3", preset="qwen3-4b", train_rows=384, plain_batch=8, plain_steps=16, warm=2,
        seed_gen_batch=10, gen_batches=5,
        config=dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                    num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
                    tie_word_embeddings=True)),
}
# --shapes tiny: tiny configs, few rows and steps, short generation, and on the raysum side
# what the GPU defaults do made explicit (packed rows, a token budget), since on CPU `auto`
# pads and turns the budget off.
TINY_CONFIGS = {
    "kobart-shape": dict(vocab_size=3000, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                         max_position_embeddings=1026),
    "llama-3b-shape": dict(vocab_size=3000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                           tie_word_embeddings=True),
    "qwen3-4b-shape": dict(vocab_size=3000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                           tie_word_embeddings=True),
}
TINY = dict(train_rows=40, plain_batch=8, plain_steps=3, warm=1, n_generate=6, new_tokens=6)
TINY_BUDGET = {"seq2seq": 8 * (512 + 104), "causal": 4096}


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


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


def generation_dialogues(n: int):
    """The dialogues both sides generate for: bundled dev, test, then train (499 by default)."""
    import pandas as pd

    from raysum.data import bundled_data, load_dataset

    dev, test = load_dataset(bundled_data("dev")), load_dataset(bundled_data("test"))
    frame = pd.concat([dev[["fname", "dialogue"]], test[["fname", "dialogue"]],
                       bundled_train()[["fname", "dialogue"]]], ignore_index=True)
    return frame.iloc[:n].reset_index(drop=True)


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
        changes.update(packing="packed", max_tokens_per_batch=TINY_BUDGET[spec["kind"]], dataloader_num_workers=0,
                       max_length=TINY["new_tokens"], generation_batch_size=8)
    return dataclasses.replace(settings, **changes)


def model_config(spec: dict, config_kwargs: dict, tokenizer):
    from raysum.models.architectures import get_architecture

    kwargs = dict(config_kwargs, vocab_size=max(config_kwargs["vocab_size"], len(tokenizer)),
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if spec["kind"] == "seq2seq":
        kwargs.update(decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    return get_architecture(spec["architecture"]).build_config(**kwargs)


def build_checkpoint(spec: dict, config, tokenizer, target: Path, cuda: bool):
    """A random model of the shape, saved to `target` with the tokenizer."""
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
    started = time.perf_counter()
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return model, round(time.perf_counter() - started, 1)


# ---------------------------------------------------------------- counts no machine changes
def batch_counts(batch: dict, kind: str, loss_head_only: bool) -> dict:
    """The work of one collated batch, independent of the machine. Attention score elements
    are per layer and head (each Q x K product one element; causal kernels skip about half,
    the same half on every path). A packed row (`cu_seq_lens_q`, raysum's varlen attention)
    computes sum(len^2); `attention_dense_mask` is what sdpa's block-diagonal mask over the
    same row would, (sum len)^2. Padded rows compute rows x width^2; seq2seq sums encoder
    self (S^2), decoder self (T^2) and cross (T x S) attention per row. Logits rows: every
    position (transformers' default), or with `loss_head_only` the positions with a label."""
    import torch
    import torch.nn.functional as F

    ids, labels = batch["input_ids"], torch.as_tensor(batch["labels"])
    rows, width = ids.shape
    if kind == "seq2seq":
        target = labels.shape[1]
        source_lengths = batch["attention_mask"].sum(1)
        target_lengths = (labels != IGNORE_INDEX).sum(1)
        samples, real = rows, int(source_lengths.sum() + target_lengths.sum())
        computed = rows * (width + target)
        attention = dense = rows * (width**2 + target**2 + target * width)
        loss_rows = int(target_lengths.sum())
        logits_rows = loss_rows if loss_head_only else rows * target
        return _counts(samples, real, computed, attention, dense, logits_rows, loss_rows)
    loss_rows = int((F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:] != IGNORE_INDEX).sum())
    cu_seqlens = batch.get("cu_seq_lens_q")
    if cu_seqlens is not None:
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
        samples, real = len(lengths), int(lengths.sum())
        attention, dense = int((lengths**2).sum()), rows * width**2
    else:
        mask = batch.get("attention_mask")
        samples, real = rows, int(mask.sum()) if mask is not None else rows * width
        attention = dense = rows * width**2
    logits_rows = loss_rows if loss_head_only else rows * width
    return _counts(samples, real, rows * width, attention, dense, logits_rows, loss_rows)


def _counts(samples, real, computed, attention, dense, logits_rows, loss_rows) -> dict:
    return {"samples": samples, "real_tokens": real, "computed_tokens": computed, "attention_elements": attention,
            "attention_dense_mask": dense, "logits_rows": logits_rows, "loss_rows": loss_rows}


def epoch_counts(examples: list[dict], batches: list[list[int]], collator, kind: str, loss_head_only: bool) -> dict:
    """`batch_counts` of each batch (lists of example indices, in order) and their totals."""
    per_batch = [batch_counts(collator([examples[i] for i in b]), kind, loss_head_only) for b in batches]
    totals = {key: sum(c[key] for c in per_batch) for key in per_batch[0]}
    samples = totals["samples"]
    totals.update(
        micro_batches=len(per_batch),
        padding_efficiency=round(totals["real_tokens"] / totals["computed_tokens"], 4),
        computed_tokens_per_sample=round(totals["computed_tokens"] / samples, 1),
        attention_elements_per_sample=round(totals["attention_elements"] / samples),
        attention_dense_mask_per_sample=round(totals["attention_dense_mask"] / samples),
        logits_rows_per_sample=round(totals["logits_rows"] / samples, 1),
        loss_rows_per_sample=round(totals["loss_rows"] / samples, 1))
    return {"totals": totals, "per_batch": per_batch}


def plain_epoch_batches(examples: list[dict], batch_size: int, seed: int = 0) -> list[list[int]]:
    """One epoch of the plain Trainer's batches: transformers' `LengthGroupedSampler` (what
    group_by_length builds; by input length) cut into batches of `batch_size`."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    sampler = LengthGroupedSampler(batch_size, lengths=[len(e["input_ids"]) for e in examples],
                                   generator=torch.Generator().manual_seed(seed))
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def plain_collator(tokenizer, model=None):
    from transformers import DataCollatorForSeq2Seq

    tokenizer.padding_side = "right"
    return DataCollatorForSeq2Seq(tokenizer, model=model, padding=True, label_pad_token_id=IGNORE_INDEX)


def trainable_parameters(settings, config) -> tuple[int, int]:
    """(trainable, total) parameters of the unit's model (LoRA adapters, or all), counted on
    the meta device."""
    import torch

    from raysum.models.architectures import auto_model_class
    from raysum.models.loading import apply_lora

    with torch.device("meta"):
        model = auto_model_class(settings.kind).from_config(config)
        if settings.lora is not None:
            model = apply_lora(model, settings)
    return sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())


def modelled_auto_budget(settings, config, examples: list[dict], free_bytes: int = H200_FREE_BYTES) -> dict:
    """The budget `max_tokens_per_batch: auto` gives on an H200 (bf16): raysum's own formula
    (`activation_bytes_per_token`, `auto_max_tokens`) with the memory left after the weights
    (bf16 causal bases + fp32 adapters; fp32 full fine-tunes)."""
    from raysum.training.batching import activation_bytes_per_token, auto_max_tokens, example_lengths

    trainable, total = trainable_parameters(settings, config)
    weights = 4 * total if settings.lora is None else 2 * (total - trainable) + 4 * trainable
    lengths = [example_lengths(e, settings.kind) for e in examples]
    means = tuple(sum(column) / len(column) for column in zip(*lengths))
    per_token = activation_bytes_per_token(config, settings.kind, "bf16", settings.gradient_checkpointing,
                                           mean_lengths=means if settings.kind == "seq2seq" else None)
    return {"max_tokens_per_batch": auto_max_tokens(free_bytes - weights, per_token, trainable),
            "assumed_free_bytes": free_bytes - weights, "bytes_per_token": round(per_token),
            "trainable_params": trainable}


def raysum_planned_batches(settings, examples: list[dict], budget: int, packed: bool, seed: int = 0):
    """(batches of epoch 0, plan) of raysum's token-budget sampler for `budget`."""
    from raysum.training.batching import example_lengths, plan_token_batches

    sampler, plan = plan_token_batches(
        [example_lengths(e, settings.kind) for e in examples], max_tokens=budget, batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps, packed=packed, seed=seed)
    return sampler.epoch_batches(0), plan


# ---------------------------------------------------------------- timing
def step_clock(cuda: bool):
    """A Trainer callback that notes the (synchronised) time of each optimizer step's end and
    the peak GPU memory of training."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.started, self.ends, self.peak_bytes = None, [], None

        def on_train_begin(self, args, state, control, **kwargs):
            import torch

            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.ends.append(time.perf_counter())

        def on_train_end(self, args, state, control, **kwargs):
            import torch

            self.peak_bytes = torch.cuda.max_memory_allocated() if cuda else None

    return StepClock()


def timed_rate(clock, steps: list[tuple[int, int]], warm: int) -> dict:
    """Samples/s and real tokens/s over the optimizer steps after the first `warm`, from the
    clock's step ends and each step's (samples, real tokens)."""
    ends = clock.ends  # the plain collator may have made one batch more than the steps (prefetch)
    note = f"{len(ends)} steps timed, {len(steps)} counted" if len(ends) > len(steps) else None
    n = min(len(ends), len(steps))
    warm = warm if n > warm else 0
    start = ends[warm - 1] if warm else clock.started
    seconds = ends[n - 1] - start
    samples, tokens = (sum(s[i] for s in steps[warm:n]) for i in (0, 1))
    result = {"timed_steps": n - warm, "warm_steps": warm, "timed_s": round(seconds, 3), "timed_samples": samples,
              "samples_per_s": round(samples / seconds, 2), "real_tokens_per_s": round(tokens / seconds),
              "peak_GiB": round(clock.peak_bytes / 2**30, 2) if clock.peak_bytes is not None else None}
    if note:
        result["note"] = note
    return result


class RecordingCollator:
    """The plain collator, noting (samples, real tokens) of each batch it makes, in order."""

    def __init__(self, collator, kind: str):
        self.collator, self.kind, self.batches = collator, kind, []

    def __call__(self, features):
        batch = self.collator(features)
        counts = batch_counts(batch, self.kind, False)
        self.batches.append((counts["samples"], counts["real_tokens"]))
        return batch


def sampling_arguments() -> dict:
    """Length-grouped batches, in the spelling of the installed transformers."""
    from transformers import TrainingArguments

    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


# ---------------------------------------------------------------- plain transformers + peft
def plain_generate(model, tokenizer, settings, dialogues: list[str], batch: int, max_batches: int | None,
                   new_tokens: int = NEW_TOKENS) -> dict:
    """Input order, fixed batch, beam 4: how the seed's notebook generated."""
    import torch

    from raysum.models.prompts import encode_sources

    causal = settings.kind == "causal"
    tokenizer.padding_side = "left" if causal else "right"
    sources = encode_sources(tokenizer, settings, dialogues)
    batches = [sources[i:i + batch] for i in range(0, len(sources), batch)]
    timed = batches[:max_batches] if max_batches else batches
    device = next(model.parameters()).device
    model.eval()
    generated = 0
    with torch.inference_mode():
        warm = tokenizer.pad({"input_ids": batches[0][:2]}, return_tensors="pt").to(device)
        model.generate(**warm, num_beams=4, max_new_tokens=4)
        sync()
        started = time.perf_counter()
        for part in timed:
            inputs = tokenizer.pad({"input_ids": part}, return_tensors="pt").to(device)
            out = model.generate(**inputs, num_beams=4, max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[:, inputs["input_ids"].shape[1]:] if causal else out[:, 1:]
            generated += int((new != tokenizer.pad_token_id).sum())
        sync()
    seconds = time.perf_counter() - started
    total = seconds * len(batches) / len(timed)
    return {"batch": batch, "timed_batches": len(timed), "batches": len(batches), "timed_s": round(seconds, 2),
            "all_s": round(total, 2), "dialogues": len(dialogues), "estimated": len(timed) < len(batches),
            "mean_new_tokens": round(generated / sum(len(p) for p in timed), 1)}


def plain_train(model, tokenizer, settings, examples: list[dict], spec: dict, out_dir: Path, cuda: bool) -> dict:
    """`transformers.Trainer` (+ peft LoRA for causal LMs): length-grouped padded batches of
    `plain_batch`, bf16 on GPU, warm-up + timed steps."""
    from transformers import Trainer, TrainingArguments

    if settings.lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=settings.lora.r, lora_alpha=settings.lora.alpha, lora_dropout=settings.lora.dropout,
            target_modules=list(settings.lora.target_modules), task_type="CAUSAL_LM"))
    collator = RecordingCollator(plain_collator(tokenizer, model if settings.kind == "seq2seq" else None),
                                 settings.kind)
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=spec["warm"] + spec["plain_steps"],
        per_device_train_batch_size=spec["plain_batch"], learning_rate=settings.learning_rate, warmup_steps=0.1,
        bf16=cuda, use_cpu=not cuda, save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=10,
        remove_unused_columns=False, seed=0,
        **sampling_arguments())
    clock = step_clock(cuda)
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collator, callbacks=[clock])
    model.train()
    trainer.train()
    result = timed_rate(clock, collator.batches, spec["warm"])
    result.update(batch_size=spec["plain_batch"], sampler="group_by_length", attention="sdpa, padded",
                  logits="every position")
    return result


# ---------------------------------------------------------------- raysum
@contextlib.contextmanager
def watched_unit_training(clock):
    """While the block runs, the unit's Trainer gets `clock` and hands out what its batches
    are made of (its token-budget sampler, collator, examples, gradient accumulation)."""
    from raysum.training.trainer import UnitTrainer

    original, seen = UnitTrainer.train, {}

    def train(self, *args, **kwargs):
        self.add_callback(clock)
        seen.update(sampler=getattr(self, "token_batches", None), collator=self.data_collator,
                    examples=self.train_dataset, accumulation=self.args.gradient_accumulation_steps,
                    attention=self.model.config._attn_implementation if hasattr(self.model, "config") else None)
        return original(self, *args, **kwargs)

    UnitTrainer.train = train
    try:
        yield seen
    finally:
        UnitTrainer.train = original


def raysum_unit(settings, rows, generate, work: Path, warm: int, cuda: bool) -> tuple[dict, dict]:
    """Run the unit; returns (its timings, what its Trainer's batches were made of)."""
    import pandas as pd

    from raysum.training import run_unit

    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(inputs / "train.parquet", index=False)
    predict = {}
    if generate is not None:
        generate.to_parquet(inputs / "generate.parquet", index=False)
        predict = {"dev": str(inputs / "generate.parquet")}
    clock = step_clock(cuda)
    started = time.perf_counter()
    with watched_unit_training(clock) as seen:
        summary = run_unit({"unit_dir": str(work / "unit"), "model": dataclasses.asdict(settings), "seed": 0,
                            "train_path": str(inputs / "train.parquet"), "predict": predict})
    result = {"train_s": summary["train_s"],
              "epoch_samples_per_s": round(summary["train_samples"] / summary["train_s"], 2),
              "unit_wall_s": round(time.perf_counter() - started, 1), "precision": summary["precision"],
              "trainable_params": summary["trainable_params"], "device": summary["device"], "steps": summary["steps"],
              "batching": summary.get("batching"), "attention": seen.get("attention"),
              "packed": "cu_seq_lens_q" in (seen["collator"]([seen["examples"][0]]) if seen else {}),
              "logits": "summary tokens only" if settings.kind == "causal" else "every target position"}
    if generate is not None:
        predictions = pd.read_parquet(work / "unit" / "predictions.parquet")
        result.update(generate_s=summary["generate_s"], mean_new_tokens=round(float(predictions["n_tokens"].mean()), 1))
    return result, dict(seen, clock=clock)


def raysum_counts_and_rate(settings, seen: dict, warm: int) -> tuple[dict | None, dict | None]:
    """Counts of the unit's own batches (epoch 0 of its sampler, its collator) and the timed
    rate over its steps (micro-batches grouped by its gradient accumulation)."""
    if not seen or seen.get("sampler") is None:
        return None, None
    batches = seen["sampler"].epoch_batches(0)
    counts = epoch_counts(seen["examples"], batches, seen["collator"], settings.kind, settings.kind == "causal")
    accumulation = seen["accumulation"]
    per_batch = counts["per_batch"]
    steps = [(sum(c["samples"] for c in group), sum(c["real_tokens"] for c in group))
             for group in (per_batch[i:i + accumulation] for i in range(0, len(per_batch), accumulation))]
    return counts, timed_rate(seen["clock"], steps, warm)


# ---------------------------------------------------------------- one shape
def bench_shape(name: str, spec: dict, config_kwargs: dict, tokenizer, train, work: Path, cuda: bool, tiny: bool,
                generate_n: int | None) -> dict:
    import gc

    import torch

    from raysum.models import encode_examples

    checkpoint = work / name / "checkpoint"
    settings = unit_settings(name, spec, str(checkpoint), cuda, tiny)
    config = model_config(spec, config_kwargs, tokenizer)
    rows = realistic_rows(tokenizer, settings, spec["train_rows"], train)
    examples = encode_examples(tokenizer, settings, rows["dialogue"].tolist(), rows["summary"].tolist())
    model, save_s = build_checkpoint(spec, config, tokenizer, checkpoint, cuda)
    result = {"shape": name, "kind": spec["kind"], "preset": spec["preset"],
              "params": sum(p.numel() for p in model.parameters()), "save_s": save_s, "train_rows": len(rows),
              "lengths": length_stats(examples, spec["kind"])}
    generate = generation_dialogues(generate_n) if generate_n else None
    new_tokens = TINY["new_tokens"] if tiny else NEW_TOKENS
    if generate is not None:
        if cuda and spec["kind"] == "seq2seq":
            model.to(torch.bfloat16)
        gen_batches = spec["gen_batches"] and (2 if tiny else spec["gen_batches"])
        result["plain_generate"] = plain_generate(model, tokenizer, settings, generate["dialogue"].tolist(),
                                                  spec["seed_gen_batch"], gen_batches, new_tokens)
        print(name, "plain generate", result["plain_generate"], flush=True)
        if cuda and spec["kind"] == "seq2seq":
            model.float()  # full fine-tune: fp32 master weights with bf16 autocast, as raysum trains
    result["plain_train"] = plain_train(model, tokenizer, settings, examples, spec, work / name / "plain", cuda)
    print(name, "plain train", result["plain_train"], flush=True)
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        result["gpu_allocated_before_unit_GiB"] = round(torch.cuda.memory_allocated() / 2**30, 2)
    result["raysum"], seen = raysum_unit(settings, rows, generate, work / name, spec["warm"], cuda)
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
    shutil.rmtree(checkpoint, ignore_errors=True)
    return result


def planned_counts(settings, config, tokenizer, examples, tiny: bool) -> dict:
    """Counts from the batches raysum plans, without a model or GPU: on an H200 (full
    shapes: modelled `auto` budget, packed causal rows, padding to multiples of 8) or on
    the tiny CPU run (its fixed budget, no padding multiple)."""
    from raysum.training.collators import make_collator

    packed = settings.kind == "causal"
    if tiny:
        budget, modelled = settings.max_tokens_per_batch, None
    else:
        modelled = modelled_auto_budget(settings, config, examples)
        budget = modelled["max_tokens_per_batch"]
    batches, plan = raysum_planned_batches(settings, examples, budget, packed)
    collator = make_collator(settings, tokenizer, None, pad_to_multiple_of=None if tiny else 8, packed=packed)
    ours = epoch_counts(examples, batches, collator, settings.kind, settings.kind == "causal")
    ours["plan"] = plan.record()
    if modelled:
        ours["modelled_auto_budget"] = modelled
    return {"raysum": ours}


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


def _line(shape: str, measure: str, plain, ours, fmt: str = "{:,.2f}") -> str:
    ratio = f"{ours / plain:12.3f}x" if plain and ours is not None and plain is not None else ""
    show = (lambda v: fmt.format(v) if v is not None else "-")
    return f"{shape:16} {measure:24} {show(plain):>14} {show(ours):>14} {ratio:>13}"


def table(results: list[dict]) -> str:
    lines = [f"{'shape':16} {'measure':24} {'plain HF':>14} {'raysum':>14} {'raysum/plain':>13}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['shape']:16} error: {r['error'][:90]}")
            continue
        if "plain_train" in r:
            p, u = r["plain_train"], r["raysum"]
            lines.append(_line(r["shape"], "train samples/s", p["samples_per_s"], u.get("samples_per_s")))
            lines.append(_line(r["shape"], "train real tokens/s", p["real_tokens_per_s"], u.get("real_tokens_per_s"),
                               "{:,.0f}"))
            lines.append(_line(r["shape"], "train peak GiB", p["peak_GiB"], u.get("peak_GiB")))
        if "plain_generate" in r:
            g, u = r["plain_generate"], r["raysum"]
            est = " (est.)" if g["estimated"] else ""
            lines.append(_line(r["shape"], f"generate {g['dialogues']}: s{est}", g["all_s"], u["generate_s"]))
            lines.append(_line(r["shape"], "mean new tokens", g["mean_new_tokens"], u["mean_new_tokens"], "{:.1f}"))
        plain, ours = r["counts"]["plain"], r["counts"]["raysum"]
        for label, key, fmt in COUNT_ROWS:
            lines.append(_line(r["shape"], label, plain[key], ours[key], fmt))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/bench_gpu")
    parser.add_argument("--shapes", choices=["full", "tiny"], default="full")
    parser.add_argument("--only", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--counts-only", action="store_true", help="machine-independent counts; no model, no GPU")
    parser.add_argument("--no-generate", action="store_true", help="skip the generation rows")
    parser.add_argument("--rows", type=int, help="training rows of every shape (default: the shape's train_rows)")
    ns = parser.parse_args()
    import torch
    import transformers

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
           "mode": "counts-only" if ns.counts_only else "train"}
    train = bundled_train()
    tokenizer = sample_tokenizer(train)
    generate_n = None if ns.no_generate else (TINY["n_generate"] if tiny else N_GENERATE)
    results = []
    for name in ns.only:
        spec = dict(SHAPES[name], **({k: v for k, v in TINY.items() if k in SHAPES[name]} if tiny else {}))
        if ns.rows:
            spec["train_rows"] = ns.rows
        config_kwargs = TINY_CONFIGS[name] if tiny else spec["config"]
        started = time.perf_counter()
        try:
            if ns.counts_only:
                result = counts_shape(name, spec, config_kwargs, tokenizer, train, tiny)
            else:
                result = bench_shape(name, spec, config_kwargs, tokenizer, train, work, cuda, tiny, generate_n)
        except Exception as exc:  # one shape failing still reports the others
            import traceback

            traceback.print_exc()
            result = {"shape": name, "error": repr(exc)}
        result["wall_s"] = round(time.perf_counter() - started, 1)
        results.append(result)
        (out / "bench_gpu.json").write_text(json.dumps({"env": env, "results": results}, indent=1))
    print(json.dumps(env))
    print(table(results))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
