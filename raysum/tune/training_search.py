"""Stage 1: training settings searched with Ray Tune, each trial one training unit.

    raysum tune --space search_spaces/training.yaml --models tiny-bart --trials 6 --scheduler asha
    raysum train --mode optuna --space search_spaces/training.yaml --models tiny-bart --trials 6
    raysum tune --resume outputs/<run>          # continue an interrupted search

The search gets its own experiment directory, created and filled like `raysum train`'s
(config, data, fold inputs). Each model is searched in its own Tune run (losses of
different models are not comparable): OptunaSearch (seeded) suggests the model's
settings, and a trial trains one unit on fold 0's training part, validated on its
held-out part, through the code `raysum train` runs (`raysum.training.run_unit` on a
Ray Train `TorchTrainer`). The unit reports its metric after every epoch (eval_loss,
or eval_score: the competition score of its summaries of the held-out part), and ASHA
stops trials that fall behind. No out-of-fold, dev or test summaries are generated
inside a trial.

A trial is a Tune function that builds the unit's TorchTrainer and calls ``fit()``
(Ray Train V2; ``Tuner(trainer)`` is deprecated); ``TuneReportCallback`` forwards the
unit's reports to Tune. The trial itself holds no CPU (only a token of memory), so it
never takes the core its unit's worker needs; as many trials run at once as units fit
on the cluster.

Written under ``DIR/tune/``: ``training_search.json`` (what the search was started
with, read by ``--resume``), ``space.yaml`` (the space file as given), one Tune run per
model (``training_<model>/``), the trials' units (``units/<model>/<trial_id>/``), Ray
Train's storage (``train_runs/``) and ``training_best.json`` (each model's best trial).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from raysum.errors import ConfigError, Interrupted, RaysumError
from raysum.experiment import Experiment, layout, read_json, write_json
from raysum.experiment.files import damaged
from raysum.experiment.lock import ExperimentLock
from raysum.launch import concurrent_units, fit_trial, scaling
from raysum.storage import write_text_atomic
from raysum.tune._best import best_result
from raysum.tune.best_config import TRAINING_HEADER
from raysum.tune.space import Parameter, SearchSpace, load_space

RUN_PREFIX = "training_"
SEARCH_MODE = "optuna"
# What a trial can optimise: the unit's per-epoch report key and its direction.
METRICS = {"eval_loss": "min", "eval_score": "max"}
METRIC_ALIASES = {"dev_score": "eval_score"}  # the held-out part plays the dev set of a trial
TRIAL_RESOURCES = {"cpu": 0, "memory": 1_000_000}  # Tune needs a non-empty request; 1 MB, no CPU


def _asha(metric: str, mode: str, max_epochs: int):
    from ray.tune.schedulers import ASHAScheduler

    # time_attr "epoch": the unit's final report (no epoch key) is left out of the rungs.
    return ASHAScheduler(time_attr="epoch", metric=metric, mode=mode, max_t=max(1, max_epochs), grace_period=1,
                         reduction_factor=2)


def _fifo(metric: str, mode: str, max_epochs: int):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS = {"asha": _asha, "fifo": _fifo}


def metric_name(name: str) -> str:
    return METRIC_ALIASES.get(name, name)


# --------------------------------------------------------------------------- the space per model


def model_parameters(space: SearchSpace, model: str, settings) -> tuple[dict[str, Parameter], list[str], list[str]]:
    """The parameters searched for one model (per-model ones beat global ones), notes on
    global parameters that do not apply to it, and problems."""
    own = space.models.get(model, {})
    params = {**space.parameters, **own}
    notes, problems = [], []
    if settings.lora is None:
        for key in [k for k in params if k.startswith("lora.")]:
            if key in own:
                problems.append(f"search space {space.path}: models.{model}.{key}: {model} is a full fine-tune "
                                "(no LoRA adapters), so it has no LoRA settings to search")
            else:
                notes.append(f"{key} is not searched for {model}: a full fine-tune has no LoRA adapters")
            del params[key]
    if settings.kind != "causal" and "prompt_strategy" in params:
        if "prompt_strategy" in own:
            problems.append(f"search space {space.path}: models.{model}.prompt_strategy: {model} is a "
                            f"{settings.kind} model, which reads the dialogue without a prompt")
        else:
            notes.append(f"prompt_strategy is not searched for {model}: a {settings.kind} model has no prompt")
        del params["prompt_strategy"]
    if not params and not problems:
        problems.append(f"search space {space.path}: nothing to search for {model}")
    return params, notes, problems


def apply_params(model: Mapping, params: Mapping) -> dict:
    """A model's settings (asdict form) with a trial's parameters set (``lora.r`` into ``lora``)."""
    out = copy.deepcopy(dict(model))
    for key, value in params.items():
        head, _, sub = key.partition(".")
        if sub:
            out[head] = {**(out.get(head) or {}), sub: value}
        else:
            out[key] = value
    return out


def _extremes(parameter: Parameter) -> list:
    return list(parameter.values) if parameter.kind == "choice" else [parameter.low, parameter.high]


def _range_problems(model: str, settings, params: dict[str, Parameter]) -> list[str]:
    """Settings a trial could be given that the model refuses (bounds and each choice)."""
    from raysum.config import model_settings_from_dict
    from raysum.pipeline import model_problems

    base = asdict(settings)
    problems = []
    for key, parameter in params.items():
        for value in _extremes(parameter):
            try:
                trial = model_settings_from_dict(apply_params(base, {key: value}))
            except TypeError as exc:
                problems.append(f"models.{model}: {key}={value!r}: {exc}")
                continue
            problems += [f"models.{model}: searching {key}={value!r}: {p}" for p in model_problems(trial)
                         if p not in model_problems(settings)]
    return problems


def max_epochs(settings, params: dict[str, Parameter]) -> int:
    epochs = params.get("epochs")
    return math.ceil(max(_extremes(epochs)) if epochs is not None else settings.epochs)


# --------------------------------------------------------------------------- one trial


def training_trial(config: dict, search: dict) -> None:
    """One Tune trial: the unit with the suggested settings, launched by raysum.launch."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    unit = dict(search["unit"])
    unit["model"] = apply_params(unit["model"], {k: config[k] for k in search["params"]})
    unit["unit_dir"] = str(Path(search["units_dir"]) / trial_id)
    if unit.get("tracking_dir"):  # one event folder per trial: a unit starting afresh clears its own
        unit["tracking_dir"] = str(Path(unit["tracking_dir"]).parent / f"{unit['model']['name']}_{trial_id}")
    fit_trial(unit, trial_id, search["scaling"], search["train_storage"])


