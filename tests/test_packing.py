"""Padding-free packing through `raysum_varlen` attention: a packed row gives the padded
batch's loss and gradients on tiny Llama and Qwen3 (grouped-query heads), the per-example
fallback equals sdpa's dense block-diagonal attention, no dense mask is built, generation
still works, and `use_packing` picks varlen packing only where the kernel is there."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from raysum.config import load_preset
from raysum.models.architectures import get_architecture
from raysum.training import (
    attention,
    make_collator,
    prepare_model_for_training,
    use_packing,
)

CAUSAL = ("tiny-llama", "tiny-qwen3")
# (length, prompt tokens): the prompt carries no loss, as in encode_examples
SHAPES = ((7, 4), (12, 9), (5, 2), (16, 5), (9, 3))


def tiny_model(preset: str, dtype=torch.float32, device="cpu", seed=0):
    """The preset's model from its config with random weights, no KV cache (as in training)."""
    spec = dict(load_preset(preset).from_config)
    architecture = get_architecture(spec.pop("architecture"))
    config = architecture.build_config(**spec, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = architecture.build_model(config)
    prepare_model_for_training(model)
    return model.to(device=device, dtype=dtype)


def examples(shapes=SHAPES, vocab=2000, seed=1) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for length, prompt in shapes:
        ids = torch.randint(3, vocab, (length,), generator=generator).tolist()
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def padded_batch(rows: list[dict], pad_id=0) -> dict:
    width = max(len(r["input_ids"]) for r in rows)
    pad = [width - len(r["input_ids"]) for r in rows]
    return {
        "input_ids": torch.tensor([r["input_ids"] + [pad_id] * p for r, p in zip(rows, pad)]),
        "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * p for r, p in zip(rows, pad)]),
        "labels": torch.tensor([r["labels"] + [-100] * p for r, p in zip(rows, pad)]),
    }


def packed_batch(rows: list[dict]) -> dict:
    return make_collator(load_preset("tiny-llama"), None, None, packed=True)(rows)


def loss_and_grads(model, batch: dict, device="cpu"):
    model.zero_grad()
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    loss = model(**batch).loss
    loss.backward()
    return loss.detach().float(), {n: p.grad.detach().float().clone() for n, p in model.named_parameters()}


def assert_grads_close(expected: dict, actual: dict, rtol: float):
    for name, grad in expected.items():
        scale = grad.abs().max().clamp_min(1e-12)
        assert (actual[name] - grad).abs().max() / scale < rtol, name


@pytest.fixture
def count_calls(monkeypatch):
    """How often each path of the attention function ran."""
    calls = {"per_sequence": 0, "varlen": 0, "sdpa": 0}
    for name, key in (("_per_sequence", "per_sequence"), ("_varlen", "varlen"), ("sdpa_attention_forward", "sdpa")):
        original = getattr(attention, name)

        def counted(*args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(attention, name, counted)
    return calls


def test_packed_collator_returns_the_example_boundaries():
    rows = examples()
    batch = packed_batch(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    assert batch["cu_seq_lens_q"].tolist() == [0, *torch.tensor(lengths).cumsum(0).tolist()]
    assert batch["max_length_q"] == max(lengths)


@pytest.mark.parametrize("preset", CAUSAL)
def test_packed_varlen_loss_and_gradients_equal_the_padded_batch(preset, count_calls):
    model = tiny_model(preset)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped-query attention
    rows = examples()
    padded_loss, padded_grads = loss_and_grads(model, padded_batch(rows))  # sdpa, padding mask

    attention.use_varlen_attention(model)
    assert model.config._attn_implementation == attention.ATTENTION
    packed_loss, packed_grads = loss_and_grads(model, packed_batch(rows))

    assert count_calls["per_sequence"] == model.config.num_hidden_layers  # the packed path ran, once per layer
    assert count_calls["sdpa"] == 0
    assert packed_loss.item() == pytest.approx(padded_loss.item(), rel=1e-5)
    assert_grads_close(padded_grads, packed_grads, rtol=1e-5)


@pytest.mark.parametrize("preset", CAUSAL)
def test_packed_rows_found_from_position_ids_alone(preset, count_calls):
    """A packed row without cu_seq_lens (and even with a KV cache, which hides packing from
    sdpa's masks) still attends per example."""
    model = tiny_model(preset)
    rows = examples()
    with torch.no_grad():
        expected = model(**packed_batch(rows)).loss
        attention.use_varlen_attention(model)
        batch = {k: v for k, v in packed_batch(rows).items() if k in ("input_ids", "labels", "position_ids")}
        model.config.use_cache = True
        found = model(**batch).loss
    assert count_calls["per_sequence"] == model.config.num_hidden_layers
    assert found.item() == pytest.approx(expected.item(), rel=1e-5)


def block_diagonal_sdpa(q, k, v, lengths: list[int]):
    """(1, heads, T, dim) attention under sdpa with a dense block-diagonal causal mask."""
    seq = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    mask = (seq[:, None] == seq[None, :]) & torch.ones(len(seq), len(seq), dtype=torch.bool).tril()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


class _Attention(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 2


def test_fallback_equals_dense_block_diagonal_sdpa():
    torch.manual_seed(0)
    lengths = [5, 1, 9, 3]
    total = sum(lengths)
    q, k, v = torch.randn(1, 4, total, 16), torch.randn(1, 2, total, 16), torch.randn(1, 2, total, 16)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    out, _ = attention.varlen_attention_forward(_Attention(), q, k, v, None, scaling=16 ** -0.5,
                                                cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=9, max_length_k=9)
    expected = block_diagonal_sdpa(q, k, v, lengths).transpose(1, 2)
    assert out.shape == (1, total, 4, 16)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_kernel_path_calls_varlen_with_the_row_and_a_causal_window(monkeypatch):
    """The CUDA path's call, checked on CPU with a stand-in kernel: flat (tokens, heads, dim)
    tensors in half precision, int32 boundaries, the collator's max length, a causal window
    and grouped-query heads left to the kernel."""
    seen = {}

    def fake_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
        seen.update(shapes=(q.shape, k.shape), dtype=q.dtype, cu=cu_q.tolist(), cu_dtype=cu_q.dtype, max=(max_q, max_k),
                    window=window_size, gqa=enable_gqa, scale=scale)
        lengths = (cu_q[1:] - cu_q[:-1]).tolist()
        as_batch = [t.float().transpose(0, 1).unsqueeze(0) for t in (q, k, v)]
        return block_diagonal_sdpa(*as_batch, lengths)[0].transpose(0, 1).to(q.dtype)

    monkeypatch.setattr(attention, "varlen_kernel", lambda: fake_varlen)
    monkeypatch.setattr(attention, "_half_dtype", lambda q: torch.bfloat16)
    torch.manual_seed(0)
    lengths = [4, 7, 2]
    q, k, v = torch.randn(1, 4, 13, 16), torch.randn(1, 2, 13, 16), torch.randn(1, 2, 13, 16)
    cu = torch.tensor([0, 4, 11, 13], dtype=torch.int32)
    out, _ = attention.varlen_attention_forward(_Attention(), q, k, v, None, scaling=0.25, cu_seq_lens_q=cu,
                                                cu_seq_lens_k=cu, max_length_q=7, max_length_k=7)
    assert seen == {"shapes": ((13, 4, 16), (13, 2, 16)), "dtype": torch.bfloat16, "cu": [0, 4, 11, 13],
                    "cu_dtype": torch.int32, "max": (7, 7), "window": (-1, 0), "gqa": True, "scale": 0.25}
    assert out.dtype == torch.float32 and out.shape == (1, 13, 4, 16)
    expected = block_diagonal_sdpa(q, k, v, lengths).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=2e-2, atol=2e-2)


def test_kernel_of_an_older_torch_gets_is_causal_and_repeated_heads(monkeypatch):
    """torch 2.10/2.11's `varlen_attn` takes `is_causal` and no `enable_gqa`: the key/value
    heads are repeated to the query heads' count before the call."""
    seen = {}

    def old_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, is_causal=False, return_aux=None, scale=None):
        seen.update(heads=(q.shape[1], k.shape[1]), causal=is_causal)
        lengths = (cu_q[1:] - cu_q[:-1]).tolist()
        as_batch = [t.float().transpose(0, 1).unsqueeze(0) for t in (q, k, v)]
        return block_diagonal_sdpa(*as_batch, lengths)[0].transpose(0, 1).to(q.dtype)

    monkeypatch.setattr(attention, "varlen_kernel", lambda: old_varlen)
    monkeypatch.setattr(attention, "_half_dtype", lambda q: torch.bfloat16)
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 13, 16), torch.randn(1, 2, 13, 16), torch.randn(1, 2, 13, 16)
    cu = torch.tensor([0, 4, 11, 13], dtype=torch.int32)
    out, _ = attention.varlen_attention_forward(_Attention(), q, k, v, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                                max_length_q=7, max_length_k=7)
    assert seen == {"heads": (4, 4), "causal": True}
    expected = block_diagonal_sdpa(q, k, v, [4, 7, 2]).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=2e-2, atol=2e-2)


