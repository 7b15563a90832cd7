"""Micro-batches by token budget (`max_tokens_per_batch`): the plan, the batch sampler, the
Trainer's dataloader, the `auto` budget's formula, and units trained with it."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from raysum.config import load_preset
from raysum.config.resolve import resolve
from raysum.errors import ConfigError
from raysum.pipeline import validate
from raysum.training.batching import (
    BUCKET_TOKENS, activation_bytes_per_token, auto_max_tokens, batch_tokens, plan_token_batches, round_up,
    unit_token_batches,
)


def random_lengths(n: int, fields: int = 1, seed: int = 0) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    if fields == 1:
        return [(rng.randint(20, 500),) for _ in range(n)]
    return [(rng.randint(20, 500), rng.randint(5, 100)) for _ in range(n)]


def padded_tokens(batch: list[int], lengths, packed=False) -> int:
    return batch_tokens([tuple(round_up(x) for x in lengths[i]) for i in batch], packed)


@pytest.mark.parametrize("fields, packed", [(1, False), (1, True), (2, False)])
@pytest.mark.parametrize("world_size", [1, 3])
def test_budget_respected_and_every_example_used_once_per_epoch(fields, packed, world_size):
    lengths = random_lengths(301, fields)
    samplers = [plan_token_batches(lengths, max_tokens=2048, batch_size=8, gradient_accumulation_steps=2,
                                   packed=packed, seed=5, world_size=world_size, rank=rank)[0]
                for rank in range(world_size)]
    for epoch in (0, 1):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        per_rank = [list(sampler) for sampler in samplers]
        assert len({len(batches) for batches in per_rank}) == 1  # same number of steps on every worker
        assert all(len(batches) == len(samplers[0]) for batches in per_rank)
        used = sorted(i for batches in per_rank for batch in batches for i in batch)
        assert used == list(range(len(lengths)))
        for batches in per_rank:
            assert all(padded_tokens(batch, lengths, packed) <= 2048 for batch in batches)
            assert all(len(batch) <= 16 for batch in batches)  # at most one optimizer step's examples


def test_batches_are_deterministic_per_seed_and_shuffled_per_epoch():
    lengths = random_lengths(200)
    first, _ = plan_token_batches(lengths, max_tokens=1024, batch_size=8, gradient_accumulation_steps=1, seed=1)
    again, _ = plan_token_batches(lengths, max_tokens=1024, batch_size=8, gradient_accumulation_steps=1, seed=1)
    other, _ = plan_token_batches(lengths, max_tokens=1024, batch_size=8, gradient_accumulation_steps=1, seed=2)
    assert first.epoch_batches(0) == again.epoch_batches(0)
    assert first.epoch_batches(0) != other.epoch_batches(0)
    assert first.epoch_batches(0) != first.epoch_batches(1)
    # the batch sizes are the plan's in every epoch (a resume lands on the same step)
    assert sorted(map(len, first.epoch_batches(0))) == sorted(map(len, first.epoch_batches(3)))
    # buckets are shuffled: consecutive batches are not in length order
    widths = [max(lengths[i][0] for i in batch) for batch in first.epoch_batches(0)]
    assert widths != sorted(widths)


@pytest.mark.parametrize("budget", [1024, 2048, 8192])
def test_gradient_accumulation_keeps_the_effective_batch_on_average(budget):
    lengths = random_lengths(2000)
    sampler, plan = plan_token_batches(lengths, max_tokens=budget, batch_size=8, gradient_accumulation_steps=4, seed=3)
    batches = sampler.epoch_batches(0)
    accumulation = plan.gradient_accumulation_steps
    steps = [batches[i:i + accumulation] for i in range(0, len(batches), accumulation)]
    mean = sum(len(b) for step in steps[:-1] for b in step) / (len(steps) - 1)
    assert mean == pytest.approx(32, rel=0.15) and plan.examples_per_step == pytest.approx(32, rel=0.15)
    assert plan.micro_batches == len(batches)


def test_a_tighter_budget_means_smaller_batches_and_more_accumulation():
    lengths = random_lengths(2000)
    plans = [plan_token_batches(lengths, max_tokens=b, batch_size=8, gradient_accumulation_steps=4)[1]
             for b in (1024, 4096, 16384)]
    assert [p.gradient_accumulation_steps for p in plans] == sorted((p.gradient_accumulation_steps for p in plans),
                                                                    reverse=True)
    assert plans[0].gradient_accumulation_steps > plans[-1].gradient_accumulation_steps
    assert plans[-1].largest_batch_rows == 32  # capped at one optimizer step's examples


def test_a_budget_below_the_longest_example_is_a_config_error():
    with pytest.raises(ConfigError, match=r"max_tokens_per_batch 256 \(setting\) is below the longest training "
                                          r"example: 504 tokens"):
        plan_token_batches([(100,), (500,)], max_tokens=256, batch_size=8, gradient_accumulation_steps=1)
    assert BUCKET_TOKENS == 8 and round_up(500) == 504


def test_the_setting_is_declared_resolved_and_checked(capsys):
    cfg = validate(resolve({"models": ["tiny-llama"]}, overrides=["models.tiny-llama.max_tokens_per_batch=auto"]))
    assert cfg.models["tiny-llama"].max_tokens_per_batch == "auto"
    cfg = validate(resolve({"models": ["tiny-llama"]}, overrides=["models.tiny-llama.max_tokens_per_batch=4096"]))
    assert cfg.models["tiny-llama"].max_tokens_per_batch == 4096
    assert load_preset("tiny-bart").max_tokens_per_batch == 0
    for bad, message in (("1.5", "whole number"), ("lots", "whole number"), ("-8", "must be >= 0")):
        with pytest.raises(ConfigError, match=message):
            validate(resolve({"models": ["tiny-llama"]}, overrides=[f"models.tiny-llama.max_tokens_per_batch={bad}"]))


# ---------------------------------------------------------------- the Trainer's dataloader
def test_the_unit_trainer_draws_its_training_batches_from_the_sampler(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from raysum.training.arguments import build_training_arguments
    from raysum.training.trainer import UnitTrainer

    rng = random.Random(0)
    data = [{"input_ids": [rng.randint(3, 99) for _ in range(rng.randint(5, 60))]} for _ in range(50)]
    for example in data:
        example["labels"] = list(example["input_ids"])

    def collate(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
        return {"input_ids": ids, "attention_mask": (labels != -100).long(), "labels": labels}

    settings = dataclasses.replace(load_preset("tiny-llama"), batch_size=4, epochs=1)
    lengths = [(len(e["input_ids"]),) for e in data]
    sampler, plan = plan_token_batches(lengths, max_tokens=128, batch_size=4, gradient_accumulation_steps=1, seed=7)
    args = build_training_arguments(settings, tmp_path, num_examples=len(data), has_eval=False, precision="fp32",
                                    cuda=False, seed=7, batch_plan=plan)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    trainer = UnitTrainer(model=model, args=args, train_dataset=data, data_collator=collate)
    trainer.token_batches = sampler
    loader = trainer.get_train_dataloader()
    batches = list(loader)
    assert len(batches) == len(sampler) == plan.micro_batches
    assert sum(b["input_ids"].shape[0] for b in batches) == len(data)
    assert all(b["input_ids"].numel() <= 128 for b in batches)
    assert [b["input_ids"].shape[0] for b in batches] == [len(b) for b in sampler.epoch_batches(0)]
    assert args.gradient_accumulation_steps == plan.gradient_accumulation_steps
    trainer.token_batches = None  # the Trainer's own batches
    assert sum(b["input_ids"].shape[0] for b in trainer.get_train_dataloader()) == len(data)


# ---------------------------------------------------------------- auto
def _real_config(preset: str):
    from test_models import REAL_CONFIGS
    from transformers import AutoConfig

    return AutoConfig.for_model(**REAL_CONFIGS[preset])


@pytest.mark.parametrize("preset, kind, measured, lengths", [
    # plain transformers + peft on an H200, bf16 (bench/h200-hf-baseline.json): peak memory less
    # weights and LoRA/optimizer state, per token of a batch of 8 x 512 (KoBART: 50 x (512 + 100))
    ("llama-3.2-korean-3b", "causal", (37.0 * 2**30 - 3_212_749_824 * 2 - 24_313_856 * 16) / 4096, None),
    ("qwen3-4b", "causal", (50.9 * 2**30 - 4_022_468_096 * 2 - 33_030_144 * 16) / 4096, None),
    ("kobart", "seq2seq", (10.2 * 2**30 - 123_859_968 * 16) / (50 * 612), (512, 100)),
])
def test_auto_bytes_per_token_match_the_h200_measurements(preset, kind, measured, lengths):
    estimate = activation_bytes_per_token(_real_config(preset), kind, "bf16", mean_lengths=lengths)
    assert estimate == pytest.approx(measured, rel=0.05)


def test_auto_with_gradient_checkpointing_stays_on_the_safe_side():
    config = _real_config("llama-3.2-korean-3b")
    measured = (12.9 * 2**30 - 3_212_749_824 * 2 - 24_313_856 * 16) / 4096  # the same run, checkpointing on
    estimate = activation_bytes_per_token(config, "causal", "bf16", gradient_checkpointing=True)
    assert measured <= estimate <= 1.25 * measured
    assert activation_bytes_per_token(config, "causal", "fp32") > activation_bytes_per_token(config, "causal", "bf16")


def test_auto_budget_formula_with_a_fake_memory_number():
    # (0.9 x 80 GB - 24.3M trainable x 12 bytes) / 8 MB per token = 8963.5 -> 8960 (a multiple of 64)
    assert auto_max_tokens(80e9, 8e6, 24_313_856) == 8960
    assert auto_max_tokens(1e9, 8e6, 100_000_000) == 0  # the optimizer state alone does not fit


def _tiny_llama_unit_inputs():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    rng = random.Random(1)
    return model, [{"input_ids": [5] * rng.randint(10, 90)} for _ in range(64)]


def test_auto_on_a_fake_gpu_uses_the_formula_and_without_cuda_is_off(monkeypatch, capsys):
    model, train_set = _tiny_llama_unit_inputs()
    settings = dataclasses.replace(load_preset("tiny-llama"), max_tokens_per_batch="auto", batch_size=4)
    assert unit_token_batches(settings, model, train_set, precision="fp32", cuda=False, packed=False, seed=1) is None
    assert "without CUDA it is off" in capsys.readouterr().out

    monkeypatch.setattr("raysum.training.batching.usable_gpu_memory", lambda share=1.0: 2_000_000)
    sampler = unit_token_batches(settings, model, train_set, precision="bf16", cuda=True, packed=False, seed=1)
    trainable = sum(p.numel() for p in model.parameters())
    expected = auto_max_tokens(2_000_000, activation_bytes_per_token(model.config, "causal", "bf16"), trainable)
    assert sampler.plan.max_tokens_per_batch == expected > 0 and sampler.plan.source == "auto"
    resumed = unit_token_batches(settings, model, train_set, precision="bf16", cuda=True, packed=False, seed=1,
                                 recorded_budget=256)
    assert (resumed.plan.max_tokens_per_batch, resumed.plan.source) == (256, "auto (resumed)")
    monkeypatch.setattr("raysum.training.batching.usable_gpu_memory", lambda share=1.0: 1000)
    with pytest.raises(ConfigError, match=r"max_tokens_per_batch 0 \(auto\) is below the longest"):
        unit_token_batches(settings, model, train_set, precision="bf16", cuda=True, packed=False, seed=1)


# ---------------------------------------------------------------- units
@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-bart"])
def test_unit_trains_with_a_token_budget(preset, tmp_path, monkeypatch):
    from test_training_unit import korean_examples, unit_config

    import pandas as pd

    from raysum.training import run_unit
    from raysum.training.trainer import UnitTrainer

    frame = korean_examples(25)
    train = pd.concat([frame.head(10)] * 4, ignore_index=True)
    train["fname"] = [f"train_{i}" for i in range(len(train))]
    train.to_parquet(tmp_path / "train.parquet")
    frame.iloc[10:15].to_parquet(tmp_path / "eval.parquet")
    frame.iloc[15:20][["fname", "dialogue"]].to_parquet(tmp_path / "dev.parquet")
    seen = []
    original = UnitTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        if model.training:
            seen.append(sum(inputs[k].numel() for k in ("input_ids", "labels")
                            if k in inputs and (k == "input_ids" or preset == "tiny-bart")))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(UnitTrainer, "compute_loss", recording)
    budget = 1024
    config = unit_config(tmp_path, tmp_path / "unit", preset, epochs=2, max_length=4, num_beams=1,
                         max_tokens_per_batch=budget)
    config["train_path"], config["eval_path"] = str(tmp_path / "train.parquet"), str(tmp_path / "eval.parquet")
    config["predict"] = {"dev": str(tmp_path / "dev.parquet")}
    summary = run_unit(config)

    plan = summary["batching"]
    assert plan["max_tokens_per_batch"] == budget and plan["source"] == "setting"
    assert seen and max(seen) <= budget and len(seen) == 2 * plan["micro_batches"]
    steps_per_epoch = -(-plan["micro_batches"] // plan["gradient_accumulation_steps"])
    assert summary["steps"] == 2 * steps_per_epoch
    rows = [json.loads(line) for line in (tmp_path / "unit" / "metrics.jsonl").read_text().splitlines()]
    assert {r["effective_batch_size"] for r in rows if "loss" in r} == {plan["examples_per_step"]}
    assert json.loads((tmp_path / "unit" / "unit.json").read_text())["batching"] == plan


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_budget_on_a_real_gpu_fits_and_is_recorded(tmp_path):
    model, train_set = _tiny_llama_unit_inputs()
    model.to("cuda")
    settings = dataclasses.replace(load_preset("tiny-llama"), max_tokens_per_batch="auto", batch_size=4)
    sampler = unit_token_batches(settings, model, train_set, precision="bf16", cuda=True, packed=False, seed=1)
    free, _ = torch.cuda.mem_get_info()
    per_token = activation_bytes_per_token(model.config, "causal", "bf16")
    assert sampler.plan.source == "auto" and 0 < sampler.plan.max_tokens_per_batch * per_token <= free