# --------------------------------------------------------------------------- the search


def check_search(cfg, space: SearchSpace, *, trials: int, scheduler: str, metric: str) -> dict[str, dict]:
    """Every problem of the request at once; returns {model: {params, notes}}. A space's
    block for a model that is not searched is left out (one space file serves every model)."""
    problems = []
    if space.space != "training":
        problems.append(f"search space {space.path} is a {space.space} space; a training search needs "
                        "`space: training` (e.g. search_spaces/training.yaml)")
    if trials < 1:
        problems.append(f"--trials must be at least 1, got {trials}")
    if scheduler not in SCHEDULERS:
        problems.append(f"--scheduler {scheduler!r} is unknown; choose one of {', '.join(SCHEDULERS)}")
    if metric_name(metric) not in METRICS:
        problems.append(f"--metric {metric!r} is unknown; choose one of {', '.join([*METRICS, *METRIC_ALIASES])}")
    per_model = {}
    if space.space == "training":
        for name, settings in cfg.models.items():
            params, notes, model_problems = model_parameters(space, name, settings)
            problems += model_problems + _range_problems(name, settings, params)
            per_model[name] = {"params": params, "notes": notes}
    if problems:
        raise ConfigError(problems)
    return per_model


def search_training(cfg, space_path: str | Path, *, trials: int, scheduler: str = "asha", metric: str = "eval_loss",
                    tokenizer: str = "kiwi", max_concurrent: int | None = None, command_line: list[str] | None = None,
                    console=None) -> dict:
    """Check everything, create the search's experiment directory, run one Tune run per model."""
    from rich.console import Console

    from raysum.pipeline import start_experiment

    space = load_space(space_path)
    check_search(cfg, space, trials=trials, scheduler=scheduler, metric=metric)
    if cfg.experiment.mode != SEARCH_MODE:
        raise ConfigError(f"a training search runs in mode {SEARCH_MODE}, got mode {cfg.experiment.mode}")
    path = start_experiment(cfg, command_line, console or Console(quiet=True))
    with ExperimentLock(path, "tune", resume=f"raysum tune --resume {path}"):
        tune_dir = Experiment(path).tune_dir
        tune_dir.mkdir()
        write_text_atomic(tune_dir / layout.SPACE_YAML, Path(space_path).read_text(encoding="utf-8"))
        request = {"space": str(space_path), "trials": trials, "scheduler": scheduler,
                   "metric": metric_name(metric), "seed": cfg.experiment.seed, "tokenizer": tokenizer,
                   "max_concurrent": max_concurrent, "runs": {m: RUN_PREFIX + m for m in cfg.models},
                   "created": time.time()}
        write_json(tune_dir / layout.TRAINING_SEARCH_JSON, request)
        if console:
            console.print(f"training search directory: [bold]{path}[/]")
        return _run_search(path, cfg, request, console)


