"""How many dialogues one generation batch holds: length-sorted batches within a token
budget, rows × (prompt + max new tokens).

On CUDA the budget comes from free memory and the KV cache's bytes per token (layers ×
kv heads × head dim × 2 (keys and values) × dtype bytes × beams); the logits of a step
and the prefill's widest activations are set aside first. On CPU it is a fixed budget
equal to `generation_batch_size` rows of the longest prompt: the batches are
`generation_batch_size` rows, as before the budget. `generation_batch_size` stays an
upper bound on rows everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

HEADROOM = 0.8  # of the usable GPU memory: the allocator's fragmentation, what the estimate leaves out
LOGIT_COPIES = 3  # fp32 logits of a step, their log-softmax, the processors' copy


def plan_batches(lengths: list[int], max_new: int, max_rows: int,
                 rows_for: Callable[[int], int]) -> list[list[int]]:
    """Source indices in batches, longest first (equal lengths in input order); a batch
    whose longest prompt has L tokens holds `rows_for(L + max_new)` rows, at most `max_rows`."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, start = [], 0
    while start < len(order):
        rows = max(1, min(max_rows, rows_for(lengths[order[start]] + max_new)))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def fixed_rows(budget: int) -> Callable[[int], int]:
    """Rows of a fixed token budget: budget // tokens per row."""
    return lambda row_tokens: budget // max(1, row_tokens)


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """KV-cache bytes of one token of one sequence: decoder layers × kv heads × head dim ×
    2 × dtype bytes (a seq2seq model's cross-attention holds as much per source token)."""
    layers = getattr(config, "decoder_layers", None) or config.num_hidden_layers
    query_heads = getattr(config, "decoder_attention_heads", None) or config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or query_heads
    hidden = getattr(config, "hidden_size", None) or config.d_model
    head_dim = getattr(config, "head_dim", None) or hidden // query_heads
    return layers * kv_heads * head_dim * 2 * dtype_bytes


def cuda_rows(config, dtype_bytes: int, beams: int, usable_bytes: float, max_rows: int) -> Callable[[int], int]:
    """Rows whose KV cache fits the usable GPU memory, after each row's step logits and
    the prefill's widest activation (the MLP's, per prompt token) are set aside."""
    kv = kv_bytes_per_token(config, dtype_bytes) * beams
    hidden = getattr(config, "hidden_size", None) or config.d_model
    width = getattr(config, "intermediate_size", None) or getattr(config, "decoder_ffn_dim", None) or 4 * hidden
    prefill = (2 * width + 2 * hidden) * dtype_bytes
    per_row = beams * config.vocab_size * 4 * LOGIT_COPIES
    left = usable_bytes * HEADROOM - max_rows * per_row

    def rows_for(row_tokens: int) -> int:
        return max(1, int(left // (row_tokens * (kv + prefill)))) if left > 0 else 1

    return rows_for


def usable_gpu_memory(device, share: float = 1.0) -> int:
    """Bytes generation may fill on `device`: what is free plus what torch's allocator holds
    unused; with a fraction of a GPU (units sharing one) no more than that share beyond
    what this process already uses."""
    import torch

    free, total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    usable = free + cached
    if share < 1:
        usable = min(usable, total * share - torch.cuda.memory_allocated(device))
    return int(max(0, usable))
