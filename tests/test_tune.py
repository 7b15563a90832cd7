"""Search spaces, the stage-2 ensemble search through the CLI, and `raysum analyze`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from raysum.cli import main
from raysum.errors import ConfigError
from raysum.tune.space import EACH_MODEL, load_space, to_optuna, to_tune

from builders import MODELS, finished_experiment

ROOT = Path(__file__).resolve().parents[1]
SPACE_FILES = sorted((ROOT / "search_spaces").glob("*.yaml"))


# --------------------------------------------------------------------------- spaces


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.name)
def test_every_search_space_file_loads_and_converts(path):
    space = load_space(path)
    assert path.read_text(encoding="utf-8").startswith("#"), "each file documents its format in a header comment"
    models = sorted(set(space.models) | {m for m in space.weights if m != EACH_MODEL}) + ["other-model"]
    tune_space, optuna_space = to_tune(space, models), to_optuna(space, models)
    assert set(tune_space) == set(optuna_space) and tune_space
    if space.space == "ensemble":
        assert {f"weights.{m}" for m in models} <= set(tune_space)
        assert set(space.parameters["strategy"].values) == {"voting", "weighted_avg", "stacking"}


def test_the_three_spaces_exist():
    assert {p.stem for p in SPACE_FILES} >= {"training", "decoding", "ensemble"}
    training = load_space(ROOT / "search_spaces" / "training.yaml")
    assert {"epochs", "learning_rate", "gradient_accumulation_steps", "warmup_ratio", "lora.r"} <= set(
        training.parameters)


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, """
space: training
parameters:
  learning_rate: {kind: loguniform, low: 0.0, high: 1.0e-3}
  epochs: {kind: int, low: 1.5, high: 4}
  warmup_ratio: {kind: uniform, low: 0.3, high: 0.1}
  lora.r: {kind: choice, values: []}
  beams: {kind: choice, values: [1, 2]}
  batch_size: {kind: gaussian, mean: 1}
  gradient_accumulation_steps: {kind: int, low: 1, high: 8, step: 3, extra: 1}
extra_key: 1
""")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    text = "\n".join(info.value.problems)
    for expected in ("loguniform needs low > 0", "epochs: low must be an integer", "warmup_ratio: low (0.3) must be "
                     "below high", "lora.r: choice needs values", "beams: not a training parameter",
                     "batch_size: kind is 'gaussian'", "unknown key(s) ['extra']", "multiple of step",
                     "unknown top-level key(s) ['extra_key']"):
        assert expected in text
    assert len(info.value.problems) >= 9


def test_ensemble_space_checks_strategies_and_models(tmp_path):
    path = write(tmp_path, """
space: ensemble
parameters:
  strategy: {kind: choice, values: [voting, weighted_avg, bagging]}
  weights.kobart: {kind: uniform, low: -1.0, high: 1.0}
""")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    text = "\n".join(info.value.problems)
    assert "unknown ensemble strategy 'bagging'" in text and "weights must be numbers >= 0" in text

    ok = load_space(write(tmp_path, """
space: ensemble
parameters:
  strategy: {kind: choice, values: [voting, weighted_avg]}
  weights.kobart: {kind: loguniform, low: 1e-3, high: 1}
""", "ok.yaml"))
    assert ok.weights["kobart"].low == pytest.approx(1e-3)  # YAML's "1e-3" string read as the number
    with pytest.raises(ConfigError, match="not in the experiment"):
        to_tune(ok, ["qwen3-4b"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_space(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="space is 'stage3'"):
        load_space(write(tmp_path, "space: stage3\nparameters: {epochs: {kind: int, low: 1, high: 2}}\n"))


# --------------------------------------------------------------------------- a tiny experiment


@pytest.fixture
def experiment(tmp_path):
    """A finished 2 models x 2 folds experiment: 16 train (OOF) and 6 dev dialogues."""
    return finished_experiment(tmp_path / "20260101_000000_experiment")


def _hashes(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.relative_to(path).parts[0] not in ("tune",
                                                                                                        "analysis")}


def test_trial_scores_equal_evaluate(experiment):
    from raysum.ensemble import evaluate, prepare
    from raysum.experiment import Experiment

    def _dialogues(path): return Experiment(path).dialogues()

    def _references(path): return Experiment(path).references()
    from raysum.tune.ensemble_search import EnsembleObjective

    refs = _references(experiment)
    references = {"oof": refs["oof"], "dev": refs["dev"]}
    candidates = pd.read_parquet(experiment / "candidates.parquet").query("split != 'test'")
    prepared = prepare(candidates, _dialogues(experiment), references_by_split=references, tokenizer="whitespace")
    objective = EnsembleObjective(prepared, references["oof"], seed=0)
    objective.precompute(["voting"])
    slim = objective.slim()
    for strategy, weights in (("voting", None), ("weighted_avg", {"tiny-bart": 0.9, "tiny-llama": 0.1}),
                              ("weighted_avg", {"tiny-bart": 0.05, "tiny-llama": 1.0})):
        expected = evaluate(prepared, strategy, weights=weights, references_by_split=references)
        got = slim.scores(strategy, weights)
        for split in ("oof", "dev"):
            assert got[split]["n"] == expected[split]["n"]
            assert got[split]["competition_score"] == pytest.approx(expected[split]["competition_score"], abs=1e-9)
    # the weights matter: favouring the better model beats favouring the worse one
    good = slim("weighted_avg", {"tiny-bart": 0.9, "tiny-llama": 0.1})["oof_competition_score"]
    bad = slim("weighted_avg", {"tiny-bart": 0.05, "tiny-llama": 1.0})["oof_competition_score"]
    assert good > bad


@pytest.mark.slow
def test_tune_then_analyze_through_the_cli(experiment, tmp_path, local_ray, capsys):
    space = write(tmp_path, """