def test_no_dense_mask_is_built_for_packed_rows():
    from transformers.masking_utils import create_causal_mask

    model = tiny_model("tiny-llama")
    batch = packed_batch(examples())
    embeds = model.get_input_embeddings()(batch["input_ids"])
    kwargs = dict(inputs_embeds=embeds, attention_mask=None, cache=None, position_ids=batch["position_ids"])
    dense = create_causal_mask(config=model.config, **kwargs)  # sdpa: the (sum of lengths)^2 block-diagonal mask
    assert dense is not None and dense.shape[-2:] == (embeds.shape[1], embeds.shape[1])
    attention.use_varlen_attention(model)
    assert create_causal_mask(config=model.config, **kwargs) is None
    padding = torch.ones(2, 6, dtype=torch.long)
    padding[0, :2] = 0  # a left-padded batch still gets sdpa's mask
    assert create_causal_mask(config=model.config, inputs_embeds=embeds[:, :6].expand(2, -1, -1),
                              attention_mask=padding, cache=None) is not None


@pytest.mark.parametrize("preset", CAUSAL)
def test_generation_with_varlen_attention_equals_sdpa(preset, count_calls):
    """A model set to raysum_varlen (as after packed training) generates exactly as under sdpa."""
    model = tiny_model(preset).eval()
    model.config.use_cache = True
    prompts = [r["input_ids"] for r in examples(((6, 0), (10, 0), (3, 0)), seed=3)]
    width = max(map(len, prompts))
    inputs = {  # left padding, as the unit generates
        "input_ids": torch.tensor([[0] * (width - len(p)) + p for p in prompts]),
        "attention_mask": torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts]),
    }
    settings = dict(max_new_tokens=8, do_sample=False, num_beams=1, pad_token_id=0, eos_token_id=None)
    expected = model.generate(**inputs, **settings)
    attention.use_varlen_attention(model)
    assert model.generate(**inputs, **settings).tolist() == expected.tolist()
    assert count_calls["sdpa"] > 0 and count_calls["per_sequence"] == 0


