"""Stage 1: the training search (Ray Tune + OptunaSearch + ASHA, a unit per trial),
resuming it after an interruption, and `raysum analyze` of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from raysum.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Small enough for CPU: 1-2 epochs of tiny-bart on 48 dialogues (fold 0 of 60, k_folds 5).
SPACE = """
space: training
parameters:
  epochs: {kind: int, low: 1, high: 2}
  learning_rate: {kind: loguniform, low: 1.0e-4, high: 1.0e-2}
  gradient_accumulation_steps: {kind: choice, values: [1, 2]}
  warmup_ratio: {kind: uniform, low: 0.0, high: 0.2}
  lora.r: {kind: choice, values: [4, 8]}
"""
SEARCH_FLAGS = ["--models", "tiny-bart", "--max_train_samples", "60", "--trials", "3"]


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def only_dir(root: Path) -> Path:
    dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def trial_states(run: Path) -> dict[str, str]:
    """trial_id -> status from Tune's newest experiment state file."""
    files = sorted(run.glob("experiment_state*.json"))  # named by creation time
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text(encoding="utf-8"))
    except json.JSONDecodeError:  # being written
        return {}
    states = [json.loads(t[0]) if isinstance(t[0], str) else t[0] for t in data["trial_data"]]
    return {s["trial_id"]: s["status"] for s in states}


