"""A unit's overheads: resume checkpoints every `checkpoint_every` epochs (the last one
written after the timed loop), batches collated in `dataloader_num_workers` processes,
and `compile` reaching the Trainer."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainingArguments

from raysum.config import load_preset
from raysum.config.resolve import resolve
from raysum.pipeline import validate
from raysum.training import training_arguments_kwargs
from raysum.training.callbacks import CheckpointEvery


def _kwargs(tmp_path, cuda=False, **settings):
    preset = dataclasses.replace(load_preset("tiny-bart"), **settings)
    return training_arguments_kwargs(preset, tmp_path, num_examples=40, has_eval=True,
                                     precision="fp32", cuda=cuda, seed=1)


def test_compile_workers_and_checkpoints_reach_the_training_arguments(tmp_path):
    default = _kwargs(tmp_path)
    assert default["torch_compile"] is False and default["dataloader_num_workers"] == 0
    assert not default["dataloader_persistent_workers"] and not default["dataloader_pin_memory"]
    assert default["save_strategy"] == "epoch"

    tuned = _kwargs(tmp_path, cuda=True, compile=True, dataloader_num_workers=2, checkpoint_every=0)
    assert tuned["torch_compile"] is True and tuned["save_strategy"] == "no"
    assert tuned["dataloader_num_workers"] == 2 and tuned["dataloader_persistent_workers"]
    assert tuned["dataloader_pin_memory"] and tuned["dataloader_prefetch_factor"] == 2

    # transformers accepts them as they are (on CPU: no pinning, no CUDA needed to build the arguments)
    args = TrainingArguments(**_kwargs(tmp_path, compile=True, dataloader_num_workers=2))
    assert args.torch_compile and args.dataloader_num_workers == 2 and args.dataloader_persistent_workers


def test_gpu_presets_collate_in_two_workers_and_tiny_presets_in_process():
    for name in ("kobart", "llama-3.2-korean-3b", "qwen3-4b"):
        assert load_preset(name).dataloader_num_workers == 2
    for name in ("tiny-bart", "tiny-llama", "tiny-qwen3"):
        settings = load_preset(name)
        assert (settings.dataloader_num_workers, settings.checkpoint_every, settings.compile) == (0, 1, False)


def test_settings_resolve_from_the_command_line():
    cfg = validate(resolve({"models": ["tiny-bart"]}, overrides=[
        "models.tiny-bart.checkpoint_every=2", "models.tiny-bart.compile=true",
        "models.tiny-bart.dataloader_num_workers=1"]))
    settings = cfg.models["tiny-bart"]
    assert (settings.checkpoint_every, settings.compile, settings.dataloader_num_workers) == (2, True, 1)
    with pytest.raises(Exception, match="checkpoint_every must be"):
        validate(resolve({"models": ["tiny-bart"]}, overrides=["models.tiny-bart.checkpoint_every=-1"]))


@pytest.mark.parametrize("every, saved", [(1, [1, 2, 3]), (2, [2]), (3, [3]), (0, [])])
def test_checkpoint_every_saves_inside_the_loop_at_its_epochs_but_never_the_last(every, saved):
    callback = CheckpointEvery(every)
    kept = []
    for epoch in (1, 2, 3, 4):
        control = TrainerControl(should_save=True)  # transformers' flow callback asks at every epoch end
        state = SimpleNamespace(epoch=float(epoch), global_step=5 * epoch, max_steps=20)
        callback.on_epoch_end(None, state, control)
        if control.should_save:
            kept.append(epoch)
    assert kept == [e for e in saved if e < 4]  # epoch 4 is the last: written after the loop


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_resume_with_checkpoint_every_two(tmp_path, monkeypatch):
    """3 epochs of 5 steps, checkpoint_every 2: the loop checkpoints step 10 only; the last
    (step 15) comes after the timed loop; a unit stopped in epoch 3 resumes from 10, one
    stopped while generating resumes from 15 without training again."""
    from test_training_unit import unit_config

    from raysum.training import run_unit

    data_dir = tmp_path / "data"
    _write_data(data_dir)
    unit_dir = tmp_path / "fold0"
    config = unit_config(data_dir, unit_dir, "tiny-bart", max_length=4, num_beams=1, checkpoint_every=2)
    config["predict"] = {"dev": config["predict"]["dev"]}

    reports = []

    def stop_in_epoch_three(metrics, checkpoint):
        reports.append(metrics.get("epoch"))
        if len(reports) == 3:  # after epoch 3's evaluation, before anything is saved
            raise Interrupted

    with pytest.raises(Interrupted):
        run_unit(config, report=stop_in_epoch_three)
    assert _checkpoints(unit_dir) == ["checkpoint-10"]

    monkeypatch.setattr("raysum.training.unit.generate", _stopped)
    with pytest.raises(Interrupted):
        run_unit({**config, "resume": True})
    assert _checkpoints(unit_dir) == ["checkpoint-10", "checkpoint-15"]  # the last one, after the loop
    monkeypatch.undo()

    summary = run_unit({**config, "resume": True})
    assert summary["resumed_from_step"] == 15 and summary["steps"] == 15
    assert summary["train_s"] >= 0 and summary["save_s"] >= 0 and summary["resume_checkpoint_s"] < 1
    assert not (unit_dir / "resume").exists()
    steps = [json.loads(line)["step"] for line in (unit_dir / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] == 15


@pytest.mark.slow
def test_checkpoint_every_zero_writes_no_resume_checkpoint(tmp_path, monkeypatch):
    from test_training_unit import unit_config

    from raysum.training import run_unit

    data_dir = tmp_path / "data"
    _write_data(data_dir)
    config = unit_config(data_dir, tmp_path / "fold0", "tiny-bart", epochs=2, max_length=4, num_beams=1,
                         checkpoint_every=0)
    config["predict"] = {"dev": config["predict"]["dev"]}
    monkeypatch.setattr("raysum.training.unit.generate", _stopped)
    with pytest.raises(Interrupted):
        run_unit(config)
    assert _checkpoints(tmp_path / "fold0") == []


def _stopped(run):
    raise Interrupted  # the unit stopped while generating


def _checkpoints(unit_dir) -> list[str]:
    resume = unit_dir / "resume"
    return sorted(p.name for p in resume.iterdir() if p.name.startswith("checkpoint-")) if resume.is_dir() else []


def _write_data(root) -> None:
    """40 training rows (10 distinct, 5 steps of 8 per epoch), 5 eval, 5 dev."""
    import pandas as pd
    from test_training_unit import korean_examples

    root.mkdir(parents=True)
    frame = korean_examples(20)
    train = pd.concat([frame.head(10)] * 4, ignore_index=True)
    train["fname"] = [f"train_{i}" for i in range(len(train))]
    train.to_parquet(root / "train.parquet")
    frame.iloc[10:15].to_parquet(root / "eval.parquet")
    for split in ("oof", "dev", "test"):
        frame.iloc[15:20][["fname", "dialogue"]].to_parquet(root / f"{split}.parquet")


def test_a_unit_recorded_before_these_settings_existed_still_resumes(tmp_path):
    """A unit.json written by a raysum without the new settings ran with their defaults."""
    from test_resume_safety import _experiment

    from raysum.errors import ConfigError
    from raysum.experiment import Experiment
    from raysum.pipeline._experiment import plan_units
    from raysum.pipeline._resume import check_resume

    path, cfg = _experiment(tmp_path)
    for fold in (0, 1):
        files = Experiment(path).unit("tiny-bart", fold)
        info = files.info()
        for key in ("max_tokens_per_batch", "checkpoint_every", "dataloader_num_workers", "compile"):
            info["settings"].pop(key, None)
        files.write_info(info)
    assert check_resume(path, cfg, plan_units(cfg)) == []
    budget = resolve({"models": ["tiny-bart"], "mode": "kfold", "k_folds": 2},
                     overrides=["models.tiny-bart.max_tokens_per_batch=512", "models.tiny-bart.checkpoint_every=3"])
    with pytest.raises(ConfigError, match="max_tokens_per_batch: 0 -> 512") as err:
        check_resume(path, budget, plan_units(budget))
    assert "checkpoint_every" not in str(err.value)  # changes neither what a unit learns nor generates