def resume_training_search(path: str | Path, console=None, ray_address: str | None = None) -> dict:
    """Continue an interrupted search: finished trials are kept, unfinished and errored ones run
    again; on the cluster at ``ray_address`` (default: the search's own ray_address)."""
    from raysum.launch import check_resources, cluster_nodes, init_ray

    path = Path(path).resolve()
    with ExperimentLock(path, "tune --resume", resume=f"raysum tune --resume {path}"):
        request = read_request(path)
        cfg = Experiment(path).resolved()
        init_ray(ray_address or cfg.experiment.ray_address, cfg.experiment.num_cpus)
        check_resources(cfg.models, cluster_nodes())
        if console:
            console.print(f"resuming the training search [bold]{path}[/]")
        return _run_search(path, cfg, request, console)


def is_training_search(path: str | Path) -> bool:
    return (Experiment(path).tune_dir / layout.TRAINING_SEARCH_JSON).is_file()


def read_request(path: Path) -> dict:
    """What a training search was started with (DIR/tune/training_search.json)."""
    file = Experiment(path).tune_dir / layout.TRAINING_SEARCH_JSON
    if not file.is_file():
        raise RaysumError(f"{path} is not a training search directory (no {layout.TUNE_DIR}/"
                          f"{layout.TRAINING_SEARCH_JSON})")
    action = f"restore it from a copy: without it the search in {path} can be neither resumed nor analysed"
    request = read_json(file, action=action)
    missing = [k for k in ("space", "trials", "scheduler", "metric", "seed", "runs") if k not in request]
    if missing:
        raise damaged(file, f"no {', '.join(missing)}; written by another version?", action)
    if request["metric"] not in METRICS or not isinstance(request["runs"], dict) \
            or not all(isinstance(v, str) for v in request["runs"].values()):
        raise damaged(file, f"metric {request['metric']!r} or runs {request['runs']!r} is not one this version "
                      "writes", action)
    return request


def best_config(cfg, best: Mapping[str, Mapping]):
    """The search's config with each model's best settings (``best``: model -> {run, params}),
    ready to train: mode optuna becomes kfold (one model) or full (several: folds and ensemble)."""
    from raysum.config import model_settings_from_dict

    for model, trial in best.items():
        source = f"tune:{trial['run']}#{trial['trial_id']}"
        settings = apply_params(asdict(cfg.models[model]), trial["params"])
        cfg.models[model] = model_settings_from_dict(settings)
        cfg.sources.update({f"models.{model}.{key}": source for key in trial["params"]})
    if cfg.experiment.mode == SEARCH_MODE:
        cfg.experiment.mode = "kfold" if len(cfg.models) == 1 else "full"
        cfg.sources["mode"] = "tune: the searched settings, trained on every fold"
    return cfg


def training_best_config(path: Path, best: Mapping[str, Mapping], metric: str) -> str:
    """best_config.yaml of a training search: complete, loadable by --config."""
    cfg = best_config(Experiment(path).resolved(), best)
    header = "".join(f"# {model}: best trial {b['trial_id']} of {b['run']}: {metric} {b[metric]:.4f}\n"
                     for model, b in best.items())
    header += (f"{TRAINING_HEADER} analysis/best_config.yaml   "
               "(inspect: raysum config show --config analysis/best_config.yaml)\n")
    return header + cfg.to_yaml()