@pytest.mark.parametrize("packing, cuda, kernel, precision, expected", [
    ("auto", False, False, "auto", False),
    ("auto", False, True, "auto", False),
    ("auto", True, False, "auto", False),   # GPU without a working varlen kernel: padded
    ("auto", True, True, "auto", True),
    ("auto", True, True, "fp32", False),    # flash kernels run in half precision only
    ("packed", False, False, "auto", True),  # asked for: the per-example fallback
    ("packed", True, True, "auto", True),
    ("padded", True, True, "auto", False),
    ("padded", False, False, "auto", False),
])
def test_use_packing_decisions(monkeypatch, packing, cuda, kernel, precision, expected):
    monkeypatch.setattr(attention, "varlen_available", lambda: kernel)
    settings = dataclasses.replace(load_preset("tiny-llama"), packing=packing, precision=precision)
    assert use_packing(settings, cuda) is expected


def test_varlen_kernel_needs_cuda(monkeypatch):
    attention.varlen_available.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    try:
        assert attention.varlen_available() is False
    finally:
        attention.varlen_available.cache_clear()


def test_sliding_window_models_are_refused():
    spec = dict(load_preset("tiny-qwen3").from_config)
    architecture = get_architecture(spec.pop("architecture"))
    config = architecture.build_config(**spec, use_sliding_window=True, sliding_window=4, max_window_layers=1)
    with pytest.raises(ValueError, match="sliding_attention"):
        attention.use_varlen_attention(architecture.build_model(config))


