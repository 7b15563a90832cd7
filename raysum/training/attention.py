"""Padding-free attention for packed causal batches, registered with transformers as
`attn_implementation="raysum_varlen"`.

A packed batch is one row of concatenated examples whose boundaries arrive as the
flash-attention kwargs `cu_seq_lens_q/k` and `max_length_q/k` (the packing collator
returns them; transformers passes a model forward's extra kwargs down to every attention
call). With `sdpa`, transformers turns such a row into a dense block-diagonal mask and
attends over all (sum of lengths)^2 pairs; here no mask is built (`raysum_varlen` has an
entry in `AttentionMaskInterface` that returns none) and each example attends only to
itself:

    CUDA, half precision, torch's varlen kernel importable (`torch.nn.attention.varlen`):
        one `varlen_attn` call over the whole row, causal, grouped-query heads native;
    otherwise (CPU, fp32, older torch): `scaled_dot_product_attention` once per example,
        causal, grouped-query heads through `enable_gqa` (correct, slower).

Everything that is not a packed batch (padded batches, the prompt and every step of
`generate`) goes to transformers' own sdpa function with sdpa's own mask, so a model set
to `raysum_varlen` still generates. Packed position ids without `cu_seq_lens_*` (e.g. a
batch from a collator that only returns position ids) are found from the position ids.

Only for models whose layers all use full causal attention (Llama, Qwen3): sliding-window
layers are refused by `use_varlen_attention`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import (
    AttentionMaskInterface,
    causal_mask_function,
    sdpa_mask,
)

ATTENTION = "raysum_varlen"
HALF = (torch.float16, torch.bfloat16)


def varlen_kernel():
    """torch's `varlen_attn` (torch >= 2.10, CUDA flash attention), or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@functools.cache
def varlen_available() -> bool:
    """Whether packed batches can run on the varlen kernel here: CUDA, the kernel importable,
    and one tiny causal grouped-query call on the current GPU succeeding (flash attention
    needs compute capability 8.0+; older GPUs raise)."""
    kernel = varlen_kernel()
    if kernel is None or not torch.cuda.is_available():
        return False
    try:
        q = torch.randn(8, 4, 64, device="cuda", dtype=torch.bfloat16)
        kv = torch.randn(8, 2, 64, device="cuda", dtype=torch.bfloat16)
        cu = torch.tensor([0, 3, 8], device="cuda", dtype=torch.int32)
        out = _call_kernel(kernel, q, kv, kv, cu, 5, None, causal=True)
        torch.cuda.synchronize()
    except (RuntimeError, ValueError, TypeError, NotImplementedError):
        return False
    return bool(torch.isfinite(out).all())


def use_varlen_attention(model) -> None:
    """Set `model` (a causal LM, possibly wrapped by peft) to `raysum_varlen`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layer_types = getattr(base.config, "layer_types", None) or []
    if any(kind != "full_attention" for kind in layer_types):
        raise ValueError(f"{ATTENTION} supports full causal attention only; {type(base).__name__} has layers "
                         f"{sorted(set(layer_types))}")
    base.set_attn_implementation(ATTENTION)


# ---------------------------------------------------------------- the attention function
def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' attention signature: query (batch, heads, length, dim), key/value
    (batch, kv_heads, length, dim); returns ((batch, length, heads, dim), None)."""
    bounds = _sequence_bounds(query, key, attention_mask, kwargs)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if kwargs.get("sliding_window") is not None:
        raise NotImplementedError(f"{ATTENTION}: packed batches with sliding-window attention")
    cu_seqlens, max_length = bounds
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    batch, heads, length, _ = query.shape
    q, k, v = (t.transpose(1, 2).reshape(batch * length, t.shape[1], t.shape[3]) for t in (query, key, value))
    half = _half_dtype(q)
    if half is not None and dropout == 0.0 and (kernel := varlen_kernel()) is not None:
        out = _varlen(kernel, q, k, v, cu_seqlens, max_length, scaling, causal, half)
    else:
        out = _per_sequence(q, k, v, cu_seqlens, scaling, causal, dropout)
    return out.reshape(batch, length, heads, v.shape[-1]), None


