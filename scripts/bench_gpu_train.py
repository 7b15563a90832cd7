"""The training rows of scripts/bench_gpu.py: plain `transformers.Trainer` + peft, and
raysum's unit (`run_unit`, no Ray), each timed over its optimizer steps after a warm-up."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

from bench_gpu_counts import batch_counts, epoch_counts, plain_collator


# ---------------------------------------------------------------- timing
def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


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


def raysum_unit(settings, rows, work: Path, cuda: bool) -> tuple[dict, dict]:
    """Run the unit (training only: the generation rows time raysum's engine on their own);
    returns (its timings, what its Trainer's batches were made of)."""
    from raysum.training import run_unit

    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(inputs / "train.parquet", index=False)
    clock = step_clock(cuda)
    started = time.perf_counter()
    with watched_unit_training(clock) as seen:
        summary = run_unit({"unit_dir": str(work / "unit"), "model": dataclasses.asdict(settings), "seed": 0,
                            "train_path": str(inputs / "train.parquet"), "predict": {}})
    result = {"train_s": summary["train_s"],
              "epoch_samples_per_s": round(summary["train_samples"] / summary["train_s"], 2),
              "unit_wall_s": round(time.perf_counter() - started, 1), "precision": summary["precision"],
              "trainable_params": summary["trainable_params"], "device": summary["device"], "steps": summary["steps"],
              "batching": summary.get("batching"), "attention": seen.get("attention"),
              "packed": "cu_seq_lens_q" in (seen["collator"]([seen["examples"][0]]) if seen else {}),
              "logits": "summary tokens only" if settings.kind == "causal" else "every target position"}
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

