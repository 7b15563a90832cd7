"""Models loaded from pretrained weights are refused on the bundled synthetic sample unless
allow_sample_data, wherever training starts (raysum train, the training search), before Ray
starts or anything is written; a new experiment prints its data files with row counts and
each model's settings that differ from its preset, with the effective batch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from raysum.cli import main
from raysum.config.resolve import resolve
from raysum.config.validate import sample_data_problems
from raysum.data import bundled_data
from raysum.pipeline import validate
from raysum.pipeline._applied import applied_lines
from raysum.pipeline._experiment import load_experiment_data

ROOT = Path(__file__).resolve().parents[1]
TRAINING_SPACE = str(ROOT / "search_spaces" / "training.yaml")
REFUSED = "would be the bundled synthetic sample"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no cached weights: the weights check fails too


@pytest.fixture
def own_data(tmp_path) -> list[str]:
    """Three small files given with --train_data/--dev_data/--test_data."""
    args = []
    for split in ("train", "dev", "test"):
        path = tmp_path / f"{split}.csv"
        pd.read_csv(bundled_data(split)).head(20).to_csv(path, index=False)
        args += [f"--{split}_data", str(path)]
    return args


@pytest.mark.parametrize("command", [
    ["train", "--mode", "full", "--models", "kobart", "qwen3-4b", "--k_folds", "2"],
    ["train", "--mode", "optuna", "--space", TRAINING_SPACE, "--models", "kobart", "--trials", "2"],
    ["tune", "--space", TRAINING_SPACE, "--models", "llama-3.2-korean-3b", "--trials", "2"],
])
def test_real_presets_on_the_sample_are_refused_before_any_work(command, tmp_path, offline, capsys):
    out = tmp_path / "out"
    rc = main(command + ["--output_dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert REFUSED in err and "--allow_sample_data" in err and "--train_data, --dev_data and --test_data" in err
    assert "Traceback" not in err and not out.exists()


def test_the_flag_or_own_data_lift_the_refusal(tmp_path, offline, own_data, capsys):
    base = ["train", "--models", "kobart", "--output_dir", str(tmp_path / "out")]
    for extra in (["--allow_sample_data"], own_data, ["--set", "allow_sample_data=true"]):
        assert main(base + extra) == 2  # still refused, for the weights that are not cached: nothing else
        err = capsys.readouterr().err
        assert REFUSED not in err and "digit82/kobart-summarization" in err
    partial = own_data[:4]  # train and dev given, test left to the sample
    assert main(base + partial) == 2
    err = capsys.readouterr().err
    assert "but test would be the bundled synthetic sample" in err and "give --test_data" in err


def test_tiny_presets_stay_allowed_on_the_sample():
    cfg = validate(resolve({"mode": "full", "models": ["tiny-bart", "tiny-llama", "tiny-qwen3"]}))
    assert sample_data_problems(cfg) == []
    mixed = validate(resolve({"mode": "multi_model", "models": ["tiny-bart", "kobart"]}))
    (problem,) = sample_data_problems(mixed)
    assert problem.startswith("model kobart loads pretrained weights") and "tiny-bart" not in problem


def test_allow_sample_data_is_a_setting_with_its_source(tmp_path, capsys):
    import json

    experiment = tmp_path / "exp.yaml"
    experiment.write_text("allow_sample_data: true\n")
    for args, source in ((["--allow_sample_data"], "cli"), (["--config", str(experiment)], f"experiment:{experiment}"),
                         (["--set", "allow_sample_data=true"], "cli"), ([], "default")):
        assert main(["config", "show", "--models", "kobart", "--json", *args]) == 0
        leaf = json.loads(capsys.readouterr().out)["allow_sample_data"]
        assert leaf == {"value": source != "default", "source": source}


def test_the_start_lines_name_the_data_rows_and_the_applied_settings(tmp_path):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("models:\n  tiny-llama:\n    learning_rate: 2.0e-3\n")
    cfg = validate(resolve({"mode": "kfold", "models": ["tiny-llama"], "k_folds": 2, "max_train_samples": 40,
                            "batch_size": 4, "gradient_accumulation_steps": 3, "max_eval_samples": 7},
                           config_file=experiment,
                           overrides=["models.tiny-llama.resources.num_workers=2", "models.tiny-llama.epochs=1"]))
    lines = applied_lines(cfg, load_experiment_data(cfg))
    text = "\n".join(lines)
    rows = {split: len(pd.read_csv(bundled_data(split))) for split in ("train", "dev", "test")}
    assert f"data train: {bundled_data('train')} ({rows['train']:,} rows; 40 sampled by max_train_samples; the " \
           "bundled synthetic sample)" in text
    assert f"data test: {bundled_data('test')} ({rows['test']:,} rows; the bundled synthetic sample)" in text
    assert f"7 of {rows['dev']:,} dev dialogues" in text and "fold0 7 of 20, fold1 7 of 20" in text
    (model,) = [line for line in lines if line.startswith("model ")]
    preset = "preset:raysum/config/presets/tiny-llama.yaml"
    assert "effective batch 4 x 3 (grad-accum) x 2 worker(s) = 24" in model
    assert "gradient_accumulation_steps 3 (cli; preset 1)" in model
    assert f"learning_rate 0.002 (experiment:{experiment}; preset" in model
    assert "epochs 1 (cli; preset" in model and "resources.num_workers 2 (cli; preset 1)" in model
    assert "max_length" not in model and preset not in model  # preset values are not listed
    plain = validate(resolve({"models": ["tiny-bart"]}))
    (line,) = [line for line in applied_lines(plain, load_experiment_data(plain)) if line.startswith("model ")]
    assert line.endswith("applied: the preset's settings")