space: ensemble
parameters:
  strategy: {kind: choice, values: [voting, weighted_avg]}
  weights: {each_model: {kind: uniform, low: 0.0, high: 1.0}}
""", "ensemble.yaml")
    before = _hashes(experiment)
    rc = main(["tune", "--space", str(space), "--experiment", str(experiment), "--trials", "12", "--seed", "3",
               "--tokenizer", "whitespace", "--json"])
    assert rc == 0
    assert _hashes(experiment) == before, "the search changed the experiment's own files"
    assert sorted(p.name for p in experiment.iterdir()) == sorted(
        ["candidates.parquet", "config.json", "inputs", "scores.json", "tune"])
    best = json.loads((experiment / "tune" / "ensemble_best.json").read_text(encoding="utf-8"))
    assert best["trials"] == 12 and best["errors"] == 0 and best["seed"] == 3
    assert best["best"]["strategy"] in ("voting", "weighted_avg")
    assert best["oof"]["n"] == 16 and best["dev"]["n"] == 6
    assert best["best_single"]["unit"].startswith("tiny-bart/")
    capsys.readouterr()

    assert main(["analyze", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert "oof_competition_score" in out and "TERMINATED" in out
    analysis = experiment / "analysis"
    trials = pd.read_csv(analysis / "trials.csv")
    assert len(trials) == 12 and "done" not in trials.columns
    # the best trial of the table is the one the search reported
    assert trials["oof_competition_score"].max() == pytest.approx(best["oof"]["competition_score"])
    for name in ("objective_over_trials.png", "params_vs_objective.png", "param_importance.png"):
        assert (analysis / name).stat().st_size > 5000
    assert main(["report", str(experiment)]) == 0  # the report's Tune section reads the search back
    report = (experiment / "report.md").read_text(encoding="utf-8")
    section = report.split("## Tune\n", 1)[1].split("\n## ", 1)[0]
    best_trial = trials.loc[trials["oof_competition_score"].idxmax()]
    assert "(ensemble search)" in section and "12 trial(s), 12 reported oof_competition_score" in section
    assert f"Best trial #{best_trial['trial']}: strategy = {best_trial['param/strategy']}" in section
    assert f"OOF score {best_trial['oof_competition_score']:.4f}" in section
    assert "![Parameter importance](analysis/param_importance.png)" in section
    capsys.readouterr()
    top = trials.loc[trials["oof_competition_score"].idxmax()]  # ties: the first such trial
    text = (analysis / "best_config.yaml").read_text(encoding="utf-8")
    assert f'ensemble_strategy: "{top["param/strategy"]}"' in text and "tiny-llama:" in text
    assert main(["config", "show", "--json", "--config", str(analysis / "best_config.yaml")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ensemble_strategy"]["value"] == top["param/strategy"]
    assert sorted(shown["models"]) == MODELS
    if top["param/strategy"] == "weighted_avg":
        assert shown["ensemble_weights"]["value"] == pytest.approx([top[f"param/weights.{m}"] for m in MODELS])


def test_decoding_and_training_spaces_are_explicit_errors(experiment, capsys):
    before = _hashes(experiment)
    rc = main(["tune", "--space", str(ROOT / "search_spaces" / "decoding.yaml"), "--experiment", str(experiment)])
    err = capsys.readouterr().err
    assert rc != 0 and "decoding candidates are not available for this experiment" in err
    rc = main(["tune", "--space", str(ROOT / "search_spaces" / "training.yaml"), "--experiment", str(experiment)])
    err = capsys.readouterr().err
    assert rc != 0 and "is a training space" in err and "drop --experiment" in err
    assert _hashes(experiment) == before and not (experiment / "tune").exists()


def test_cli_imports_neither_optuna_nor_ray_tune():
    import subprocess
    import sys

    code = ("import sys, raysum, raysum.cli, raysum.tune; "
            "print([m for m in sys.modules if m.startswith(('optuna', 'ray.tune'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("space", ["ensemble.yaml", "decoding.yaml"])
def test_stage2_search_starts_ray_at_the_given_address(space, experiment, monkeypatch, capsys):
    """--ray_address reaches raysum.launch.init_ray (the one Ray entry) for searches on cached candidates."""
    import raysum.launch
    from raysum.errors import RaysumError

    calls = []

    def fake_init_ray(address=None, num_cpus=None):
        calls.append((address, num_cpus))
        raise RaysumError("stopped before Ray started")

    monkeypatch.setattr(raysum.launch, "init_ray", fake_init_ray)
    if space == "decoding.yaml":  # give every model a second decoding setting to choose from
        cand = pd.read_parquet(experiment / "candidates.parquet")
        cand = pd.concat([cand.assign(decoding="d0"), cand.assign(decoding="d1")], ignore_index=True)
        cand.to_parquet(experiment / "candidates.parquet", index=False)
        from raysum.config.resolve import resolve

        cfg = resolve({"models": MODELS, "k_folds": 2, "mode": "full", "seed": 7,
                       "decoding_settings": [{"num_beams": 1}]})
        (experiment / "config.json").write_text(json.dumps(cfg.tree(), ensure_ascii=False), encoding="utf-8")
    rc = main(["tune", "--space", str(ROOT / "search_spaces" / space), "--experiment", str(experiment),
               "--ray_address", "10.1.2.3:6379", "--num_cpus", "3", "--trials", "2"])
    assert rc != 0 and "stopped before Ray started" in capsys.readouterr().err
    assert calls == [("10.1.2.3:6379", 3)]