def _sequence_bounds(query, key, attention_mask, kwargs) -> tuple[torch.Tensor, int | None] | None:
    """(cu_seqlens, max length) of a packed batch; None for anything else."""
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is not None:
        if key.shape[2] != query.shape[2]:
            raise ValueError(f"{ATTENTION}: packed batches without a KV cache only "
                             f"(query {query.shape[2]} tokens, keys {key.shape[2]})")
        return cu_seqlens, kwargs.get("max_length_q")
    position_ids = kwargs.get("position_ids")
    if attention_mask is not None or position_ids is None or query.shape[2] == 1 or key.shape[2] != query.shape[2]:
        return None
    return _bounds_from_position_ids(position_ids, query.shape[0])


def _bounds_from_position_ids(position_ids: torch.Tensor, batch: int):
    """Sequences start at every row start and wherever a position does not follow its
    predecessor; None when each row holds one sequence (an ordinary batch)."""
    rows = position_ids.expand(batch, -1)
    starts = torch.ones_like(rows, dtype=torch.bool)
    starts[:, 1:] = rows[:, 1:] != rows[:, :-1] + 1
    starts = starts.reshape(-1)
    if int(starts.sum()) == batch:
        return None
    cu_seqlens = torch.cat([starts.nonzero().view(-1), torch.tensor([starts.numel()], device=starts.device)])
    return cu_seqlens.to(torch.int32), None


def _half_dtype(q: torch.Tensor):
    """The half-precision dtype the varlen kernel runs in, or None (CPU, or fp32 without autocast)."""
    if not q.is_cuda:
        return None
    if q.dtype in HALF:
        return q.dtype
    if torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") in HALF:
        return torch.get_autocast_dtype("cuda")
    return None


def _varlen(kernel, q, k, v, cu_seqlens, max_length, scaling, causal: bool, dtype):
    """One kernel call over the whole row; no host sync when the collator gave max_length."""
    cu_seqlens = cu_seqlens.to(device=q.device, dtype=torch.int32)
    if max_length is None:
        max_length = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    out = _call_kernel(kernel, q.to(dtype), k.to(dtype), v.to(dtype), cu_seqlens, int(max_length), scaling, causal)
    return out.to(q.dtype)


def _call_kernel(kernel, q, k, v, cu_seqlens, max_length: int, scaling, causal: bool):
    """`varlen_attn` across torch versions: newer ones take `window_size` and `enable_gqa`;
    torch 2.10/2.11 take `is_causal` and need as many key/value heads as query heads."""
    import inspect

    parameters = inspect.signature(kernel).parameters
    if k.shape[1] != q.shape[1] and "enable_gqa" not in parameters:
        repeat = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    options = {"scale": scaling}
    if "window_size" in parameters:
        options["window_size"] = (-1, 0) if causal else (-1, -1)
    else:
        options["is_causal"] = causal
    if k.shape[1] != q.shape[1]:
        options["enable_gqa"] = True
    return kernel(q, k, v, cu_seqlens, cu_seqlens, max_length, max_length, **options)


def _per_sequence(q, k, v, cu_seqlens, scaling, causal: bool, dropout: float):
    """sdpa over each example on its own: the same numbers as the block-diagonal mask,
    without the (sum of lengths)^2 work."""
    bounds = [int(b) for b in cu_seqlens.tolist()]
    if bounds[-1] != q.shape[0]:
        raise ValueError(f"{ATTENTION}: cu_seq_lens end at {bounds[-1]}, the batch has {q.shape[0]} tokens")
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:
            continue
        q_i, k_i, v_i = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q_i, k_i, v_i, dropout_p=dropout, is_causal=causal, scale=scaling,
                                             enable_gqa=k.shape[1] != q.shape[1])
        outputs.append(out[0].transpose(0, 1))
    return torch.cat(outputs)


# ---------------------------------------------------------------- the mask
def varlen_attention_mask(batch_size: int, q_length: int, kv_length: int, q_offset=0, kv_offset=0,
                          mask_function=causal_mask_function, attention_mask=None, **kwargs):
    """No mask where the attention function needs none: no padding and no cached keys,
    i.e. a causal row or a packed one (whose boundaries the attention function reads
    from cu_seq_lens or position ids). Anything else, and masks with extra mask functions
    (`use_vmap`), gets sdpa's mask."""
    if attention_mask is None and q_length == kv_length and not kwargs.get("use_vmap"):
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, mask_function=mask_function, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(ATTENTION, varlen_attention_forward)
AttentionMaskInterface.register(ATTENTION, varlen_attention_mask)
