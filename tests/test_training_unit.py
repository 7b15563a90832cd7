"""The training unit end to end on tiny presets, plus its pieces: packed batches,
settings validation, DeepSpeed presets, resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from raysum.config import load_preset
from raysum.errors import ConfigError, RaysumError
from raysum.training import (
    PREDICTION_COLUMNS, make_collator, prepare_model_for_training, run_unit, training_arguments_kwargs,
    validate_unit_settings,
)

SAMPLE = Path(__file__).resolve().parents[1] / "raysum" / "resources" / "data" / "train.csv"
METRIC_FIELDS = {"step", "epoch", "loss", "grad_norm", "learning_rate", "samples_per_s", "effective_batch_size"}


def korean_examples(n: int) -> pd.DataFrame:
    """`n` Korean dialogue/summary pairs: the bundled sample when present, else made up."""
    if SAMPLE.is_file():
        frame = pd.read_csv(SAMPLE).head(n)
        if len(frame) == n:
            return frame[["fname", "dialogue", "summary"]].reset_index(drop=True)
    places, items = ["도서관", "시장", "병원", "공항", "카페"], ["사과", "커피", "책", "우산", "케이크"]
    rows = []
    for i in range(n):
        place, item = places[i % 5], items[(i // 5) % 5]
        rows.append({
            "fname": f"train_{i}",
            "dialogue": f"#Person1#: {place}에서 {item}을 사고 싶어요.\n#Person2#: 네, 번호는 #PhoneNumber# 입니다.",
            "summary": f"#Person1#은 {place}에서 {item}을 사려고 한다.",
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """10 distinct examples repeated 4 times for training (40 rows), 5 held out each for
    eval, oof, dev and test."""
    root = tmp_path_factory.mktemp("unit-data")
    frame = korean_examples(30)
    train = pd.concat([frame.head(10)] * 4, ignore_index=True)
    train["fname"] = [f"train_{i}" for i in range(len(train))]
    train.to_parquet(root / "train.parquet")
    frame.iloc[10:15].to_parquet(root / "eval.parquet")
    for split, rows in (("oof", frame.iloc[15:20]), ("dev", frame.iloc[20:25]), ("test", frame.iloc[25:30])):
        rows[["fname", "dialogue"]].to_parquet(root / f"{split}.parquet")
    return root


def unit_config(data_dir: Path, unit_dir: Path, preset: str, **overrides) -> dict:
    settings = dataclasses.replace(load_preset(preset), **{
        "epochs": 3, "batch_size": 8, "learning_rate": 3e-3, "max_length": 10, "num_beams": 2, "warmup_ratio": 0.1,
        **overrides})
    return {
        "unit_dir": str(unit_dir), "model": dataclasses.asdict(settings), "fold": 0, "seed": 7,
        "train_path": str(data_dir / "train.parquet"), "eval_path": str(data_dir / "eval.parquet"),
        "predict": {s: str(data_dir / f"{s}.parquet") for s in ("oof", "dev", "test")},
        "tokenizer_cache": str(data_dir / "tokenizers"), "resume": False,
    }


@pytest.fixture(scope="module")
def finished_units(data_dir, tmp_path_factory) -> dict:
    """One finished unit per tiny preset (shared by the tests that only read them)."""
    units = {}
    for preset in ("tiny-bart", "tiny-llama"):
        unit_dir = tmp_path_factory.mktemp(preset) / "fold0"
        reports = []
        summary = run_unit(unit_config(data_dir, unit_dir, preset), report=lambda m, c: reports.append((m, c)))
        units[preset] = (unit_dir, summary, reports)
    return units


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny-bart", "tiny-llama"])
def test_unit_writes_checkpoint_metrics_predictions_and_summary(finished_units, data_dir, preset):
    unit_dir, summary, reports = finished_units[preset]
    assert sorted(p.name for p in unit_dir.iterdir()) == ["checkpoint", "metrics.jsonl", "predictions.parquet", "unit.json"]
    checkpoint = {p.name for p in (unit_dir / "checkpoint").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= checkpoint
    pickled = [p for p in unit_dir.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert pickled == []

    rows = [json.loads(line) for line in (unit_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    eval_rows = [r for r in rows if "eval_loss" in r]
    assert train_rows and all(set(r) == METRIC_FIELDS for r in train_rows)
    assert all(r["effective_batch_size"] == 8 and r["samples_per_s"] > 0 for r in train_rows)
    assert [r["epoch"] for r in eval_rows] == [1.0, 2.0, 3.0]
    # 10 examples seen 12 times: the loss has to fall
    assert train_rows[-1]["loss"] < 0.8 * train_rows[0]["loss"]
    assert eval_rows[-1]["eval_loss"] < eval_rows[0]["eval_loss"]

    predictions = pd.read_parquet(unit_dir / "predictions.parquet")
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    for split in ("oof", "dev", "test"):
        expected = pd.read_parquet(data_dir / f"{split}.parquet")["fname"].tolist()
        assert predictions.loc[predictions["split"] == split, "fname"].tolist() == expected
    assert set(predictions["model"]) == {preset} and set(predictions["fold"]) == {0} and set(predictions["tta"]) == {"none"}
    assert predictions["n_tokens"].between(1, 10).all() and (predictions["logprob"] <= 0).all()

    saved = json.loads((unit_dir / "unit.json").read_text())
    assert saved == summary
    assert saved["status"] == "done"
    if torch.cuda.is_available():
        assert saved["device"] == torch.cuda.get_device_name() and saved["precision"] in ("bf16", "fp16")
    else:
        assert saved["device"] == "cpu" and saved["precision"] == "fp32"
    assert saved["train_samples"] == 40 and saved["steps"] == 15 and saved["predictions"] == {"oof": 5, "dev": 5, "test": 5}
    assert saved["train_s"] > 0 and saved["generate_s"] > 0 and saved["eval_loss"] == eval_rows[-1]["eval_loss"]

    # one report per epoch (after evaluation), then the final one with the checkpoint
    assert [m.get("epoch") for m, _ in reports[:3]] == [1.0, 2.0, 3.0] and all(c is None for _, c in reports[:3])
    final, checkpoint_dir = reports[-1]
    assert checkpoint_dir == str(unit_dir / "checkpoint") and final["steps"] == 15 and "done" not in final


@pytest.mark.slow
def test_finished_unit_is_returned_without_training(finished_units, data_dir, monkeypatch):
    unit_dir, summary, _ = finished_units["tiny-bart"]
    before = {p: p.stat().st_mtime_ns for p in unit_dir.rglob("*")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished unit must not be set up again")

    monkeypatch.setattr("raysum.training.unit.setup", no_training)
    config = unit_config(data_dir, unit_dir, "tiny-bart")
    assert run_unit({**config, "resume": True}) == summary
    assert {p: p.stat().st_mtime_ns for p in unit_dir.rglob("*")} == before


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="bitwise repeatability is a CPU property; CUDA kernels vary")
def test_same_seed_gives_identical_predictions(finished_units, data_dir, tmp_path):
    first_dir, first, _ = finished_units["tiny-llama"]
    second = run_unit(unit_config(data_dir, tmp_path / "again", "tiny-llama"))
    assert second["train_loss"] == first["train_loss"]
    pd.testing.assert_frame_equal(pd.read_parquet(first_dir / "predictions.parquet"),
                                  pd.read_parquet(tmp_path / "again" / "predictions.parquet"))


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_resume_continues_from_the_last_intermediate_checkpoint(data_dir, tmp_path):
    unit_dir = tmp_path / "fold0"
    config = unit_config(data_dir, unit_dir, "tiny-bart", max_length=4)
    epochs_seen = []

    def interrupt_in_epoch_two(metrics, checkpoint):
        epochs_seen.append(metrics.get("epoch"))
        if len(epochs_seen) == 2:  # epoch 1 is checkpointed, epoch 2 is not
            raise Interrupted

    with pytest.raises(Interrupted):
        run_unit(config, report=interrupt_in_epoch_two)
    assert not (unit_dir / "unit.json").exists()
    assert [p.name for p in (unit_dir / "resume").iterdir() if p.name.startswith("checkpoint-")] == ["checkpoint-5"]

    partial = unit_dir / "resume" / "checkpoint-10"  # a save killed midway: no trainer_state.json
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"")
    summary = run_unit({**config, "resume": True})
    assert summary["resumed_from_step"] == 5 and summary["steps"] == 15
    steps = [json.loads(line)["step"] for line in (unit_dir / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # nothing logged twice
    assert not (unit_dir / "resume").exists()


def test_packed_batch_loss_equals_padded_batch_loss(data_dir, tmp_path):
    from raysum.models import encode_examples, load_model_and_tokenizer

    settings = load_preset("tiny-llama")
    frame = pd.read_parquet(data_dir / "train.parquet").head(6)
    texts = frame["dialogue"].tolist() + frame["summary"].tolist()
    model, tokenizer = load_model_and_tokenizer(settings, texts, cache_dir=tmp_path, device="cpu", seed=1)
    model.eval()
    examples = encode_examples(tokenizer, settings, frame["dialogue"].tolist(), frame["summary"].tolist())
    assert len({len(e["input_ids"]) for e in examples}) > 1

    width = max(len(e["input_ids"]) for e in examples)
    padded = {
        "input_ids": torch.tensor([e["input_ids"] + [tokenizer.pad_token_id] * (width - len(e["input_ids"])) for e in examples]),
        "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples]),
        "labels": torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in examples]),
    }
    packed = make_collator(settings, tokenizer, model)(examples)
    assert packed["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))
    assert "attention_mask" not in packed

    with torch.no_grad():
        padded_loss = model(**padded).loss.item()
        leaky = model(**packed)  # with a KV cache the masking utils miss the packing
        prepare_model_for_training(model)
        packed = model(**packed)
    assert packed.loss.item() == pytest.approx(padded_loss, abs=1e-4)
    assert (leaky.logits - packed.logits).abs().max() > 1e-2  # examples attended to each other


def test_validation_refuses_impossible_settings():
    qwen = load_preset("qwen3-4b")
    assert validate_unit_settings(qwen, has_gpu=True) == []
    assert validate_unit_settings(load_preset("kobart"), has_gpu=True) == []
    for tiny in ("tiny-bart", "tiny-llama", "tiny-qwen3"):
        assert validate_unit_settings(load_preset(tiny), has_gpu=False) == []

    zero3_qlora = validate_unit_settings(dataclasses.replace(qwen, quantization="nf4", deepspeed="zero3"), has_gpu=True)
    assert len(zero3_qlora) == 1 and "ZeRO-3" in zero3_qlora[0] and "partition" in zero3_qlora[0]
    assert validate_unit_settings(dataclasses.replace(qwen, quantization="nf4", deepspeed="zero2"), has_gpu=True) == []
    assert any("CUDA" in p for p in validate_unit_settings(dataclasses.replace(qwen, quantization="nf4"), has_gpu=False))

    kobart = load_preset("kobart")
    assert any("LoRA" in p for p in validate_unit_settings(dataclasses.replace(kobart, lora=qwen.lora), has_gpu=True))
    odd = dataclasses.replace(load_preset("tiny-bart"), from_config={"architecture": "gpt9"}, batch_size=0)
    problems = validate_unit_settings(odd, has_gpu=False)
    assert any("gpt9" in p for p in problems) and any("batch_size" in p for p in problems)
    mismatch = dataclasses.replace(load_preset("tiny-llama"), kind="seq2seq")
    assert any("is causal" in p for p in validate_unit_settings(mismatch, has_gpu=False))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_qlora_unit_on_cpu_is_refused_before_loading(data_dir, tmp_path):
    config = unit_config(data_dir, tmp_path / "u", "tiny-llama")
    config["model"].update(quantization="nf4", lora=dataclasses.asdict(load_preset("qwen3-4b").lora))
    with pytest.raises(ConfigError, match="CUDA"):
        run_unit(config)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_preset_reaches_the_training_arguments(stage, tmp_path, monkeypatch):
    settings = dataclasses.replace(load_preset("llama-3.2-korean-3b"), deepspeed=stage)
    kwargs = training_arguments_kwargs(settings, tmp_path, num_examples=100, has_eval=True,
                                       precision="bf16", cuda=True, seed=1)
    config = json.loads(Path(kwargs["deepspeed"]).read_text())
    assert config["zero_optimization"]["stage"] == int(stage[-1])
    assert kwargs["bf16"] and kwargs["gradient_accumulation_steps"] == 4 and kwargs["max_grad_norm"] == 1.0

    import raysum.training.arguments as arguments

    received = {}
    monkeypatch.setattr("transformers.TrainingArguments", lambda **kw: received.update(kw) or "args")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())  # as if deepspeed were installed
    assert arguments.build_training_arguments(settings, tmp_path, num_examples=100, has_eval=True,
                                              precision="bf16", cuda=True, seed=1) == "args"
    assert received["deepspeed"] == kwargs["deepspeed"]
    assert training_arguments_kwargs(load_preset("llama-3.2-korean-3b"), tmp_path, num_examples=100, has_eval=True,
                                     precision="bf16", cuda=True, seed=1)["deepspeed"] is None


def test_deepspeed_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    import raysum.training.arguments as arguments

    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    settings = dataclasses.replace(load_preset("kobart"), deepspeed="zero2")
    with pytest.raises(RaysumError, match="pip install"):
        arguments.build_training_arguments(settings, tmp_path, num_examples=10, has_eval=False,
                                           precision="fp32", cuda=False, seed=1)


def _reload_and_regenerate(settings, unit_dir: Path, data_dir: Path) -> None:
    """The saved checkpoint reproduces the unit's dev predictions."""
    from raysum.generation import generate_summaries
    from raysum.models import load_trained_model

    model, tokenizer = load_trained_model(settings, unit_dir / "checkpoint", device="cpu")
    dev = pd.read_parquet(data_dir / "dev.parquet")
    again = generate_summaries(model, tokenizer, settings, dev["dialogue"].tolist())
    saved = pd.read_parquet(unit_dir / "predictions.parquet").query("split == 'dev'")
    assert [r["text"] for r in again] == saved["text"].tolist()
    assert [r["logprob"] for r in again] == pytest.approx(saved["logprob"].tolist(), abs=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="units on CUDA generate in half precision")
