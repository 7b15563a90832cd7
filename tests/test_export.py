"""`raysum export`: a finished unit as a plain Hugging Face model folder that
`from_pretrained` + `generate` load to reproduce the unit's test summaries, without raysum."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from builders import finished_experiment, write_experiment
from raysum.cli import main
from raysum.config import load_preset
from raysum.config.resolve import resolve
from raysum.experiment import Experiment
from raysum.models import load_model_and_tokenizer
from raysum.training import run_unit

SAMPLE = Path(__file__).resolve().parents[1] / "raysum" / "resources" / "data" / "train.csv"
LORA = ["models.tiny-llama.from_config=null", "models.tiny-llama.lora={r: 4, alpha: 8, dropout: 0.0, "
        "target_modules: [q_proj, k_proj, v_proj, o_proj]}"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """An experiment with two finished units trained for real: tiny-bart (full weights) and
    tiny-llama with a LoRA adapter on a base checkpoint saved to disk."""
    root = tmp_path_factory.mktemp("export")
    frame = pd.read_csv(SAMPLE).head(36)[["fname", "dialogue", "summary"]]
    data = root / "data"
    data.mkdir()
    frame.head(24).to_parquet(data / "train.parquet")
    frame.iloc[24:30].to_parquet(data / "eval.parquet")
    frame.iloc[30:36][["fname", "dialogue"]].to_parquet(data / "test.parquet")
    texts = frame["dialogue"].tolist() + frame["summary"].tolist()
    base, tokenizer = load_model_and_tokenizer(load_preset("tiny-llama"), texts, cache_dir=root / "tok", device="cpu")
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")

    cfg = resolve({"models": ["tiny-bart", "tiny-llama"], "k_folds": 2, "mode": "kfold", "seed": 7, "epochs": 2,
                   "num_beams": 2, "max_length": 12, "learning_rate": 3e-3},
                  overrides=[f"models.tiny-llama.checkpoint={root / 'base'}", *LORA])
    assert not cfg.problems
    path = write_experiment(root / "20260101_000000_export", config_tree=cfg.tree(), inputs={})
    exp = Experiment(path)
    for model, settings in cfg.models.items():
        run_unit({"unit_dir": str(exp.unit(model, 0).path), "model": dataclasses.asdict(settings), "fold": 0,
                  "seed": 7, "train_path": str(data / "train.parquet"), "eval_path": str(data / "eval.parquet"),
                  "predict": {"test": str(data / "test.parquet")}, "tokenizer_cache": str(root / "tok"),
                  "resume": False})
    return path


def _generate_from_folder(folder: Path, dialogues: list[str], base: str | None = None) -> list[str]:
    """What a user without raysum does: load the folder, build input ids as
    raysum_export.json says, generate with the folder's generation_config, decode."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    info = json.loads((folder / "raysum_export.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    causal = info["kind"] == "causal"
    auto = AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM
    if base is None:
        model = auto.from_pretrained(folder)
    else:
        from peft import PeftModel
        from transformers import GenerationConfig

        model = PeftModel.from_pretrained(auto.from_pretrained(base), folder)
        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.eval()
    recipe, texts = info["input"], []

    def ids(text, limit=None):
        return tokenizer(text, add_special_tokens=False, truncation=limit is not None, max_length=limit)["input_ids"]

    for dialogue in dialogues:
        body = ids(dialogue.strip(), recipe["max_dialogue_tokens"])
        if causal:
            prompt = ids(recipe["prompt_prefix"]) + body + ids(recipe["prompt_suffix"])
        else:
            prompt = ([tokenizer.bos_token_id] if recipe["bos"] else []) + body + [tokenizer.eos_token_id]
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
        new = out[0, len(prompt):] if causal else out[0]
        texts.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return texts


def _test_summaries(path: Path, model: str) -> tuple[list[str], list[str]]:
    unit = Experiment(path).unit(model, 0)
    predictions = pd.read_parquet(unit.predictions_file).query("split == 'test'")
    test = pd.read_parquet(next((path.parent / "data").glob("test.parquet")))
    dialogues = dict(zip(test["fname"], test["dialogue"]))
    return [dialogues[f] for f in predictions["fname"]], predictions["text"].tolist()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="units on CUDA generate in half precision")
@pytest.mark.parametrize("model", ["tiny-bart", "tiny-llama"])
def test_the_merged_folder_reproduces_the_units_test_summaries(experiment, tmp_path, model):
    out = tmp_path / "exported"
    assert main(["export", str(experiment), "--unit", f"{model}/fold0", "--out", str(out)]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "raysum_export.json"} <= files
    assert "adapter_config.json" not in files  # LoRA merged
    generation = json.loads((out / "generation_config.json").read_text(encoding="utf-8"))
    assert (generation["num_beams"], generation["max_new_tokens"]) == (2, 12)
    dialogues, expected = _test_summaries(experiment, model)
    assert _generate_from_folder(out, dialogues) == expected


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="units on CUDA generate in half precision")
def test_the_adapter_folder_reproduces_them_on_the_base_checkpoint(experiment, tmp_path):
    out = tmp_path / "adapter"
    assert main(["export", str(experiment), "--unit", "tiny-llama/0", "--out", str(out), "--adapter_only"]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "generation_config.json"} <= files
    assert "model.safetensors" not in files
    info = json.loads((out / "raysum_export.json").read_text(encoding="utf-8"))
    dialogues, expected = _test_summaries(experiment, "tiny-llama")
    assert _generate_from_folder(out, dialogues, base=info["base_checkpoint"]) == expected


@pytest.mark.slow
def test_an_adapter_of_full_weights_and_an_occupied_folder_are_refused(experiment, tmp_path, capsys):
    out = tmp_path / "absent"
    assert main(["export", str(experiment), "--unit", "tiny-bart/fold0", "--out", str(out), "--adapter_only"]) == 2
    assert "holds full weights, not a LoRA adapter" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".absent-*"))  # nothing left behind
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep", encoding="utf-8")
    assert main(["export", str(experiment), "--unit", "tiny-bart/fold0", "--out", str(taken)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    assert main(["export", str(experiment), "--unit", "tiny-bart/fold0", "--out", str(taken), "--force"]) == 0
    assert (taken / "model.safetensors").is_file() and not (taken / "mine.txt").exists()


@pytest.mark.parametrize("unit, message, code", [
    ("tiny-bart", "give MODEL/FOLD", 2),
    ("kobart/fold0", "the experiment has model(s) tiny-bart, tiny-llama", 2),
    ("tiny-bart/fold7", "tiny-bart has unit(s)", 2),
    ("tiny-bart/fold0", "has not finished training", 1),
])
def test_a_unit_that_cannot_be_exported_is_one_message(tmp_path, capsys, unit, message, code):
    path = finished_experiment(tmp_path / "20260101_000000_done")
    Experiment(path).unit("tiny-bart", 0).path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out"
    assert main(["export", str(path), "--unit", unit, "--out", str(out)]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_an_unknown_decoding_label_is_refused(tmp_path, capsys):
    path = finished_experiment(tmp_path / "20260101_000000_done")
    unit = Experiment(path).unit("tiny-bart", 0)
    unit.path.mkdir(parents=True, exist_ok=True)
    unit.write_info({"status": "done"})
    assert main(["export", str(path), "--unit", "tiny-bart/fold0", "--out", str(tmp_path / "o"), "--decoding", "d3"]) == 2
    assert "--decoding d3: tiny-bart has decoding setting(s) d0" in capsys.readouterr().err
