"""An experiment end to end: check everything, launch units on Ray, collect, score, submit.

Everything that can be wrong with the input (config, data, weights, resources, trackers)
is reported before the experiment directory is created, so a
refused run leaves nothing behind and never overwrites an earlier experiment.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rich.console import Console

from raysum.config.resolve import ResolvedConfig
from raysum.errors import ConfigError, RaysumError
from raysum.pipeline._collect import collect_candidates, score_experiment, write_submission
from raysum.pipeline._experiment import (
    Unit,
    create_experiment_dir,
    load_experiment_data,
    load_resolved,
    plan_units,
    ray_storage,
    unit_config,
    unit_done,
    write_experiment_files,
)
from raysum.pipeline._progress import watch_units
from raysum.pipeline._ray import check_resources, cluster_nodes, init_ray, launch_unit


def preflight(cfg: ResolvedConfig) -> None:
    """Checks that need no Ray and no experiment directory."""
    from raysum.models import check_weights_available
    from raysum.training import validate_unit_settings
    from raysum.training.tracking import check_trackers_installed

    problems = []
    if cfg.experiment.use_augmentation:
        from raysum.augment import check_available

        problems += check_available(list(cfg.experiment.augmentation_methods),
                                    list(cfg.experiment.augmentation_translators))
    problems += check_trackers_installed(list(cfg.experiment.tracking))
    for name, settings in cfg.models.items():
        problems += [f"models.{name}: {p}" for p in check_weights_available(settings)]
        problems += [f"models.{name}: {p}" for p in validate_unit_settings(settings, has_gpu=True)]
    if problems:
        raise ConfigError(problems)


def _gpu_problems(cfg: ResolvedConfig, nodes: list[dict]) -> list[str]:
    from raysum.training import validate_unit_settings

    has_gpu = any(n.get("GPU", 0) > 0 for n in nodes)
    return [f"models.{name}: {p}" for name, s in cfg.models.items()
            for p in validate_unit_settings(s, has_gpu=has_gpu)]


def start_experiment(cfg: ResolvedConfig, command_line: list[str] | None, console: Console) -> Path:
    """Every check (config, data, weights, Ray resources, GPUs), then the new experiment
    directory with its config, data and fold inputs; shared by runs and training searches."""
    preflight(cfg)
    data = load_experiment_data(cfg)
    for note in data.notes:
        console.print(f"[cyan]note:[/] {note}")
    init_ray(cfg.experiment.ray_address, cfg.experiment.num_cpus)
    nodes = cluster_nodes()
    check_resources(cfg.models, nodes)
    problems = _gpu_problems(cfg, nodes)
    if problems:
        raise ConfigError(problems)
    path = create_experiment_dir(cfg)
    write_experiment_files(path, cfg, data, list(command_line or sys.argv))
    return path


def run_experiment(cfg: ResolvedConfig, command_line: list[str] | None = None,
                   console: Console | None = None) -> Path:
    """Run a validated config; returns the experiment directory."""
    console = console or Console()
    if cfg.experiment.mode == "optuna":
        raise ConfigError("mode optuna is the training search: it needs a search space and a number of trials "
                          "(raysum train --mode optuna --space search_spaces/training.yaml --trials N, or "
                          "raysum.tune.training_search.search_training)")
    path = start_experiment(cfg, command_line, console)
    console.print(f"experiment directory: [bold]{path}[/]")
    _run_units(path, cfg, console)
    return path


def resume_experiment(path: str | Path, cli: dict, config_file: str | None, overrides: list[str],
                      console: Console | None = None) -> Path:
    """Continue an experiment: finished units are reused, interrupted ones resume from a checkpoint."""
    console = console or Console()
    path = Path(path).resolve()
    if cli or config_file or overrides:
        given = sorted(cli) + (["--config"] if config_file else []) + (["--set"] if overrides else [])
        raise ConfigError(f"--resume continues {path} with the settings it was started with; "
                          f"drop {', '.join('--' + g if not g.startswith('--') else g for g in given)}")
    from raysum.tune.training_search import is_training_search, resume_training_search

    if is_training_search(path):
        resume_training_search(path, console)
        return path
    cfg = load_resolved(path)
    preflight(cfg)
    init_ray(cfg.experiment.ray_address, cfg.experiment.num_cpus)
    check_resources(cfg.models, cluster_nodes())
    console.print(f"resuming [bold]{path}[/]")
    _run_units(path, cfg, console)
    return path


def _run_units(path: Path, cfg: ResolvedConfig, console: Console) -> None:
    units = plan_units(cfg)
    baseline_done: set[str] = set()
    runs, reused = [], []
    started = time.time()
    for unit in units:
        config = unit_config(path, cfg, unit, baseline=unit.model not in baseline_done)
        baseline_done.add(unit.model)
        if unit_done(Path(config["unit_dir"])):
            reused.append(unit.name)
            continue
        runs.append(launch_unit(unit.name, config, cfg.models[unit.model], ray_storage(path, cfg)))
    if reused:
        console.print(f"reusing {len(reused)} finished unit(s): {', '.join(reused)}")
    failures = watch_units(runs, [u.name for u in units], path, console)
    _record_timing(path, "unit_phases", started)
    if failures:
        try:  # what finished, for the post-mortem; the unit failures are the error to raise
            _write_report(path, cfg, console)
        except Exception as exc:  # noqa: BLE001
            console.print(f"[yellow]warning:[/] report.md not written: {exc}")
        raise RaysumError("units failed (finished units are kept; `raysum train --resume "
                          f"{path}` continues):\n" + "\n".join(f"  - {n}: {e}" for n, e in failures.items()))
    _finish(path, cfg, units, console)


def _record_timing(path: Path, phase: str, started: float) -> None:
    """run.json: `unit_phases` is a list (one per attempt), `finish_phase` the last finish."""
    run_file = path / "run.json"
    run = json.loads(run_file.read_text(encoding="utf-8"))
    span = {"start": started, "end": time.time()}
    if phase == "unit_phases":
        run.setdefault(phase, []).append(span)
    else:
        run[phase] = span
    run_file.write_text(json.dumps(run, ensure_ascii=False, indent=1), encoding="utf-8")


def _finish(path: Path, cfg: ResolvedConfig, units: list[Unit], console: Console) -> None:
    started = time.time()
    candidates = collect_candidates(path, units)
    scores = score_experiment(path, cfg, units, candidates)
    _log_scores_to_trackers(path, cfg, units, scores)
    choice = write_submission(path, cfg, candidates, scores)
    _record_timing(path, "finish_phase", started)
    from raysum.pipeline._progress import print_scores

    print_scores(scores, console)
    console.print(f"[bold green]submission[/] {path / 'submission.csv'}: {choice}")
    _write_report(path, cfg, console)


def _log_scores_to_trackers(path: Path, cfg: ResolvedConfig, units: list[Unit], scores: dict) -> None:
    """Each unit's OOF and dev ROUGE next to its training curves in TensorBoard."""
    if "tensorboard" not in cfg.experiment.tracking:
        return
    from raysum.training.tracking import log_unit_scores, tracking_dir

    for unit in units:
        entry = scores["units"].get(unit.name, {})
        step = (entry.get("timing") or {}).get("steps") or 0
        log_unit_scores(tracking_dir(path, unit.model, unit.fold_label), entry, step)