def test_saved_checkpoint_reproduces_the_predictions(finished_units, data_dir):
    unit_dir, _, _ = finished_units["tiny-bart"]
    config = unit_config(data_dir, unit_dir, "tiny-bart")
    _reload_and_regenerate(dataclasses.replace(load_preset("tiny-bart"), **{
        k: config["model"][k] for k in ("epochs", "batch_size", "max_length", "num_beams")}), unit_dir, data_dir)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="units on CUDA generate in half precision")
@pytest.mark.parametrize("preset", ["tiny-bart", "tiny-llama"])
def test_predict_unit_reproduces_the_units_predictions(finished_units, data_dir, tmp_path, preset):
    """`raysum predict`'s unit body: the saved checkpoint through its own prepared engine."""
    from raysum.training import predict_unit

    unit_dir, _, _ = finished_units[preset]
    config = unit_config(data_dir, unit_dir, preset)
    out = predict_unit({"unit_dir": str(unit_dir), "model": config["model"], "fold": 0,
                        "predict": {"dev": config["predict"]["dev"]}, "output_path": str(tmp_path / "p.parquet")})
    again = pd.read_parquet(out)
    saved = pd.read_parquet(unit_dir / "predictions.parquet").query("split == 'dev' and decoding == 'd0'")
    assert again["text"].tolist() == saved["text"].tolist()
    assert again["logprob"].tolist() == pytest.approx(saved["logprob"].tolist(), abs=1e-4)


