"""Bad input, one row per kind: each fails before any work with one clear message.

Every row runs the real command line in this process and asserts the exit code (2 for
config and data, 1 otherwise), a message naming the culprit, no traceback, no new
experiment directory, and that no file that existed before changed (the output
directory, the finished experiment and the input files are hashed before and after).
Ray must not start: the autouse guard of conftest.py fails any test that leaves it running.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from raysum.cli import main
from raysum.data import bundled_data
from raysum.experiment import layout

from builders import finished_experiment

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE_SPACE = str(ROOT / "search_spaces" / "ensemble.yaml")


@dataclass
class Case:
    args: list[str]  # {name} placeholders: files of the `world` fixture
    code: int
    says: str  # text the message must contain
    setup: str | None = None  # a damage done to the world first (see DAMAGE)


def _rows(name: str, n: int = 30) -> pd.DataFrame:
    return pd.read_csv(bundled_data(name)).head(n)


@pytest.fixture
def world(tmp_path) -> dict:
    """Valid inputs, an output directory holding an earlier experiment, files to break."""
    files = {"out": tmp_path / "out", "file": tmp_path / "plain.txt", "dir": tmp_path / "somedir"}
    files["file"].write_text("not a directory\n")
    files["dir"].mkdir()
    for split in ("train", "dev", "test"):
        files[split] = tmp_path / f"{split}.csv"
        _rows(split).to_csv(files[split], index=False)
    files["exp"] = finished_experiment(files["out"] / "20260101_000000_earlier")
    return files


def _csv(world: dict, name: str, frame: pd.DataFrame) -> None:
    world[name] = world["dir"].parent / f"{name}.csv"
    frame.to_csv(world[name], index=False)


def _yaml(world: dict, name: str, text: str) -> None:
    world[name] = world["dir"].parent / f"{name}.yaml"
    world[name].write_text(text)


def _damage_train(world, column, row, text):
    frame = _rows("train")
    frame.loc[row, column] = text
    _csv(world, "bad", frame)


def _overlap(world):
    test = _rows("test")
    test.loc[3, "fname"] = _rows("train").loc[5, "fname"]
    _csv(world, "bad", test)


def _truncate(world, name):
    target = world["exp"] / name
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])


def _binary(world):
    world["bad"] = world["dir"].parent / "bad.csv"
    world["bad"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")


DAMAGE = {
    "nul_fname": lambda w: _damage_train(w, "fname", 4, "train_\x00x"),
    "ctrl_dialogue": lambda w: _damage_train(w, "dialogue", 7, "#Person1#: 안녕\x07하세요"),
    "ctrl_summary": lambda w: _damage_train(w, "summary", 2, "요약\x1b[31m"),
    "empty_dialogue": lambda w: _damage_train(w, "dialogue", 9, " "),
    "no_dialogue": lambda w: _csv(w, "bad", _rows("train").drop(columns=["dialogue"])),
    "overlap": _overlap,
    "no_summary_pred": lambda w: _csv(w, "bad", _rows("test")[["fname"]]),
    "nan_config": lambda w: _yaml(w, "bad", "learning_rate: .nan\n"),
    "kfold_config": lambda w: _yaml(w, "bad", "mode: kfold\nk_folds: 1\n"),
    "bad_yaml": lambda w: _yaml(w, "bad", "epochs: [1,\n"),
    "space_negative": lambda w: _yaml(w, "bad", "space: training\nparameters:\n"
                                                "  learning_rate: {kind: uniform, low: -1.0e-4, high: 1.0e-3}\n"),
    "space_inf": lambda w: _yaml(w, "bad", "space: training\nparameters:\n  epochs: {kind: uniform, low: 1, high: .inf}\n"),
    "decoding_space": lambda w: _yaml(w, "bad", "space: decoding\nparameters:\n"
                                                "  num_beams: {kind: choice, values: [0, 2]}\n"),
    "config_truncated": lambda w: _truncate(w, layout.CONFIG_JSON),
    "config_foreign": lambda w: (w["exp"] / layout.CONFIG_JSON).write_text("[1, 2, 3]"),
    "config_other_version": lambda w: (w["exp"] / layout.CONFIG_JSON).write_text(
        json.dumps({"mode": "full", "models": {"tiny-bart": {"epochs": 3}}})),
    "scores_truncated": lambda w: (w["exp"] / layout.SCORES).write_text('{"units": {"tiny-b'),
    "candidates_truncated": lambda w: _truncate(w, layout.CANDIDATES),
    "binary": lambda w: _binary(w),
    "training_best_config": lambda w: _yaml(w, "bad", "# tiny-bart: best trial t1 of x: eval_loss 1.0\n"
                                                      "# train it: raysum train --config analysis/best_config.yaml\n"
                                                      "mode: kfold\n"),
}
TRAIN = ["train", "--models", "tiny-bart", "--output_dir", "{out}", "--max_train_samples", "20"]
TWO = ["--mode", "multi_model", "--models", "tiny-bart", "tiny-llama"]

CASES = {
    # 1. numbers: NaN/inf, ranges, negative numbers as values (flags, --set, --config, spaces)
    "negative learning rate": Case(TRAIN + ["--learning_rate", "-1e-4"], 2, "learning_rate must be in (0, 1]"),
    "NaN learning rate": Case(TRAIN + ["--learning_rate", "nan"], 2, "learning_rate must be a finite number"),
    "inf epochs": Case(TRAIN + ["--epochs", "inf"], 2, "epochs must be a finite number"),
    "inf ensemble weight": Case(TRAIN + TWO + ["--ensemble_strategy", "weighted_avg", "--ensemble_weights", "inf",
                                              "1"], 2, "ensemble_weights[0] must be a finite number"),
    "negative weight": Case(TRAIN + TWO + ["--ensemble_weights", "-1", "1"], 2, "ensemble_weights[0] must be >= 0"),
    "num_cpus -1": Case(TRAIN + ["--num_cpus", "-1"], 2, "num_cpus must be >= 1, got -1"),
    "num_cpus 0": Case(TRAIN + ["--num_cpus", "0"], 2, "num_cpus must be >= 1, got 0"),
    "ensemble_cpus 0": Case(TRAIN + ["--ensemble_cpus", "0"], 2, "ensemble_cpus must be >= 1, got 0"),
    "negative seed": Case(TRAIN + ["--seed", "-5"], 2, "seed must be in [0, 4294967295]"),
    "zero accumulation": Case(TRAIN + ["--gradient_accumulation_steps", "0"], 2, "gradient_accumulation_steps must be >= 1"),
    "max_train_samples 0": Case(TRAIN[:-2] + ["--max_train_samples", "0"], 2, "max_train_samples must be >= 1"),
    "tta_num_aug negative": Case(TRAIN + ["--use_tta", "--tta_num_aug", "-2"], 2, "tta_num_aug must be in [1, 100], got -2"),
    "--set inf batch": Case(TRAIN + ["--set", "models.tiny-bart.batch_size=.inf"], 2,
                            "models.tiny-bart.batch_size: expected an integer, got inf"),
    "--set warmup 1.5": Case(TRAIN + ["--set", "models.tiny-bart.warmup_ratio=1.5"], 2,
                             "warmup_ratio must be in [0, 1), got 1.5"),
    "--set NaN in from_config": Case(TRAIN + ["--set", "models.tiny-bart.from_config.dropout=.nan"], 2,
                                     "from_config.dropout must be a finite number"),
    "--set zero GPUs per worker": Case(TRAIN + ["--set", "models.tiny-bart.resources.gpus_per_worker=0"], 2,
                                       "resources.gpus_per_worker must be > 0"),
    "--config NaN": Case(TRAIN + ["--config", "{bad}"], 2, "learning_rate must be a finite number", "nan_config"),
    "--config k_folds 1": Case(TRAIN + ["--config", "{bad}"], 2, "k_folds must be >= 2", "kfold_config"),
    "decoding setting NaN": Case(TRAIN + ["--decoding_settings", "{length_penalty: .nan}"], 2,
                                 "length_penalty must be a number in (0, 10]"),
    "space below the range": Case(["tune", "--space", "{bad}", "--output_dir", "{out}"], 2,
                                  "searching learning_rate=-0.0001: learning_rate must be in (0, 1]", "space_negative"),
    "space infinite": Case(["tune", "--space", "{bad}", "--output_dir", "{out}"], 2, "epochs: high must be a number",
                           "space_inf"),
    "decoding space below the range": Case(["tune", "--space", "{bad}", "--experiment", "{exp}"], 2,
                                           "num_beams must be >= 1; the space reaches [0]", "decoding_space"),
    "candidate search num_cpus 0": Case(["tune", "--space", ENSEMBLE_SPACE, "--experiment", "{exp}", "--num_cpus",
                                         "0"], 2, "--num_cpus must be >= 1, got 0"),
    "ensemble weight -1": Case(["ensemble", "--experiment", "{exp}", "--strategy", "weighted_avg",
                                "--ensemble_weights", "-1", "1"], 2, "--ensemble_weights: must be >= 0"),
    "finalize weight -1": Case(["finalize", "{exp}", "--strategy", "weighted_avg", "--ensemble_weights", "-1", "1"],
                               2, "--ensemble_weights: must be >= 0"),
    "finalize one weight for two models": Case(["finalize", "{exp}", "--strategy", "weighted_avg",
                                                "--ensemble_weights", "1"], 2, "ensemble_weights has 1 values"),
    "finalize ensemble_cpus 0": Case(["finalize", "{exp}", "--ensemble_cpus", "0"], 2,
                                     "--ensemble_cpus: must be >= 1, got 0"),
    "finalize unknown decoding label": Case(["finalize", "{exp}", "--decoding", "tiny-bart=d2"], 2,
                                            "--decoding tiny-bart=d2: tiny-bart has decoding settings d0"),
    "cluster port": Case(["cluster", "up", "--port", "70000", "--state", "{dir}"], 2, "--port: must be in [1, 65535]"),
    # 2. paths and names
    "output_dir is a file": Case(TRAIN[:-4] + ["--output_dir", "{file}"], 2, "is an existing file; give a directory"),
    "output_dir under a file": Case(TRAIN[:-4] + ["--output_dir", "{file}/x"], 2, "is a file, so nothing can be created"),
    "name escapes output_dir": Case(TRAIN + ["--experiment_name", "a/../../../escaped"], 2, "experiment_name 'a/../../../escaped'"),
    "absolute name": Case(TRAIN + ["--experiment_name", "/abs/name"], 2, "experiment_name '/abs/name'"),
    "hidden name": Case(TRAIN + ["--experiment_name", ".hidden"], 2, "experiment_name '.hidden'"),
    "missing train file": Case(TRAIN + ["--train_data", "{dir}/absent.csv"], 2, "file not found: "),
    "train file is a directory": Case(TRAIN + ["--train_data", "{dir}"], 2, "is a directory, not a dataset file"),
    "storage_path is a file": Case(TRAIN + ["--storage_path", "{file}"], 2, "storage_path"),
    "config missing": Case(TRAIN + ["--config", "{dir}/absent.yaml"], 2, "absent.yaml"),
    "config is a directory": Case(TRAIN + ["--config", "{dir}"], 2, "--config"),
    "config not YAML": Case(TRAIN + ["--config", "{bad}"], 2, "not valid YAML", "bad_yaml"),
    "finalize with a training search's config": Case(["finalize", "{exp}", "--config", "{bad}"], 2,
                                                     "is a training search's best config", "training_best_config"),
    "finalize a file": Case(["finalize", "{file}"], 2, "is a file, not a directory"),
    "resume a file": Case(["train", "--resume", "{file}"], 2, "is a file, not a directory"),
    "resume a plain directory": Case(["train", "--resume", "{dir}"], 1, "not a raysum experiment directory"),
    "predict output is a directory": Case(["predict", "--experiment", "{exp}", "--test_data", "{test}", "--output",
                                           "{dir}"], 2, "--output"),
    "report of a file": Case(["report", "{file}"], 2, "is a file, not a directory"),
    # 3. files raysum reads back
    "config.json truncated": Case(["train", "--resume", "{exp}"], 1, layout.CONFIG_JSON, "config_truncated"),
    "config.json foreign": Case(["train", "--resume", "{exp}"], 1, layout.CONFIG_JSON, "config_foreign"),
    "config.json other version": Case(["train", "--resume", "{exp}"], 1, layout.CONFIG_JSON, "config_other_version"),
    "scores.json truncated": Case(["ensemble", "--experiment", "{exp}", "--strategy", "voting"], 1, layout.SCORES,
                                  "scores_truncated"),
    "candidates truncated": Case(["ensemble", "--experiment", "{exp}", "--strategy", "voting"], 1,
                                 layout.CANDIDATES, "candidates_truncated"),
    "finalize, scores.json truncated": Case(["finalize", "{exp}"], 1, layout.SCORES, "scores_truncated"),
    "finalize, candidates truncated": Case(["finalize", "{exp}"], 1, layout.CANDIDATES, "candidates_truncated"),
    # 7. data
    "NUL in fname": Case(TRAIN + ["--train_data", "{bad}"], 2, "row 5 (fname): control character U+0000 (NUL)",
                         "nul_fname"),
    "control character in dialogue": Case(TRAIN + ["--train_data", "{bad}"], 2,
                                          "row 8 (dialogue): control character U+0007", "ctrl_dialogue"),
    "control character in summary": Case(TRAIN + ["--train_data", "{bad}"], 2,
                                         "row 3 (summary): control character U+001B", "ctrl_summary"),
    "empty dialogue": Case(TRAIN + ["--train_data", "{bad}"], 2, "row 10 (dialogue): empty text", "empty_dialogue"),
    "missing column": Case(TRAIN + ["--train_data", "{bad}"], 2, "dialogue: required column is missing",
                           "no_dialogue"),
    "fname in train and test": Case(TRAIN + ["--train_data", "{train}", "--test_data", "{bad}"], 2,
                                    _rows("train").loc[5, "fname"], "overlap"),
    "k_folds above the rows": Case(TRAIN[:-2] + ["--mode", "kfold", "--k_folds", "5", "--max_train_samples", "3"],
                                   2, "k_folds=5 is more than the 3 training dialogue(s)"),
    "pretrained model on the bundled sample": Case(["train", "--models", "kobart", "--output_dir", "{out}"], 2,
                                                   "or --allow_sample_data (allow_sample_data: true)"),
    "max_eval_samples 0": Case(TRAIN + ["--max_eval_samples", "0"], 2, "max_eval_samples must be >= 1, got 0"),
    "stacking on a too small evaluation sample": Case(
        TRAIN[:-2] + ["--mode", "full", "--k_folds", "2", "--max_train_samples", "200", "--ensemble_strategy",
                      "stacking", "--max_eval_samples", "10"], 2,
        "leaves stacking 20 out-of-fold dialogues (2 folds); its meta-model needs at least 50"),
    "score without summary column": Case(["score", "--predictions", "{bad}", "--references", "{test}"], 2,
                                         "summary", "no_summary_pred"),
    "binary data file": Case(["data", "check", "{bad}"], 2, "bad.csv", "binary"),
    "split map of an unknown split": Case(TRAIN + ["--data_split_map", "validation=dev"], 2,
                                          "data_split_map 'validation=dev': 'validation' is not a raysum split"),
    "column map of an unknown column": Case(TRAIN + ["--data_columns", "title=name"], 2,
                                            "data_columns 'title=name': 'title' is not a raysum column"),
    "hf:// with a path": Case(TRAIN + ["--train_data", "hf://org/name/extra"], 2,
                              "a Hub dataset is hf://ORG/NAME or hf://ORG/NAME:CONFIG"),
}


def _snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                out[str(path)] = "dir"
    return out


def test_there_are_at_least_40_kinds_across_the_classes():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_early_and_clearly(name, world, capsys, monkeypatch):
    case = CASES[name]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if case.setup:
        DAMAGE[case.setup](world)
    args = list(case.args)
    for key, value in world.items():
        args = [a.replace("{" + key + "}", str(value)) for a in args]
    before = _snapshot(world["out"].parent)
    code = main(args)
    captured = capsys.readouterr()
    message = captured.err + captured.out
    assert code == case.code, message
    assert case.says in message, message
    assert "Traceback" not in message
    assert _snapshot(world["out"].parent) == before  # no new experiment directory, nothing changed
    shutil.rmtree(world["out"].parent / "somedir", ignore_errors=True)
