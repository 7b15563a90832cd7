"""The head only where the loss is: `UnitTrainer.compute_loss` computes the vocabulary
logits of a causal LM only at label positions, and its loss and gradients equal
transformers' full-logits `ForCausalLMLoss` (with and without `num_items_in_batch`,
packed and padded batches, LoRA); seq2seq models keep the default loss."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch
from test_packing import examples, packed_batch, padded_batch, tiny_model

from raysum.config import load_preset
from raysum.models import apply_lora
from raysum.models.architectures import get_architecture
from raysum.training import attention
from raysum.training.trainer import UnitTrainer

CAUSAL = ("tiny-llama", "tiny-qwen3")


def lora_settings(preset: str, **changes):
    lora = dataclasses.replace(load_preset("qwen3-4b").lora, r=4, dropout=0.0)
    return dataclasses.replace(load_preset(preset), lora=lora, **changes)


def lora_model(preset: str):
    """A tiny causal model with LoRA adapters whose B matrices are random (not peft's zeros),
    so every adapter gets a gradient."""
    model = apply_lora(tiny_model(preset), lora_settings(preset))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.05)
    return model


def unit_trainer(model, tmp_path, cls=UnitTrainer, cpu=True):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=cpu, report_to=[], per_device_train_batch_size=4)
    trainer = cls(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; training_step reads it
    return trainer


def label_tokens(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


@pytest.fixture
def head_rows():
    """Rows of hidden states that reached `lm_head`, per forward call."""
    rows: list[int] = []

    def attach(model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return base.lm_head.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[:-1].numel()))

    attach.rows = rows
    return attach


def grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def batches(kind: str) -> dict:
    rows = examples()
    return packed_batch(rows) if kind == "packed" else padded_batch(rows)


@pytest.mark.parametrize("preset", CAUSAL)
@pytest.mark.parametrize("kind", ["packed", "padded"])
@pytest.mark.parametrize("with_items", [True, False])
def test_loss_from_label_positions_equals_the_full_logits_loss(preset, kind, with_items, tmp_path, head_rows):
    model = lora_model(preset)
    if kind == "packed":
        attention.use_varlen_attention(model)  # as a packed unit trains
    trainer = unit_trainer(model, tmp_path)
    assert trainer.loss_head_only and trainer.model_accepts_loss_kwargs
    batch = batches(kind)
    n_items = torch.tensor(label_tokens(batch) + 3) if with_items else None  # e.g. counted over accumulated batches
    hook = head_rows(model)

    model.zero_grad()
    full = model(**batch, **({"num_items_in_batch": n_items} if with_items else {})).loss  # ForCausalLMLoss
    full.backward()
    expected = grads(model)

    model.zero_grad()
    loss = trainer.compute_loss(model, batch, num_items_in_batch=n_items)
    loss.backward()
    hook.remove()

    assert head_rows.rows == [batch["input_ids"].numel(), label_tokens(batch)]  # full head, then label rows only
    assert label_tokens(batch) < batch["input_ids"].numel()
    assert loss.item() == pytest.approx(full.item(), rel=1e-5)
    assert expected and all(g.abs().max() > 0 for g in expected.values())
    for name, grad in grads(model).items():
        assert (grad - expected[name]).abs().max() <= 1e-5 * expected[name].abs().max(), name


@pytest.mark.parametrize("kind", ["packed", "padded"])
def test_a_transformers_without_mask_slicing_keeps_positions(kind, tmp_path, monkeypatch):
    """Older transformers take `logits_to_keep` as positions only: the positions with a
    label in any row are kept, then each row's own; same loss and gradients."""
    from raysum.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "keeps_by_mask", lambda: False)
    model = lora_model("tiny-llama")
    if kind == "packed":
        attention.use_varlen_attention(model)
    trainer = unit_trainer(model, tmp_path)
    batch = batches(kind)
    model.zero_grad()
    full = model(**batch).loss
    full.backward()
    expected = grads(model)
    model.zero_grad()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    assert loss.item() == pytest.approx(full.item(), rel=1e-5)
    for name, grad in grads(model).items():
        assert (grad - expected[name]).abs().max() <= 1e-5 * expected[name].abs().max(), name


@pytest.mark.parametrize("kind", ["packed", "padded"])
def test_training_step_equals_the_default_trainers(kind, tmp_path, head_rows):
    """Through `training_step` (accelerator backward, gradient-accumulation scaling): the
    same loss and gradients as transformers' Trainer, from fewer logits rows."""
    from transformers import Trainer

    batch = batches(kind)
    n_items = torch.tensor(label_tokens(batch))
    results = []
    for cls in (Trainer, UnitTrainer):
        model = lora_model("tiny-llama")
        hook = head_rows(model)
        loss = unit_trainer(model, tmp_path / cls.__name__, cls).training_step(model, dict(batch), n_items)
        hook.remove()
        results.append((loss.item(), grads(model)))
    (default_loss, default_grads), (loss, unit_grads) = results
    assert head_rows.rows == [batch["input_ids"].numel(), label_tokens(batch)]
    assert loss == pytest.approx(default_loss, rel=1e-5)
    for name, grad in default_grads.items():
        assert (unit_grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


def test_seq2seq_keeps_the_default_loss(tmp_path, head_rows):
    spec = dict(load_preset("tiny-bart").from_config)
    architecture = get_architecture(spec.pop("architecture"))
    model = architecture.build_model(architecture.build_config(
        **spec, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2))
    trainer = unit_trainer(model, tmp_path)
    assert not trainer.loss_head_only
    rows = examples(((9, 0), (6, 0)))
    batch = {"input_ids": padded_batch(rows)["input_ids"], "attention_mask": padded_batch(rows)["attention_mask"],
             "labels": torch.tensor([[5, 6, 7, 2], [8, 9, 2, -100]])}
    with torch.no_grad():
        expected = model(**batch).loss
        hook = head_rows(model)
        loss = trainer.compute_loss(model, batch)
        hook.remove()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert head_rows.rows == [batch["labels"].numel()]  # every decoder position, as before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_loss_from_label_positions_equals_the_full_logits_loss(tmp_path, head_rows):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tiny_model("tiny-llama").save_pretrained(tmp_path / "base")
    quantized = AutoModelForCausalLM.from_pretrained(
        tmp_path / "base", device_map={"": 0}, dtype=torch.bfloat16,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_compute_dtype=torch.bfloat16))
    model = apply_lora(quantized, lora_settings("tiny-llama", quantization="nf4"))
    model.config.use_cache = False
    trainer = unit_trainer(model, tmp_path / "out", cpu=False)
    batch = {k: v.cuda() for k, v in padded_batch(examples()).items()}
    n_items = torch.tensor(label_tokens(batch), device="cuda")
    hook = head_rows(model)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        full = model(**batch, num_items_in_batch=n_items).loss
        loss = trainer.compute_loss(model, batch, num_items_in_batch=n_items)
    hook.remove()
    assert head_rows.rows == [batch["input_ids"].numel(), label_tokens(batch)]
    assert loss.item() == pytest.approx(full.item(), rel=1e-3)
