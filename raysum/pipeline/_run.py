"""An experiment end to end: check everything, launch units on Ray, collect, score, submit.

Everything that can be wrong with the input (config, data, weights, resources, trackers)
is reported before the experiment directory is created, so a
refused run leaves nothing behind and never overwrites an earlier experiment.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from raysum.config import validate as config_rules
from raysum.config.resolve import ResolvedConfig
from raysum.errors import ConfigError, RaysumError
from raysum.experiment import Experiment, layout
from raysum.experiment.lock import ExperimentLock
from raysum.launch import (
    check_resources, cluster_nodes, ensemble_problems, fixed_capacity, init_ray, launch_unit, unit_demand,
)
from raysum.pipeline._applied import applied_lines
from raysum.pipeline._collect import (
    collect_candidates, run_ensembles, score_experiment, stacking_too_small, write_submission,
)
from raysum.pipeline._experiment import (
    Unit,
    create_experiment_dir,
    load_experiment_data,
    plan_units,
    ray_storage,
    unit_config,
    write_experiment_files,
)
from raysum.pipeline._progress import print_scores, watch_units
from raysum.pipeline._queue import UnitQueue
from raysum.pipeline._resume import check_resume
from raysum.pipeline.validate import validate

# Called with (experiment directory, config, console) when a run ends, finished or with
# failed units (the post-mortem): the CLI writes the report with it.
AfterRun = Callable[[Path, ResolvedConfig, Console], None]


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
    """Every check (config, the bundled sample, data, weights, Ray resources, GPUs), then the
    new experiment directory with its config, data and fold inputs; shared by runs and
    training searches. Prints the data files and the settings applied per model."""
    problems = config_rules.sample_data_problems(cfg)
    try:
        preflight(cfg)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    data = load_experiment_data(cfg)
    for line in applied_lines(cfg, data):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for note in data.notes:
        console.print(f"[cyan]note:[/] {note}")
    init_ray(cfg.experiment.ray_address, cfg.experiment.num_cpus)
    nodes = cluster_nodes()
    check_resources(cfg.models, nodes)
    problems = _gpu_problems(cfg, nodes) + ensemble_problems(cfg.experiment.ensemble_cpus, nodes)
    if problems:
        raise ConfigError(problems)
    path = create_experiment_dir(cfg)
    write_experiment_files(path, cfg, data, list(command_line or sys.argv), console)
    return path


def run_experiment(cfg: ResolvedConfig, command_line: list[str] | None = None,
                   console: Console | None = None, after: AfterRun | None = None) -> Path:
    """Run a validated config; returns the experiment directory."""
    console = console or Console()
    if cfg.experiment.mode == "optuna":
        raise ConfigError("mode optuna is the training search: it needs a search space and a number of trials "
                          "(raysum train --mode optuna --space search_spaces/training.yaml --trials N, or "
                          "raysum.tune.training_search.search_training)")
    path = start_experiment(cfg, command_line, console)
    console.print(f"experiment directory: [bold]{path}[/]")
    with ExperimentLock(path, "train", resume=resume_command(path)):
        _run_units(path, cfg, console, after)
    return path


def resume_command(path: Path) -> str:
    """The command that continues an interrupted run of ``path``."""
    return f"raysum train --resume {path}"


def refuse_resume_settings(path: Path, cli: dict, config_file: str | None, overrides: list[str]) -> None:
    """--resume continues with the settings a run was started with: any other setting is an error."""
    if cli or config_file or overrides:
        given = sorted(cli) + (["--config"] if config_file else []) + (["--set"] if overrides else [])
        raise ConfigError(f"--resume continues {path} with the settings it was started with; "
                          f"drop {', '.join('--' + g if not g.startswith('--') else g for g in given)}")


def resume_experiment(path: str | Path, cli: dict, config_file: str | None, overrides: list[str],
                      console: Console | None = None, after: AfterRun | None = None,
                      retrain_changed: bool = False, force: bool = False, ray_address: str | None = None) -> Path:
    """Continue an experiment: finished units are reused, interrupted ones resume from a
    checkpoint; a unit whose recorded settings differ from config.json is refused (or, with
    ``retrain_changed``, trained again). A submission it replaces is kept unless ``force``.
    ``ray_address``: the cluster to continue on (default: the experiment's ray_address)."""
    console = console or Console()
    path = Path(path).resolve()
    refuse_resume_settings(path, cli, config_file, overrides)
    with ExperimentLock(path, "train --resume", resume=resume_command(path)) as lock:
        for note in lock.notes:
            console.print(f"[cyan]note:[/] {note}")
        cfg = validate(Experiment(path).resolved())
        preflight(cfg)
        retrained = check_resume(path, cfg, plan_units(cfg), retrain_changed)
        if retrained:
            console.print(f"training again (settings changed): {', '.join(retrained)}; their previous files "
                          f"are under {path / layout.REPLACED_DIR}")
        init_ray(ray_address or cfg.experiment.ray_address, cfg.experiment.num_cpus)
        nodes = cluster_nodes()
        check_resources(cfg.models, nodes)
        problems = ensemble_problems(cfg.experiment.ensemble_cpus, nodes)
        if problems:
            raise ConfigError(problems)
        console.print(f"resuming [bold]{path}[/]")
        _run_units(path, cfg, console, after, force=force)
    return path


def _run_units(path: Path, cfg: ResolvedConfig, console: Console, after: AfterRun | None,
               force: bool = False) -> None:
    units = plan_units(cfg)
    baseline_done: set[str] = set()
    reused = []
    started = time.time()
    exp = Experiment(path)
    settings = {unit.name: cfg.models[unit.model] for unit in units}
    storage = ray_storage(path, cfg)
    queue = UnitQueue(lambda name, config: launch_unit(name, config, settings[name], storage), fixed_capacity())
    for unit in units:
        config = unit_config(path, cfg, unit, baseline=unit.model not in baseline_done)
        baseline_done.add(unit.model)
        if exp.unit(unit.model, unit.fold).done():
            reused.append(unit.name)
            continue
        queue.add(unit.name, config, unit_demand(settings[unit.name]))
    runs = queue.launch_ready()
    for note in exp.notes:  # a damaged unit.json: that unit trains again
        console.print(f"[cyan]note:[/] {note}")
    if reused:
        console.print(f"reusing {len(reused)} finished unit(s): {', '.join(reused)}")
    failures = watch_units(runs, [u.name for u in units], path, console, queue=queue)
    _record_timing(path, "unit_phases", started)
    if failures:
        try:  # what finished, for the post-mortem; the unit failures are the error to raise
            if after:
                after(path, cfg, console)
        except Exception as exc:  # noqa: BLE001
            console.print(f"[yellow]warning:[/] {layout.REPORT_MD} not written: {exc}")
        raise RaysumError("units failed (finished units are kept; `raysum train --resume "
                          f"{path}` continues):\n" + "\n".join(f"  - {n}: {e}" for n, e in failures.items()))
    _finish(path, cfg, units, console, force)
    if after:
        after(path, cfg, console)


def _record_timing(path: Path, phase: str, started: float) -> None:
    """run.json: `unit_phases` is a list (one per attempt), `finish_phase` the last finish."""
    exp = Experiment(path)
    run = exp.run_info()
    span = {"start": started, "end": time.time()}
    if phase == "unit_phases":
        run.setdefault(phase, []).append(span)
    else:
        run[phase] = span
    exp.write_run_info(run)


def _finish(path: Path, cfg: ResolvedConfig, units: list[Unit], console: Console, force: bool = False) -> None:
    started = time.time()
    candidates = collect_candidates(path, units)
    notes: list[str] = []
    scores = score_experiment(path, cfg, units, candidates, notes)
    _log_scores_to_trackers(path, cfg, units, scores)
    choice, kept = write_submission(path, cfg, candidates, scores, force=force)
    _record_timing(path, "finish_phase", started)
    for note in notes:  # a damaged baseline: left out of the scores
        console.print(f"[cyan]note:[/] {note}")
    print_scores(scores, console)
    submission = Experiment(path).submission_file
    console.print(f"[bold green]submission[/] {submission}: {choice}")
    if kept:
        console.print(f"the previous {submission.name} is kept as {kept} (--force replaces it without keeping)")


def _log_scores_to_trackers(path: Path, cfg: ResolvedConfig, units: list[Unit], scores: dict) -> None:
    """Each unit's OOF and dev ROUGE next to its training curves in TensorBoard."""
    if "tensorboard" not in cfg.experiment.tracking:
        return
    from raysum.training.tracking import log_unit_scores, tracking_dir

    for unit in units:
        entry = scores["units"].get(unit.name, {})
        step = (entry.get("timing") or {}).get("steps") or 0
        log_unit_scores(tracking_dir(path, unit.model, unit.fold_label), entry, step)


def ensemble_experiment(path: str | Path, strategy: str, weights: list[float] | None = None) -> dict:
    """Evaluate one ensemble strategy on a finished experiment's candidates; the numbers
    also go into its scores.json (under `ensembles`)."""
    path = Path(path).resolve()
    with ExperimentLock(path, "ensemble"):
        return _ensemble(path, strategy, weights)


def _ensemble(path: Path, strategy: str, weights: list[float] | None) -> dict:
    from dataclasses import replace

    from raysum.ensemble import ALIASES, NEEDS_OOF, STRATEGIES

    exp = Experiment(path)
    cfg = exp.resolved()
    canonical = ALIASES.get(strategy, strategy)
    problems = []
    if canonical not in STRATEGIES:
        problems.append(f"strategy {strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
    if weights is not None and len(weights) != len(cfg.models):
        problems.append(f"--ensemble_weights has {len(weights)} values for {len(cfg.models)} models "
                        f"({', '.join(cfg.models)})")
    if weights is not None and (any(w < 0 for w in weights) or not sum(weights) > 0):
        problems.append("--ensemble_weights must be >= 0 with a positive sum")
    for name, present in ((layout.CANDIDATES, exp.has_candidates()), (layout.SCORES, exp.has_scores())):
        if not present:
            problems.append(f"{path} has no {name}: finish the experiment first (raysum train --resume {path})")
    if problems:
        raise ConfigError(problems)
    cfg.experiment = replace(cfg.experiment, ensemble_weights=weights or cfg.experiment.ensemble_weights)
    scores = exp.scores()
    candidates = exp.candidates()
    if canonical in NEEDS_OOF and not (candidates["split"] == "oof").any():
        raise ConfigError(f"{canonical} needs out-of-fold candidates; this experiment has none (no folds)")
    too_small = stacking_too_small(cfg, candidates, len(exp.references()["oof"]))
    if canonical == "stacking" and too_small:
        raise ConfigError(too_small)
    keep = scores.get("ensemble_strategy")
    run_ensembles(path, cfg, candidates, scores, strategies=[canonical], on_ray=False)
    scores["ensemble_strategy"] = keep  # the submission's strategy does not change
    exp.write_scores(scores)
    result = scores["ensembles"][canonical]
    return {"strategy": canonical, "oof": result.get("oof"), "dev": result.get("dev"),
            "best_single": result.get("best_single"), **({"weights": result["weights"]} if "weights" in result else {})}


def predict_experiment(path: str | Path, test_file: str, output: str | None, ray_address: str | None = None,
                       console: Console | None = None, force: bool = False) -> Path:
    """Generate for a new file with the experiment's trained units (no retraining); a
    submission it replaces is kept unless ``force``."""
    from raysum.pipeline._collect import predict_new_file

    console = console or Console()
    path = Path(path).resolve()
    with ExperimentLock(path, "predict"):
        return predict_new_file(path, test_file, output, ray_address, console, force=force)
