"""DeepSpeed and QLoRA correctness: ZeRO-3 partitions while loading, single-GPU DeepSpeed is
noted, fractional GPUs per rank are refused, and QLoRA keeps its activations in bf16."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest
import torch

from raysum.config import load_preset
from raysum.config.resolve import resolve
from raysum.config.schema import LoraSettings
from raysum.errors import ConfigError
from raysum.pipeline import validate
from raysum.training.arguments import deepspeed_load_config, deepspeed_loading

CUDA = torch.cuda.is_available()
TEXTS = ["#Person1#: 안녕하세요. 내일 세 시에 만나요.\n#Person2#: 좋아요.",
         "두 사람은 내일 만나기로 한다."] * 20


# ---------------------------------------------------------------- ZeRO-3 loading
def test_zero3_load_config_fills_what_deepspeed_parses_as_the_trainer_would():
    settings = dataclasses.replace(load_preset("llama-3.2-korean-3b"), deepspeed="zero3")
    config = deepspeed_load_config(settings, "bf16", world_size=4)
    assert config["train_micro_batch_size_per_gpu"] == 8 and config["gradient_accumulation_steps"] == 4
    assert config["train_batch_size"] == 4 * 8 * 4 and config["gradient_clipping"] == 1.0
    assert config["bf16"]["enabled"] is True and config["fp16"]["enabled"] is False
    assert config["zero_optimization"]["stage"] == 3
    # left to DeepSpeed's parser (drops "auto") and to the Trainer (fills them from the hidden size)
    assert config["zero_optimization"]["stage3_prefetch_bucket_size"] == "auto"
    assert deepspeed_load_config(dataclasses.replace(settings, deepspeed="zero2"), "bf16") is None
    assert deepspeed_load_config(dataclasses.replace(settings, deepspeed=None), "bf16") is None


def _tiny_checkpoint(tmp_path):
    from raysum.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(load_preset("tiny-llama"), TEXTS, cache_dir=tmp_path / "tok",
                                                device="cpu")
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return str(tmp_path / "base")


def test_zero3_config_is_registered_before_from_pretrained_in_the_unit_setup(tmp_path, monkeypatch):
    """The unit's setup: HfDeepSpeedConfig (faked: deepspeed is not installed here) exists,
    alive and registered, when from_pretrained runs, and is unregistered after loading."""
    import pandas as pd
    import transformers
    from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

    from raysum.training.unit import UnitConfig, setup

    events = []

    class FakeHfDeepSpeedConfig:
        made = []

        def __init__(self, config):
            events.append(("HfDeepSpeedConfig", config))
            set_hf_deepspeed_config(self)  # as the real one does: a weak reference
            self.made.append(self)

        def is_zero3(self):
            return True

    real = transformers.AutoModelForCausalLM.from_pretrained

    def from_pretrained(source, **kwargs):
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        events.append(("from_pretrained", is_deepspeed_zero3_enabled()))
        unset_hf_deepspeed_config()  # the real load without deepspeed.zero.Init (not installed here)
        try:
            return real(source, **kwargs)
        finally:
            set_hf_deepspeed_config(FakeHfDeepSpeedConfig.made[-1])

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        events.append(("build_trainer", is_deepspeed_zero3_enabled()))
        raise Stop

    monkeypatch.setattr("transformers.integrations.HfDeepSpeedConfig", FakeHfDeepSpeedConfig)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr("raysum.training.validation.validate_unit_settings", lambda *a, **k: [])  # no GPU here
    monkeypatch.setattr("raysum.training.unit.build_trainer", stop)
    monkeypatch.setenv("WORLD_SIZE", "2")

    settings = dataclasses.replace(load_preset("tiny-llama"), from_config=None, checkpoint=_tiny_checkpoint(tmp_path),
                                   deepspeed="zero3", precision="bf16", batch_size=4)
    pd.DataFrame({"dialogue": TEXTS[:4:2], "summary": TEXTS[1:4:2]}).to_parquet(tmp_path / "train.parquet")
    unit = UnitConfig.from_dict({"unit_dir": str(tmp_path / "unit"), "model": dataclasses.asdict(settings),
                                 "train_path": str(tmp_path / "train.parquet")})
    try:
        with pytest.raises(Stop):
            setup(unit)
    finally:
        unset_hf_deepspeed_config()
    assert [name for name, _ in events] == ["HfDeepSpeedConfig", "from_pretrained", "build_trainer"]
    assert events[1][1] is True  # ZeRO-3 was on while the weights loaded
    assert events[2][1] is False  # and off after: the Trainer's arguments register their own
    config = events[0][1]
    assert config["train_batch_size"] == 2 * 4 * settings.gradient_accumulation_steps
    assert config["bf16"]["enabled"] is True and config["zero_optimization"]["stage"] == 3


def test_other_presets_load_without_a_deepspeed_config(monkeypatch):
    monkeypatch.setattr("transformers.integrations.HfDeepSpeedConfig", lambda config: pytest.fail("constructed"))
    for stage in (None, "zero2"):
        with deepspeed_loading(dataclasses.replace(load_preset("qwen3-4b"), deepspeed=stage), "bf16") as active:
            assert active is None


def test_generation_after_zero3_training_loads_whole_weights():
    """While the Trainer's ZeRO-3 config is registered, the generation model loads unpartitioned."""
    from types import SimpleNamespace

    from transformers.integrations.deepspeed import (
        is_deepspeed_zero3_enabled, set_hf_deepspeed_config, unset_hf_deepspeed_config,
    )

    from raysum.training.unit import _zero3_off

    class Registered:
        def is_zero3(self):
            return True

    registered = Registered()
    set_hf_deepspeed_config(registered)
    try:
        with _zero3_off(SimpleNamespace(hf_deepspeed_config=registered)):
            assert not is_deepspeed_zero3_enabled()
        assert is_deepspeed_zero3_enabled()
    finally:
        unset_hf_deepspeed_config()


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA or importlib.util.find_spec("deepspeed") is None, reason="needs CUDA and deepspeed")
def test_zero3_load_config_passes_deepspeeds_own_parser():
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    settings = dataclasses.replace(load_preset("llama-3.2-korean-3b"), deepspeed="zero3")
    config = deepspeed_load_config(settings, "bf16", world_size=1)
    parsed = DeepSpeedConfig(json.loads(json.dumps(config)))
    assert parsed.zero_optimization_stage == 3 and parsed.bfloat16_enabled and not parsed.fp16_enabled
    kept = HfDeepSpeedConfig(config)
    try:
        assert is_deepspeed_zero3_enabled() and kept.is_zero3()
    finally:
        unset_hf_deepspeed_config()


