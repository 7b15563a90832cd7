"""Best epoch and early stopping: `select_best` keeps the weights of the epoch its metric
chose, `early_stopping_patience` ends training and says why, both survive a resume, and
the choice reaches unit.json, scores.json and the report."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from raysum.config import load_preset
from raysum.config.resolve import resolve
from raysum.errors import ConfigError
from raysum.pipeline import validate
from raysum.training import run_unit

from test_training_unit import korean_examples

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """40 training rows (10 dialogues x 4: 5 steps of 8 per epoch), 16 rows of the same for
    the quick units (2 steps per epoch), 5 held out for eval, 5 dev dialogues."""
    root = tmp_path_factory.mktemp("select-best-data")
    frame = korean_examples(20)
    train = pd.concat([frame.head(10)] * 4, ignore_index=True)
    train["fname"] = [f"train_{i}" for i in range(len(train))]
    train.to_parquet(root / "train.parquet")
    train.head(16).to_parquet(root / "small.parquet")
    frame.iloc[10:15].to_parquet(root / "eval.parquet")
    frame.iloc[15:20][["fname", "dialogue"]].to_parquet(root / "dev.parquet")
    return root


def unit_config(data_dir: Path, unit_dir: Path, preset: str = "tiny-bart", train: str = "train", **overrides) -> dict:
    settings = dataclasses.replace(load_preset(preset), **{
        "epochs": 3, "batch_size": 8, "learning_rate": 3e-2, "warmup_ratio": 0.0, "max_length": 4, "num_beams": 1,
        **overrides})
    return {"unit_dir": str(unit_dir), "model": dataclasses.asdict(settings), "fold": 0, "seed": 7,
            "train_path": str(data_dir / f"{train}.parquet"), "eval_path": str(data_dir / "eval.parquet"),
            "predict": {"dev": str(data_dir / "dev.parquet")}, "tokenizer_cache": str(data_dir / "tokenizers"),
            "resume": False}


def eval_rows(unit_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (unit_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval_loss" in r]


@pytest.fixture
def sealed_copies(tmp_path, monkeypatch) -> Path:
    """Every epoch checkpoint the unit seals is copied here (the unit deletes resume/ when done)."""
    import raysum.training.callbacks as callbacks

    into, seal = tmp_path / "sealed", callbacks.seal

    def copy_after_seal(checkpoint, step, record=None):
        seal(checkpoint, step, record)
        shutil.copytree(checkpoint, into / checkpoint.name, dirs_exist_ok=True)

    monkeypatch.setattr(callbacks, "seal", copy_after_seal)
    return into


def force_eval_losses(monkeypatch, losses: list[float]) -> None:
    """The evaluation of epoch e reports losses[e - 1] (everywhere: the log, the metrics the
    callbacks and the Trainer's best-epoch tracking read)."""
    from transformers import Trainer

    loop = Trainer.evaluation_loop

    def forced(self, *args, **kwargs):
        output = loop(self, *args, **kwargs)
        output.metrics["eval_loss"] = losses[round(self.state.epoch) - 1]
        return output

    monkeypatch.setattr(Trainer, "evaluation_loop", forced)


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- training
def test_rising_eval_loss_keeps_the_better_earlier_epoch(data_dir, tmp_path, sealed_copies):
    """Learning rate 3e-2 on tiny-bart: the held-out loss is lowest after epoch 1 and rises."""
    unit_dir = tmp_path / "unit"
    summary = run_unit(unit_config(data_dir, unit_dir, select_best="eval_loss"))
    losses = [r["eval_loss"] for r in eval_rows(unit_dir)]
    assert len(losses) == 3 and losses[0] < losses[1] < losses[2]
    assert {k: summary[k] for k in ("selected_by", "best_epoch", "best_step", "epochs_trained", "stopped_early",
                                    "stop_reason")} == {
        "selected_by": "eval_loss", "best_epoch": 1.0, "best_step": 5, "epochs_trained": 3.0, "stopped_early": False,
        "stop_reason": None}
    assert summary["eval_loss"] == losses[0] and summary["steps"] == 15
    assert json.loads((unit_dir / "unit.json").read_text()) == summary

    kept = load_file(unit_dir / "checkpoint" / "model.safetensors")
    assert same_tensors(kept, load_file(sealed_copies / "checkpoint-5" / "model.safetensors"))
    assert not same_tensors(kept, load_file(sealed_copies / "checkpoint-15" / "model.safetensors"))  # the last epoch
    assert not (unit_dir / "resume").exists()


def test_early_stopping_ends_training_and_records_why(data_dir, tmp_path):
    """Patience 1: epoch 2's loss is above epoch 1's, so 2 of 4 epochs train; no resume
    checkpoints (checkpoint_every 0), yet the best epoch's weights are saved and kept."""
    unit_dir = tmp_path / "unit"
    summary = run_unit(unit_config(data_dir, unit_dir, epochs=4, select_best="eval_loss", early_stopping_patience=1,
                                   checkpoint_every=0))
    assert [r["epoch"] for r in eval_rows(unit_dir)] == [1.0, 2.0]
    assert summary["steps"] == 10 and summary["epochs"] == 4 and summary["epochs_trained"] == 2.0
    assert summary["stopped_early"] is True and summary["best_epoch"] == 1.0
    assert summary["stop_reason"].startswith("eval_loss did not improve for 1 epoch(s) after epoch 1 (")


def test_lora_adapter_of_the_best_epoch_is_kept(data_dir, tmp_path, sealed_copies, monkeypatch):
    """A LoRA unit's epoch checkpoints hold the adapter alone; the best one is loaded back into
    the adapter (peft's load_adapter through the Trainer) before the unit saves and generates."""
    from peft import get_peft_model_state_dict

    import raysum.training.unit as unit_module

    force_eval_losses(monkeypatch, [1.0, 2.0])
    saved = {}
    save = unit_module.save_checkpoint

    def keep_adapter(run):
        saved.update({k: v.detach().clone() for k, v in get_peft_model_state_dict(run.trainer.model).items()})
        save(run)

    monkeypatch.setattr(unit_module, "save_checkpoint", keep_adapter)
    summary = run_unit(unit_config(data_dir, tmp_path / "unit", "tiny-llama", train="small", epochs=2,
                                   learning_rate=1e-2, lora=LORA, select_best="eval_loss"))
    assert (summary["best_epoch"], summary["best_step"], summary["eval_loss"]) == (1.0, 2, 1.0)
    assert set(load_file(sealed_copies / "checkpoint-2" / "adapter_model.safetensors")) == set(saved)
    assert same_tensors(saved, load_file(sealed_copies / "checkpoint-2" / "adapter_model.safetensors"))
    assert not same_tensors(saved, load_file(sealed_copies / "checkpoint-4" / "adapter_model.safetensors"))


def test_eval_score_picks_the_highest_scoring_epoch(data_dir, tmp_path, monkeypatch):
    """eval_score is greater-is-better: epoch 2 of scores 0.2, 0.9, 0.5 is kept."""
    scores = iter([0.2, 0.9, 0.5])
    monkeypatch.setattr("raysum.training.unit.score_eval_part", lambda model, tokenizer, unit: next(scores))
    config = unit_config(data_dir, tmp_path / "unit", train="small", select_best="eval_score")
    config["epoch_score"] = {"references": "unused (score_eval_part is replaced)", "tokenizer": "whitespace"}
    summary = run_unit(config)
    assert (summary["selected_by"], summary["best_epoch"], summary["best_step"]) == ("eval_score", 2.0, 4)
    assert summary["eval_score"] == 0.9


class Interrupted(Exception):
    pass


def test_early_stopping_and_the_best_epoch_survive_resumes(data_dir, tmp_path, monkeypatch):
    """Eval losses 3, 2, 2.5, 2.6, 1 with patience 2: training stops after epoch 4 and keeps
    epoch 2, also when the unit is interrupted in epoch 4 (the patience already spent in
    epoch 3 is replayed from the checkpoint's log history; without it epoch 5 would train and
    win) and again while generating (the resumed unit trains no further step)."""
    import raysum.training.unit as unit_module

    force_eval_losses(monkeypatch, [3.0, 2.0, 2.5, 2.6, 1.0])
    unit_dir = tmp_path / "unit"
    config = unit_config(data_dir, unit_dir, train="small", epochs=5, learning_rate=1e-3, select_best="eval_loss",
                         early_stopping_patience=2)

    def interrupt_in_epoch_four(metrics, checkpoint):
        if metrics.get("epoch") == 4.0:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_unit(config, report=interrupt_in_epoch_four)
    assert sorted(p.name for p in (unit_dir / "resume").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]

    generate = unit_module.generate

    def interrupt_generation(run):
        raise Interrupted

    monkeypatch.setattr(unit_module, "generate", interrupt_generation)
    with pytest.raises(Interrupted):
        run_unit({**config, "resume": True})
    monkeypatch.setattr(unit_module, "generate", generate)
    summary = run_unit({**config, "resume": True})

    assert summary["resumed_from_step"] == 8 and summary["steps"] == 8  # trained no further step
    assert (summary["best_epoch"], summary["best_step"], summary["eval_loss"]) == (2.0, 4, 2.0)
    assert summary["stopped_early"] and "after epoch 2 (2.0000)" in summary["stop_reason"]
    assert [r["epoch"] for r in eval_rows(unit_dir)] == [1.0, 2.0, 3.0, 4.0]  # nothing logged twice


# --------------------------------------------------------------------------- settings
def test_settings_are_per_model_global_checked_and_shape_the_unit(capsys):
    from raysum.cli import main
    from raysum.pipeline._resume import unit_settings

    assert main(["config", "show", "--mode", "multi_model", "--models", "tiny-bart", "tiny-llama", "--select_best",
                 "eval_loss", "--early_stopping_patience", "1", "--set", "models.tiny-llama.select_best=last",
                 "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)["models"]
    assert tree["tiny-bart"]["select_best"] == {"value": "eval_loss", "source": "cli"}
    assert tree["tiny-llama"]["select_best"] == {"value": "last", "source": "cli"}
    assert tree["tiny-llama"]["early_stopping_patience"] == {"value": 1, "source": "cli"}

    cfg = validate(resolve({"mode": "multi_model", "models": ["tiny-bart", "tiny-llama"], "select_best": "eval_loss",
                            "early_stopping_patience": 1},
                           overrides=["models.tiny-llama.select_best=eval_score"]))
    assert (cfg.models["tiny-bart"].select_best, cfg.models["tiny-llama"].select_best) == ("eval_loss", "eval_score")
    assert cfg.models["tiny-llama"].early_stopping_patience == 1
    assert unit_settings(cfg, "tiny-bart")["select_best"] == "eval_loss"  # a resume refuses a changed value
    assert unit_settings(cfg, "tiny-bart")["early_stopping_patience"] == 1

    with pytest.raises(ConfigError) as error:
        validate(resolve({"models": ["tiny-bart"]}, overrides=["models.tiny-bart.select_best=best",
                                                               "models.tiny-bart.early_stopping_patience=-1"]))
    assert "select_best 'best': choose last, eval_loss, eval_score" in str(error.value)
    assert "early_stopping_patience must be in [0, 1000], got -1" in str(error.value)
    with pytest.raises(ConfigError, match="select_best 'first'"):
        validate(resolve({"models": ["tiny-bart"], "select_best": "first"}))

    never = validate(resolve({"models": ["tiny-bart"], "epochs": 3, "early_stopping_patience": 2}))
    assert any("cannot stop early" in w for w in never.warnings)


def test_unit_refuses_a_selection_it_cannot_make(data_dir, tmp_path):
    from raysum.training.validation import epoch_selection_problems

    settings = load_preset("tiny-bart")
    assert epoch_selection_problems(settings, has_eval=False, scores_epochs=False) == []
    eval_loss = dataclasses.replace(settings, select_best="eval_loss")
    assert "no eval data" in epoch_selection_problems(eval_loss, has_eval=False, scores_epochs=False)[0]
    patience = dataclasses.replace(settings, early_stopping_patience=2)
    assert "early_stopping_patience needs a held-out part" in epoch_selection_problems(patience, False, False)[0]
    score = dataclasses.replace(settings, select_best="eval_score")
    assert "references" in epoch_selection_problems(score, has_eval=True, scores_epochs=False)[0]
    assert epoch_selection_problems(score, has_eval=True, scores_epochs=True) == []

    config = unit_config(data_dir, tmp_path / "unit", train="small", select_best="eval_score")
    with pytest.raises(ConfigError, match="select_best eval_score needs"):
        run_unit(config)
    assert not (tmp_path / "unit" / "metrics.jsonl").exists()


def test_the_pipeline_scores_epochs_for_an_eval_score_unit(tmp_path):
    from raysum.pipeline import Unit, unit_config as pipeline_unit_config

    cfg = validate(resolve({"mode": "kfold", "models": ["tiny-bart"], "k_folds": 2},
                           overrides=["models.tiny-bart.select_best=eval_score"]))
    fold = pipeline_unit_config(tmp_path, cfg, Unit("tiny-bart", 0), baseline=False)
    assert fold["epoch_score"]["references"].endswith("train.parquet")  # the OOF part's references
    full = pipeline_unit_config(tmp_path, cfg, Unit("tiny-bart", None), baseline=False)
    assert full["epoch_score"]["references"].endswith("dev.parquet")  # a unit without folds holds out dev
    plain = validate(resolve({"mode": "kfold", "models": ["tiny-bart"], "k_folds": 2, "select_best": "eval_loss"}))
    assert "epoch_score" not in pipeline_unit_config(tmp_path, plain, Unit("tiny-bart", 0), baseline=False)


# --------------------------------------------------------------------------- report
def test_report_and_scores_table_show_the_kept_epoch(tmp_path):
    from rich.console import Console

    from raysum.experiment import unit_selection
    from raysum.pipeline._progress import print_scores
    from raysum.report import write_report

    from test_report import build_experiment, tables_under

    path = build_experiment(tmp_path)
    info_file = path / "units" / "tiny-bart" / "fold0" / "unit.json"
    info = json.loads(info_file.read_text())
    info.update(selected_by="eval_loss", best_epoch=1.0, best_step=5, epochs_trained=2.0, stopped_early=True,
                stop_reason="eval_loss did not improve for 1 epoch(s) after epoch 1 (2.0000)", epochs=3)
    info_file.write_text(json.dumps(info))
    scores = json.loads((path / "scores.json").read_text())
    scores["units"]["tiny-bart/fold0"]["selection"] = unit_selection(info)  # as the pipeline's scoring copies it
    (path / "scores.json").write_text(json.dumps(scores))
    write_report(path, plots=False)

    text = (path / "report.md").read_text(encoding="utf-8")
    training, score_table = tables_under(text, "### tiny-bart\n")
    row = next(r for r in training if r["unit"] == "tiny-bart/fold0")
    assert (row["kept epoch"], row["epochs trained"]) == ("1 (eval_loss)", "2 of 3, stopped early")
    assert next(r for r in training if r["unit"] == "tiny-bart/fold1")["kept epoch"] == "-"  # not recorded
    assert {r["epoch"] for r in score_table if r["unit"] == "tiny-bart/fold0"} == {"1 (eval_loss)"}
    assert "tiny-bart/fold0 stopped early: eval_loss did not improve for 1 epoch(s) after epoch 1" in text

    console = Console(record=True, width=220)
    print_scores(scores, console)
    assert "1 (eval_loss, stopped early)" in console.export_text()


def test_scoring_copies_the_kept_epoch_into_scores_json(tmp_path):
    from builders import finished_experiment

    from raysum.experiment import Experiment
    from raysum.pipeline import Unit
    from raysum.pipeline._collect import score_experiment

    path = finished_experiment(tmp_path / "exp")
    exp = Experiment(path)
    record = {"status": "done", "selected_by": "eval_loss", "best_epoch": 1.0, "best_step": 5, "epochs_trained": 2.0,
              "stopped_early": True, "stop_reason": "eval_loss did not improve for 1 epoch(s) after epoch 1 (2.0000)"}
    unit = exp.unit("tiny-bart", 0)
    unit.path.mkdir(parents=True, exist_ok=True)
    unit.write_info(record)
    units = [Unit(m, f) for m in ("tiny-bart", "tiny-llama") for f in (0, 1)]
    scores = score_experiment(path, exp.resolved(), units, exp.candidates())
    assert scores["units"]["tiny-bart/fold0"]["selection"] == {k: v for k, v in record.items() if k != "status"}
    assert "selection" not in scores["units"]["tiny-bart/fold1"]  # no unit.json: nothing invented
