"""Resume safety: a unit's recorded settings against an edited config.json, and one writer
per experiment directory (the lock)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from raysum.config.resolve import resolve
from raysum.errors import ConfigError
from raysum.experiment import Experiment, layout
from raysum.experiment.lock import ExperimentLock, LockedError, held
from raysum.pipeline._experiment import plan_units
from raysum.pipeline._resume import check_resume, input_settings, unit_settings


def _experiment(tmp_path, **settings):
    cfg = resolve({"models": ["tiny-bart"], "mode": "kfold", "k_folds": 2, **settings})
    path = tmp_path / "exp"
    exp = Experiment(path)
    path.mkdir()
    exp.write_run_info({"inputs": input_settings(cfg)})
    for unit in plan_units(cfg):
        exp.unit(unit.model, unit.fold).path.mkdir(parents=True)
        exp.unit(unit.model, unit.fold).write_info({"status": "done", "settings": unit_settings(cfg, unit.model)})
    return path, cfg


def test_resume_refuses_units_trained_with_other_settings(tmp_path):
    path, cfg = _experiment(tmp_path)
    assert check_resume(path, cfg, plan_units(cfg)) == []
    edited = resolve({"models": ["tiny-bart"], "mode": "kfold", "k_folds": 2, "epochs": 5, "learning_rate": 1e-3})
    with pytest.raises(ConfigError) as err:
        check_resume(path, edited, plan_units(edited))
    text = str(err.value)
    for unit in ("tiny-bart/fold0", "tiny-bart/fold1"):
        assert f"unit {unit} was trained with other settings" in text
    old = cfg.models["tiny-bart"]
    assert f"epochs: {old.epochs!r} -> 5.0" in text and f"learning_rate: {old.learning_rate!r} -> 0.001" in text
    assert "--retrain_changed" in text
    # nothing moved by the refusal
    assert Experiment(path).unit("tiny-bart", 0).done()


def test_retrain_changed_moves_exactly_the_changed_units_aside(tmp_path):
    path, cfg = _experiment(tmp_path)
    exp = Experiment(path)
    # fold1 was trained with 5 epochs already: only fold0 differs from the edited config
    exp.unit("tiny-bart", 1).write_info({"status": "done", "settings": {**unit_settings(cfg, "tiny-bart"),
                                                                        "epochs": 5.0}})
    edited = resolve({"models": ["tiny-bart"], "mode": "kfold", "k_folds": 2, "epochs": 5})
    assert check_resume(path, edited, plan_units(edited), retrain_changed=True) == ["tiny-bart/fold0"]
    assert not exp.unit("tiny-bart", 0).path.exists() and exp.unit("tiny-bart", 1).done()
    kept = list((path / layout.REPLACED_DIR).glob(f"*/tiny-bart/fold0/{layout.UNIT_JSON}"))
    assert len(kept) == 1
    assert json.loads(kept[0].read_text())["settings"]["epochs"] == cfg.models["tiny-bart"].epochs


def test_resume_refuses_changed_input_settings_even_with_retrain(tmp_path):
    path, cfg = _experiment(tmp_path)
    edited = resolve({"models": ["tiny-bart"], "mode": "kfold", "k_folds": 3})
    with pytest.raises(ConfigError, match=r"k_folds: 2 -> 3") as err:
        check_resume(path, edited, plan_units(edited), retrain_changed=True)
    assert "start a new experiment" in str(err.value)


def test_partially_trained_unit_is_checked_by_its_last_start(tmp_path):
    path, cfg = _experiment(tmp_path)
    unit = Experiment(path).unit("tiny-bart", 0)
    unit.info_file.unlink()  # interrupted: no unit.json, one start recorded
    unit.record_attempt("node", 0.0, {**unit_settings(cfg, "tiny-bart"), "num_beams": 2})
    with pytest.raises(ConfigError, match=r"tiny-bart/fold0 .*num_beams: 2 -> 4"):
        check_resume(path, cfg, plan_units(cfg))


def test_lock_refuses_a_second_writer_and_names_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from raysum.experiment.lock import ExperimentLock\n"
        f"lock = ExperimentLock({str(tmp_path)!r}, 'train').acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError) as err:
            ExperimentLock(tmp_path, "ensemble").acquire()
        assert f"pid {holder.pid} on {socket.gethostname()} (raysum train" in str(err.value)
        holder.kill()
        holder.wait()
        # the holder died without releasing: its lock is stale, removed with a note
        with ExperimentLock(tmp_path, "ensemble") as lock:
            assert any(f"stale lock of pid {holder.pid}" in n for n in lock.notes)
            assert held() == [lock]
            assert json.loads((tmp_path / layout.LOCK_FILE).read_text())["pid"] == os.getpid()
        assert not (tmp_path / layout.LOCK_FILE).exists() and held() == []
    finally:
        holder.kill()


def test_lock_of_another_host_or_damaged_is_refused_with_what_to_do(tmp_path):
    lock_file = tmp_path / layout.LOCK_FILE
    lock_file.write_text(json.dumps({"pid": 1, "host": "other-host", "command": "train", "since": 0}))
    with pytest.raises(LockedError, match="on other-host .*delete"):
        ExperimentLock(tmp_path, "report").acquire()
    lock_file.write_text("{torn")
    with pytest.raises(LockedError, match="is damaged"):
        ExperimentLock(tmp_path, "report").acquire()


def test_lock_is_reentrant_within_one_process(tmp_path):
    with ExperimentLock(tmp_path, "train", resume="raysum train --resume X"):
        with ExperimentLock(tmp_path, "report"):  # the run's own report step
            pass
        assert (tmp_path / layout.LOCK_FILE).exists()
        assert held()[0].resume == "raysum train --resume X"
    assert not (tmp_path / layout.LOCK_FILE).exists()


def test_a_second_command_writing_the_experiment_is_refused(tmp_path, capsys):
    from raysum.cli import main

    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from raysum.experiment.lock import ExperimentLock\n"
        f"lock = ExperimentLock({str(tmp_path)!r}, 'train').acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["ensemble", "--experiment", str(tmp_path), "--strategy", "voting"],
                        ["report", str(tmp_path)], ["train", "--resume", str(tmp_path)]):
            assert main(command) == 1, command
            assert f"is being written by pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_resume_may_move_to_another_cluster_but_keeps_every_other_setting(tmp_path, monkeypatch, capsys):
    """--ray_address says where a resume runs, not what it trains: it is accepted and reaches
    Ray's start; any other setting given with --resume is still refused."""
    import raysum.pipeline._run as run_module
    from raysum.cli import main
    from raysum.errors import RaysumError

    path, cfg = _experiment(tmp_path)
    Experiment(path).write_config(cfg)
    calls = []

    def stop(address=None, num_cpus=None):
        calls.append(address)
        raise RaysumError("stopped before Ray started")

    monkeypatch.setattr(run_module, "init_ray", stop)
    assert main(["train", "--resume", str(path), "--ray_address", "10.1.2.3:6379"]) != 0
    assert "stopped before Ray started" in capsys.readouterr().err and calls == ["10.1.2.3:6379"]
    assert main(["train", "--resume", str(path), "--ray_address", "10.1.2.3:6379", "--epochs", "2"]) == 2
    assert "drop --epochs" in capsys.readouterr().err and len(calls) == 1