# ---------------------------------------------------------------- resources
def test_deepspeed_on_a_single_gpu_worker_is_noted():
    cfg = validate(resolve({"models": ["qwen3-4b"]}, overrides=["models.qwen3-4b.deepspeed=zero2"]))
    notes = [w for w in cfg.warnings if "deepspeed" in w]
    assert len(notes) == 1 and "only adds overhead" in notes[0] and "models.qwen3-4b" in notes[0]
    cfg = validate(resolve({"models": ["qwen3-4b"]}, overrides=[
        "models.qwen3-4b.deepspeed=zero2", "models.qwen3-4b.resources.num_workers=2"]))
    assert not [w for w in cfg.warnings if "deepspeed" in w]
    assert not [w for w in validate(resolve({"models": ["qwen3-4b"]})).warnings if "deepspeed" in w]


def test_fractional_gpus_per_worker_with_several_workers_is_refused_before_launch():
    with pytest.raises(ConfigError, match=r"gpus_per_worker 0.5 with num_workers 2: .*two NCCL ranks on one GPU"):
        validate(resolve({"models": ["qwen3-4b"]}, overrides=[
            "models.qwen3-4b.resources.gpus_per_worker=0.5", "models.qwen3-4b.resources.num_workers=2"]))
    # one worker on half a GPU (two units share it) and whole GPUs per worker are fine
    validate(resolve({"models": ["qwen3-4b"]}, overrides=["models.qwen3-4b.resources.gpus_per_worker=0.5"]))
    validate(resolve({"models": ["qwen3-4b"]}, overrides=["models.qwen3-4b.resources.num_workers=2"]))


# ---------------------------------------------------------------- QLoRA in bf16
def _tiny_llama(dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config).to(dtype)


def test_qlora_preparation_keeps_frozen_weights_and_activations_in_bf16():
    """peft's prepare_model_for_kbit_training upcasts every non-quantized parameter to fp32
    (it does so for any bf16 model, quantized or not: this runs it for real on CPU)."""
    from raysum.models.loading import apply_lora

    settings = dataclasses.replace(load_preset("tiny-llama"), quantization="nf4", precision="bf16",
                                   lora=LoraSettings(r=4, target_modules=["q_proj", "v_proj"]))
    model = apply_lora(_tiny_llama(torch.bfloat16), settings)
    frozen = {n: p.dtype for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    assert frozen and set(frozen.values()) == {torch.bfloat16}  # norms, embeddings, lm_head, projections
    assert adapters and all("lora_" in n for n in adapters) and set(adapters.values()) == {torch.float32}
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[1, 5, 9, 4]]), output_hidden_states=True)
    assert {h.dtype for h in out.hidden_states} == {torch.bfloat16}

    # without the cast (peft's preparation alone) the whole stack would run in fp32
    from peft import prepare_model_for_kbit_training

    upcast = prepare_model_for_kbit_training(_tiny_llama(torch.bfloat16), use_gradient_checkpointing=False)
    assert {p.dtype for p in upcast.parameters()} == {torch.float32}


def test_plain_lora_is_not_touched_by_the_qlora_cast():
    from raysum.models.loading import apply_lora

    settings = dataclasses.replace(load_preset("tiny-llama"), precision="bf16", lora=LoraSettings(r=4))
    model = apply_lora(_tiny_llama(torch.float32), settings)  # a full-precision base stays full precision
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA or importlib.util.find_spec("bitsandbytes") is None,
                    reason="needs CUDA and bitsandbytes")
def test_qlora_on_gpu_computes_in_bf16(tmp_path):
    from raysum.models import load_model_and_tokenizer

    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    settings = dataclasses.replace(load_preset("tiny-llama"), from_config=None, checkpoint=_tiny_checkpoint(tmp_path),
                                   quantization="nf4", precision=precision, lora=LoraSettings(r=4))
    model, tokenizer = load_model_and_tokenizer(settings, device="cuda")
    kinds = {type(p).__name__ for p in model.parameters()}
    assert "Params4bit" in kinds
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad and p.is_floating_point()
              and type(p).__name__ != "Params4bit"}
    assert frozen == {dtype}
    ids = tokenizer(TEXTS[0], return_tensors="pt").input_ids.to("cuda")
    with torch.autocast("cuda", dtype=dtype):
        out = model(input_ids=ids, labels=ids, output_hidden_states=True)
    assert {h.dtype for h in out.hidden_states} == {dtype}
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