def test_packed_batch_with_a_sliding_window_is_an_explicit_error():
    """Not built: the attention function itself refuses a sliding window on a packed batch
    (use_varlen_attention keeps such models away from it; this guards a direct call)."""
    q, k = torch.randn(1, 4, 6, 16), torch.randn(1, 2, 6, 16)
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    with pytest.raises(NotImplementedError, match="packed batches with sliding-window attention"):
        attention.varlen_attention_forward(_Attention(), q, k, k, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                           max_length_q=4, max_length_k=4, sliding_window=4)
    # an ordinary (unpacked) batch with a window is not this function's to refuse: it goes to sdpa
    out, _ = attention.varlen_attention_forward(_Attention(), q, k, k, None, sliding_window=4)
    assert out.shape == (1, 6, 4, 16)


@pytest.mark.slow
def test_packed_unit_trains_per_example_and_generates(tmp_path, count_calls):
    """A whole unit with `packing: packed` on CPU: training and evaluation run the
    per-example path, and generation after training (same model, still set to
    raysum_varlen) goes through sdpa and writes its predictions."""
    from test_training_unit import korean_examples, unit_config

    from raysum.training import run_unit

    frame = korean_examples(20)
    frame.head(12).to_parquet(tmp_path / "train.parquet")
    frame.iloc[12:16].to_parquet(tmp_path / "eval.parquet")
    for split in ("oof", "dev", "test"):
        frame.iloc[16:20][["fname", "dialogue"]].to_parquet(tmp_path / f"{split}.parquet")
    config = unit_config(tmp_path, tmp_path / "unit", "tiny-llama", epochs=1, batch_size=4, packing="packed")
    config["predict"] = {"dev": config["predict"]["dev"]}
    summary = run_unit(config)
    assert count_calls["per_sequence"] >= 2 * (3 + 1)  # 2 layers x (3 training steps + 1 evaluation batch)
    assert count_calls["sdpa"] > 0  # generation
    assert summary["predictions"] == {"dev": 4}
    assert torch.isfinite(torch.tensor([summary["train_loss"], summary["eval_loss"]])).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("preset", CAUSAL)
def test_varlen_kernel_on_cuda_matches_the_padded_batch(preset, count_calls):
    """The real varlen kernel, bf16: same loss and gradients as the padded sdpa batch
    within bf16 tolerances, and the same attention output as the per-example fallback."""
    assert attention.varlen_available()
    model = tiny_model(preset, dtype=torch.bfloat16, device="cuda")
    rows = examples(((70, 30), (130, 90), (17, 5), (256, 100), (64, 10)))
    padded_loss, padded_grads = loss_and_grads(model, padded_batch(rows), device="cuda")
    attention.use_varlen_attention(model)
    packed_loss, packed_grads = loss_and_grads(model, packed_batch(rows), device="cuda")
    assert count_calls["varlen"] == model.config.num_hidden_layers and count_calls["per_sequence"] == 0
    assert packed_loss.item() == pytest.approx(padded_loss.item(), rel=2e-2)
    for name, grad in padded_grads.items():
        cosine = F.cosine_similarity(grad.flatten(), packed_grads[name].flatten(), dim=0)
        assert cosine > 0.98, name

    torch.manual_seed(0)
    lengths = [50, 1, 200, 33]
    total = sum(lengths)
    q = torch.randn(1, 4, total, 64, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, 2, total, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    out, _ = attention.varlen_attention_forward(_Attention(), q, k, v, None, scaling=0.125, cu_seq_lens_q=cu,
                                                cu_seq_lens_k=cu, max_length_q=200, max_length_k=200)
    expected = block_diagonal_sdpa(q.float().cpu(), k.float().cpu(), v.float().cpu(), lengths).transpose(1, 2)
    torch.testing.assert_close(out.float().cpu(), expected, rtol=2e-2, atol=2e-2)