def _run_search(path: Path, cfg, request: dict, console) -> dict:
    import ray

    from raysum.pipeline import Unit, unit_config

    exp = Experiment(path)
    space = load_space(exp.tune_dir / layout.SPACE_YAML)
    space.path = request["space"]
    per_model = check_search(cfg, space, trials=request["trials"], scheduler=request["scheduler"],
                             metric=request["metric"])
    cluster = ray.cluster_resources()
    best, timing = {}, {}
    for name, settings in cfg.models.items():
        for note in per_model[name]["notes"]:
            if console:
                console.print(f"[cyan]note:[/] {note}")
        unit = unit_config(path, cfg, Unit(name, 0), baseline=False)
        unit["predict"] = {}  # a trial generates only what its metric needs (eval_score: the held-out part)
        if request["metric"] == "eval_score":
            unit["epoch_score"] = {"references": str(exp.input_file("train")),
                                   "tokenizer": request["tokenizer"]}
        search = {"unit": unit, "params": list(per_model[name]["params"]),
                  "units_dir": str(exp.tune_dir / layout.TUNE_UNITS_DIR / name),
                  "train_storage": str(exp.tune_dir / layout.TUNE_TRAIN_RUNS_DIR),
                  "scaling": scaling(settings)}
        concurrent = concurrent_units(settings, cluster, request.get("max_concurrent"))
        if console:
            console.print(f"{name}: {request['trials']} trial(s), {concurrent} at once, scheduler "
                          f"{request['scheduler']}, objective {request['metric']} ({METRICS[request['metric']]})")
        started = time.perf_counter()
        results = _tune(path, name, settings, per_model[name]["params"], search, request, concurrent)
        timing[name] = round(time.perf_counter() - started, 2)
        ended = ended_trials(exp.tune_dir / request["runs"][name])
        if ended < request["trials"]:  # Ctrl-C: Tune saved its state and stopped
            raise Interrupted(f"the training search of {name} was interrupted after {ended} of "
                              f"{request['trials']} trial(s); finished trials are kept: continue with "
                              f"raysum tune --resume {path}")
        best[name] = _best(results, request["metric"], per_model[name]["params"])
    summary = {"experiment": str(path), **{k: request[k] for k in ("space", "trials", "scheduler", "metric", "seed")},
               "mode": METRICS[request["metric"]], "best": best, "search_s": timing}
    write_json(exp.tune_dir / layout.TRAINING_BEST_JSON, summary)
    return summary


def ended_trials(run: Path) -> int:
    """Trials that Tune's saved state (what a restore continues from) has as finished or errored.
    After Ctrl-C, Tune marks the trials it stops as terminated in memory but not on disk."""
    states = tune_state(run) or []
    return sum(state.get("status") in ("TERMINATED", "ERROR") for state in states)


def tune_state(run: Path) -> list[dict] | None:
    """Every trial's state in Tune's newest saved state of ``run`` (what a restore and
    ``raysum analyze`` read); None before Tune saved one. A damaged or unreadable state is
    an error naming the file."""
    files = sorted(run.glob("experiment_state*.json"))  # named by creation time, like Tune picks the newest
    if not files:
        return None
    action = f"restore it from a copy, or move {run} away to run that search again from its start"
    data = read_json(files[-1], action=action)
    try:
        states = [json.loads(t[0]) if isinstance(t[0], str) else t[0] for t in data["trial_data"]]
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise damaged(files[-1], f"not a Ray Tune experiment state this version reads: {exc!r}", action) from None
    if not all(isinstance(state, dict) for state in states):
        raise damaged(files[-1], "a trial's state is not a JSON object", action)
    return states


def _tune(path: Path, name: str, settings, params: dict[str, Parameter], search: dict, request: dict,
          concurrent: int):
    from ray import tune
    from raysum.tune._searcher import RestorableOptunaSearch
    from raysum.tune._worker_groups import WorkerGroupRelease
    from raysum.tune.space import to_tune

    metric, mode = request["metric"], METRICS[request["metric"]]
    trainable = tune.with_resources(tune.with_parameters(training_trial, search=search), TRIAL_RESOURCES)
    storage = Experiment(path).tune_dir
    run_dir = storage / request["runs"][name]
    if tune.Tuner.can_restore(str(run_dir)):
        tune_state(run_dir)  # a damaged state: an error naming it, not Tune's traceback
        tuner = tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True, restart_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=to_tune(SearchSpace("training", parameters=params), [name]),
            tune_config=tune.TuneConfig(
                search_alg=RestorableOptunaSearch(metric=metric, mode=mode, seed=request["seed"]),
                scheduler=SCHEDULERS[request["scheduler"]](metric, mode, max_epochs(settings, params)),
                num_samples=request["trials"], max_concurrent_trials=concurrent),
            run_config=tune.RunConfig(name=run_dir.name, storage_path=str(storage), verbose=0, log_to_file=False,
                                      callbacks=[WorkerGroupRelease()]),
        )
    return tuner.fit()


def _best(results, metric: str, params: dict) -> dict:
    best = best_result(results, metric, METRICS[metric])
    if best is None:
        errors = "; ".join(str(r.error).splitlines()[0] for r in results if r.error is not None)[:2000]
        raise RaysumError(f"no trial of the search reported {metric}" + (f" (errors: {errors})" if errors else ""))
    return {"trial_id": best.metrics.get("trial_id"), "params": {k: best.config[k] for k in params},
            metric: best.metrics[metric], "trials": len(results), "errors": len(results.errors)}