def _all_cores_free() -> None:
    import ray

    deadline = time.time() + 30
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_clear_error_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    bad = write(tmp_path, """
space: training
parameters:
  learning_rate: {kind: loguniform, low: 1.0e-5, high: 1.0e-3}
  num_beams: {kind: choice, values: [1, 4]}
""", "bad.yaml")
    rc = main(["tune", "--space", str(bad), "--models", "tiny-bart", "--output_dir", str(out)])
    assert rc == 2 and "num_beams: not a training parameter" in capsys.readouterr().err

    ranges = write(tmp_path, """
space: training
parameters:
  gradient_accumulation_steps: {kind: choice, values: [0, 2]}
models:
  tiny-bart:
    lora.r: {kind: choice, values: [4, 8]}
  kobart:
    learning_rate: {kind: loguniform, low: 1.0e-5, high: 1.0e-4}
""", "ranges.yaml")
    rc = main(["tune", "--space", str(ranges), "--models", "tiny-bart", "--scheduler", "hyperband", "--metric",
               "bleu", "--trials", "0", "--output_dir", str(out)])
    err = capsys.readouterr().err
    for expected in ("gradient_accumulation_steps=0: gradient_accumulation_steps must be >= 1",
                     "models.tiny-bart.lora.r: tiny-bart is a full fine-tune",
                     "--scheduler 'hyperband' is unknown", "--metric 'bleu' is unknown",
                     "--trials must be at least 1"):
        assert expected in err, expected
    assert rc == 2

    training = str(ROOT / "search_spaces" / "training.yaml")
    rc = main(["tune", "--space", training, "--models", "tiny-bart", "--experiment", str(tmp_path)])
    assert rc == 2 and "is a training space" in capsys.readouterr().err
    rc = main(["tune", "--space", str(ROOT / "search_spaces" / "ensemble.yaml"), "--experiment", str(tmp_path),
               "--scheduler", "asha", "--epochs", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "drop --epochs, --scheduler" in err
    rc = main(["train", "--mode", "optuna", "--models", "tiny-bart", "--output_dir", str(out)])
    assert rc == 2 and "--mode optuna searches training settings: give --space" in capsys.readouterr().err
    rc = main(["train", "--models", "tiny-bart", "--space", training, "--output_dir", str(out)])
    assert rc == 2 and "for --mode optuna only" in capsys.readouterr().err
    assert not out.exists(), "a refused search created its directory"


# --------------------------------------------------------------------------- search, analyze, best config


@pytest.mark.slow
def test_search_with_asha_then_analyze_and_the_best_config_reproduces_the_trial(tmp_path, capsys, ray_shutdown):
    from raysum.config.resolve import resolve
    from raysum.experiment import Experiment
    from raysum.pipeline import preflight, validate

    def load_resolved(path): return Experiment(path).resolved()
    from raysum.tune.training_search import apply_params

    space, out = write(tmp_path, SPACE), tmp_path / "out"
    rc = main(["tune", "--space", str(space), *SEARCH_FLAGS, "--scheduler", "asha", "--metric", "dev_score",
               "--tokenizer", "whitespace", "--num_beams", "1", "--num_cpus", "2", "--seed", "5", "--output_dir", str(out), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    path = only_dir(out)
    assert result["metric"] == "eval_score" and result["scheduler"] == "asha" and result["seed"] == 5
    best = result["best"]["tiny-bart"]
    assert best["trials"] == 3 and best["errors"] == 0
    # each trial writes its own TensorBoard events (concurrent trials never share a folder)
    assert len(list((path / "tensorboard").glob("tiny-bart_*"))) == 3
    assert set(best["params"]) == {"epochs", "learning_rate", "gradient_accumulation_steps", "warmup_ratio"}, \
        "lora.r does not apply to a full fine-tune"
    run = path / "tune" / "training_tiny-bart"
    assert set(trial_states(run).values()) == {"TERMINATED"} and len(trial_states(run)) == 3
    for trial_dir in run.glob("training_trial_*"):  # each unit scored its held-out part after every epoch
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        per_epoch = [r for r in rows if r.get("epoch") is not None]
        assert per_epoch and all(0 <= r["eval_score"] <= 100 and r["eval_loss"] > 0 for r in per_epoch)
        assert [r["epoch"] for r in per_epoch] == [float(e) for e in range(1, len(per_epoch) + 1)]
    _all_cores_free()  # trials ASHA stopped gave their worker's core back
    units = sorted((path / "tune" / "units" / "tiny-bart").iterdir())
    assert len(units) == 3
    for unit in units:  # no OOF, dev or test summaries inside a trial
        if (unit / "predictions.parquet").is_file():
            assert pd.read_parquet(unit / "predictions.parquet").empty
    folds = pd.read_csv(path / "folds.csv")
    assert len(folds) == 60 and (path / "inputs" / "fold0_heldout.parquet").is_file()

    assert main(["analyze", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "eval_score" in printed and "TERMINATED" in printed
    analysis = path / "analysis"
    trials = pd.read_csv(analysis / "trials.csv")
    assert len(trials) == 3 and set(trials["model"]) == {"tiny-bart"}
    assert trials["eval_score"].max() == pytest.approx(best["eval_score"])
    for name in ("objective_over_trials.png", "params_vs_objective.png", "param_importance.png"):
        assert (analysis / name).stat().st_size > 5000

    # The best YAML is complete and accepted by `raysum train --config` (its checks before work)
    # and `raysum config show --config`; the settings it trains with are the best trial's.
    best_yaml = analysis / "best_config.yaml"
    cfg = validate(resolve(config_file=best_yaml))
    preflight(cfg)
    assert list(cfg.models) == ["tiny-bart"] and cfg.experiment.mode == "kfold"
    top = trials.loc[trials["eval_score"].idxmax()]
    trial_dir = next(run.glob(f"training_trial_{top['trial_id']}_*"))
    trial_params = json.loads((trial_dir / "params.json").read_text())  # what Tune gave the trial
    settings = cfg.models["tiny-bart"]
    for key, value in trial_params.items():
        assert getattr(settings, key) == pytest.approx(value), key
    search_cfg = load_resolved(path)
    expected = apply_params(asdict(search_cfg.models["tiny-bart"]), trial_params)
    assert asdict(settings) == expected
    assert cfg.experiment.max_train_samples == 60
    assert main(["config", "show", "--json", "--config", str(best_yaml)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["models"]["tiny-bart"]["learning_rate"]["value"] == pytest.approx(trial_params["learning_rate"])


# --------------------------------------------------------------------------- interrupted and resumed


def _raysum(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from raysum.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def _unit_record(path: Path, trial: str) -> bytes:
    """unit.json of a finished unit; metrics.jsonl of one ASHA stopped (no unit.json)."""
    unit = path / "tune" / "units" / "tiny-bart" / trial
    return (unit / "unit.json" if (unit / "unit.json").is_file() else unit / "metrics.jsonl").read_bytes()


@pytest.mark.slow
def test_an_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path):
    space, out = write(tmp_path, SPACE), tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    # Through the seed's --mode optuna spelling; 2 trials at once, so the third is still to
    # run (or running) when the first finished one is seen and the search is interrupted.
    first = subprocess.Popen(_raysum("train", "--mode", "optuna", "--space", str(space), *SEARCH_FLAGS,
                                     "--num_cpus", "2", "--output_dir", str(out)),
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    finished: dict[str, str] = {}
    while time.time() < deadline and first.poll() is None:
        runs = list(out.glob("*/tune/training_tiny-bart"))
        states = trial_states(runs[0]) if runs else {}
        finished = {t for t, s in states.items() if s == "TERMINATED"}
        if finished:
            break
        time.sleep(0.5)
    assert first.poll() is None and finished, "the search ended before it could be interrupted"
    first.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and stops
    log = first.communicate(timeout=120)[0]
    assert first.returncode != 0 and "raysum tune --resume" in log, log[-3000:]

    path = only_dir(out)
    run = path / "tune" / "training_tiny-bart"
    states = trial_states(run)
    done_before = {t for t, s in states.items() if s == "TERMINATED"}
    assert done_before and len(done_before) < 3
    kept = {t: ((next(run.glob(f"training_trial_{t}_*")) / "result.json").read_bytes(), _unit_record(path, t))
            for t in done_before}

    second = subprocess.run(_raysum("tune", "--resume", str(path), "--json"), env=env, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    states = trial_states(run)
    assert len(states) == 3 and set(states.values()) == {"TERMINATED"}
    for trial, (result, unit) in kept.items():  # finished trials were not run again
        assert (next(run.glob(f"training_trial_{trial}_*")) / "result.json").read_bytes() == result
        assert _unit_record(path, trial) == unit
    best = json.loads((path / "tune" / "training_best.json").read_text())
    assert best["best"]["tiny-bart"]["trials"] == 3 and best["metric"] == "eval_loss"