@pytest.mark.slow
def test_a_sampled_setting_given_twice_gives_two_candidates_per_dialogue(data_dir, tmp_path):
    sampled = {"num_beams": 1, "do_sample": True, "temperature": 1.5}
    config = unit_config(data_dir, tmp_path / "unit", "tiny-bart", epochs=1, decoding_settings=[sampled, sampled])
    config["predict"] = {"dev": config["predict"]["dev"]}
    summary = run_unit(config)
    assert summary["decodings"]["d1"] == summary["decodings"]["d2"]
    rows = pd.read_parquet(tmp_path / "unit" / "predictions.parquet")
    texts = rows.pivot_table(index="fname", columns="decoding", values="text", aggfunc="first")
    assert (texts["d1"] != texts["d2"]).any()  # each label draws with its own seed


@pytest.mark.slow
def test_lora_unit_on_a_checkpoint_saves_only_the_adapter(data_dir, tmp_path):
    from raysum.models import load_model_and_tokenizer

    tiny = load_preset("tiny-llama")
    frame = pd.read_parquet(data_dir / "train.parquet")
    base, tokenizer = load_model_and_tokenizer(tiny, frame["dialogue"].tolist() + frame["summary"].tolist(),
                                               cache_dir=tmp_path / "tok", device="cpu")
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")

    lora = dataclasses.asdict(load_preset("qwen3-4b").lora) | {"r": 4}
    config = unit_config(data_dir, tmp_path / "unit", "tiny-llama", epochs=1, learning_rate=1e-2)
    config["model"].update(from_config=None, checkpoint=str(tmp_path / "base"), lora=lora)
    config["predict"] = {"dev": config["predict"]["dev"]}
    summary = run_unit(config)
    assert summary["trainable_params"] < summary["total_params"] / 10
    files = {p.name for p in (tmp_path / "unit" / "checkpoint").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= files
    assert "model.safetensors" not in files
    if not torch.cuda.is_available():
        settings = dataclasses.replace(load_preset("tiny-llama"), from_config=None, checkpoint=str(tmp_path / "base"),
                                       lora=dataclasses.replace(load_preset("qwen3-4b").lora, r=4), max_length=10, num_beams=2)
        _reload_and_regenerate(settings, tmp_path / "unit", data_dir)


@pytest.mark.slow
def test_tiny_preset_with_lora_saves_merged_full_weights(data_dir, tmp_path):
    config = unit_config(data_dir, tmp_path / "unit", "tiny-llama", epochs=1)
    config["model"]["lora"] = dataclasses.asdict(load_preset("qwen3-4b").lora) | {"r": 4}
    config["predict"] = {"dev": config["predict"]["dev"]}
    run_unit(config)
    files = {p.name for p in (tmp_path / "unit" / "checkpoint").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