def _write_report(path: Path, cfg: ResolvedConfig, console: Console) -> None:
    """report.md at the end of every experiment; plots with --save_visualizations."""
    from raysum.report import write_report

    files = write_report(path, plots=cfg.experiment.save_visualizations)
    plots = [f for f in files if f.suffix == ".png"]
    console.print(f"[bold]report[/] {path / 'report.md'}" + (f" with {len(plots)} plots in {path / 'plots'}"
                                                            if plots else ""))


def ensemble_experiment(path: str | Path, strategy: str, weights: list[float] | None = None) -> dict:
    """Evaluate one ensemble strategy on a finished experiment's candidates; the numbers
    also go into its scores.json (under `ensembles`)."""
    from dataclasses import replace

    from raysum.config.validate import ENSEMBLE_STRATEGIES, canonical_strategy
    from raysum.pipeline._collect import run_ensembles

    path = Path(path).resolve()
    cfg = load_resolved(path)
    canonical = canonical_strategy(strategy)
    problems = []
    if canonical not in ENSEMBLE_STRATEGIES:
        problems.append(f"strategy {strategy!r} is unknown; choose one of {', '.join(ENSEMBLE_STRATEGIES)}")
    if weights is not None and len(weights) != len(cfg.models):
        problems.append(f"--ensemble_weights has {len(weights)} values for {len(cfg.models)} models "
                        f"({', '.join(cfg.models)})")
    if weights is not None and (any(w < 0 for w in weights) or not sum(weights) > 0):
        problems.append("--ensemble_weights must be >= 0 with a positive sum")
    for name in ("candidates.parquet", "scores.json"):
        if not (path / name).is_file():
            problems.append(f"{path} has no {name}: finish the experiment first (raysum train --resume {path})")
    if problems:
        raise ConfigError(problems)
    import pandas as pd

    cfg.experiment = replace(cfg.experiment, ensemble_weights=weights or cfg.experiment.ensemble_weights)
    scores = json.loads((path / "scores.json").read_text(encoding="utf-8"))
    candidates = pd.read_parquet(path / "candidates.parquet")
    if canonical == "stacking" and not (candidates["split"] == "oof").any():
        raise ConfigError("stacking learns from out-of-fold candidates; this experiment has none (no folds)")
    keep = scores.get("ensemble_strategy")
    run_ensembles(path, cfg, candidates, scores, strategies=[canonical])
    scores["ensemble_strategy"] = keep  # the submission's strategy does not change
    (path / "scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=1), encoding="utf-8")
    result = scores["ensembles"][canonical]
    return {"strategy": canonical, "oof": result.get("oof"), "dev": result.get("dev"),
            "best_single": result.get("best_single"), **({"weights": result["weights"]} if "weights" in result else {})}


def predict_experiment(path: str | Path, test_file: str, output: str | None, ray_address: str | None = None,
                       console: Console | None = None) -> Path:
    """Generate for a new file with the experiment's trained units (no retraining)."""
    from raysum.pipeline._collect import predict_new_file

    console = console or Console()
    return predict_new_file(Path(path).resolve(), test_file, output, ray_address, console)
