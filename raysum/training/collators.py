"""Batches for the two model kinds.

causal, packed (padding-free): a micro-batch is one row of concatenated examples
         (`DataCollatorWithFlattening`) with `position_ids` restarting at 0 for each
         example, no attention mask, and the example boundaries as flash-attention kwargs
         (`cu_seq_lens_q/k`, `max_length_q/k`), which transformers hands to every attention
         call. The unit trains such batches with `raysum_varlen` attention
         (raysum/training/attention.py): torch's varlen flash kernel on CUDA, one
         `scaled_dot_product_attention` per example elsewhere; no dense mask is built, so
         attention costs the sum of the examples' squared lengths, not (sum of lengths)^2.
         Under `sdpa` the same batch still trains correctly (transformers builds a dense
         block-diagonal mask from the position ids) but pays the (sum of lengths)^2; that
         detection needs `model.config.use_cache = False` (see `prepare_model_for_training`),
         otherwise the examples silently attend to each other.
causal, padded: examples padded to the longest of the batch (labels -100), batches grouped by
         length; what `packing: auto` picks where the varlen kernel is not available.
seq2seq: encoder inputs and labels padded to the longest example of the batch (labels with
         -100), decoder inputs shifted from the labels by the model.
Both kinds draw batches grouped by length (`train_sampling_strategy="group_by_length"`).

Packed and padded causal batches give the same loss and gradients (tests/test_packing.py,
tests/test_training_unit.py). No speed of the varlen path has been measured yet; the
measurements of packing under sdpa are in docs/performance.md.
"""

from __future__ import annotations

from raysum.models.prompts import IGNORE_INDEX


def make_collator(settings, tokenizer, model, pad_to_multiple_of: int | None = None, packed: bool = True):
    """The data collator of `settings.kind`; causal batches packed or padded (`packed`, see `use_packing`)."""
    if settings.kind == "causal" and packed:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX,
                                          return_flash_attn_kwargs=True)
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, model=model if settings.kind == "seq2seq" else None,
                                  label_pad_token_id=IGNORE_INDEX, padding=True,
                                  pad_to_multiple_of=pad_to_multiple_of)


def prepare_model_for_training(model) -> None:
    """No KV cache while training: a cache disables packed-sequence masking and wastes memory."""
    model.config.use_cache = False
