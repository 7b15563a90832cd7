"""Counts of scripts/bench_gpu.py's training rows that no machine changes: the work of each
side's batches over one epoch (padding, attention score elements, vocabulary-head rows), and
the batches raysum plans with `max_tokens_per_batch: auto` modelled for an H200."""

from __future__ import annotations

IGNORE_INDEX = -100
# An H200 as torch sees it after a unit loaded its model: 143,771 MiB (nvidia-smi) less ~1 GiB
# of CUDA context and workspaces, less the weights (see modelled_auto_budget).
H200_FREE_BYTES = (143_771 - 1024) * 2**20


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
    from raysum.training.batching import (
        activation_bytes_per_token,
        auto_max_tokens,
        example_lengths,
    )

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

