"""Batches for the two model kinds.

causal:  padding-free packing (`DataCollatorWithFlattening`): a micro-batch is one row of
         concatenated examples with `position_ids` restarting at 0 for each example and no
         attention mask; transformers' masking utils turn the position ids into a
         block-diagonal causal mask (sdpa/eager) or varlen boundaries (flash attention).
         They only do so when no KV cache is built, so training sets
         `model.config.use_cache = False` (see `prepare_model_for_training`); with a cache
         the examples silently attend to each other.
seq2seq: encoder inputs and labels padded to the longest example of the batch (labels with
         -100), decoder inputs shifted from the labels by the model.
Both kinds draw batches grouped by length (`train_sampling_strategy="group_by_length"`).

Packed and padded causal batches give the same loss (tests/test_training_unit.py). Speed,
measured with batches grouped by length: on an H200 (Llama-3.2-3B shape, LoRA, bf16,
batch 8, 150-512 tokens) packed sdpa 36 samples/s vs padded 37 (flex attention 30-34);
on 2 CPU cores (tiny-llama) packing costs 1.5x at batch 8 and 5x at batch 16, because
sdpa computes the whole block-diagonal (sum of lengths)^2 attention. Packing pays off
only with a varlen kernel (flash attention); `packed=False` gives padded batches.
"""

from __future__ import annotations

from raysum.models.prompts import IGNORE_INDEX


def make_collator(settings, tokenizer, model, pad_to_multiple_of: int | None = None, packed: bool = True):
    """The data collator of `settings.kind` (`packed=False`: padded causal batches, for comparison)."""
    if settings.kind == "causal" and packed:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, model=model if settings.kind == "seq2seq" else None,
                                  label_pad_token_id=IGNORE_INDEX, padding=True,
                                  pad_to_multiple_of=pad_to_multiple_of)


def prepare_model_for_training(model) -> None:
    """No KV cache while training: a cache disables packed-sequence masking and wastes memory."""
    model.config.use_cache = False
