"""``raysum analyze DIR``: a finished Tune search read back as a table, a best config and plots.

DIR is an experiment directory with ``tune/`` or a Tune experiment directory itself.
For a training search (``raysum tune --space search_spaces/training.yaml``) every
model's run is read; otherwise the newest search under ``tune/``. Written to
``DIR/analysis/``:

- ``trials.csv``: one row per trial (params, objective, status, time; ``model`` for a
  training search);
- ``best_config.yaml``: the experiment's complete resolved config with the best trial's
  settings, accepted by ``raysum train --config`` and ``raysum config show --config``: a
  training search, each model's searched settings under ``models``; an ensemble or
  decoding search, ``ensemble_strategy`` and ``ensemble_weights`` of the best trial and
  each model's chosen decoding setting as its own ``num_beams``, ``length_penalty``,
  ``no_repeat_ngram_size``, ``max_length``; for a Tune directory outside an experiment,
  the best trial's params;
- ``objective_over_trials.png``, ``params_vs_objective.png``, ``param_importance.png``
  (Optuna's fANOVA importances on a study rebuilt from the trials); a training search
  of several models writes one set per model (``..._<model>.png``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from raysum.errors import RaysumError
from raysum.experiment import Experiment, layout
from raysum.storage import write_atomic, write_text_atomic
from raysum.tune._best import creation_number
from raysum.tune.best_config import header
from raysum.tune.decoding_search import DECODING_PREFIX
from raysum.tune.ensemble_search import METRIC, WEIGHT_PREFIX

DEV_METRIC = "dev_competition_score"


@dataclass(frozen=True)
class Objective:
    """What a search optimised, and what else its trials report for the table and plots."""

    metric: str
    mode: str  # max | min
    label: str  # the objective's name in the table and plot legends
    reported: str | None = None  # a second score shown but never optimised (dev)
    reported_label: str = ""

    def best_index(self, values: pd.Series):
        """The best row; among equal values the first, i.e. the trial created first (load_trials'
        rows are in creation order), as raysum.tune._best.best_result picks it."""
        return values.idxmax() if self.mode == "max" else values.idxmin()

    def best_so_far(self, values: pd.Series) -> pd.Series:
        return values.cummax() if self.mode == "max" else values.cummin()


ENSEMBLE_OBJECTIVE = Objective(METRIC, "max", "OOF score", DEV_METRIC, "dev score")


def find_run(path: Path) -> Path:
    """The Tune experiment directory: ``path`` itself, or the newest one under ``path/tune``."""
    if any(path.glob("experiment_state*.json")):
        return path
    tune_dir = Experiment(path).tune_dir
    runs = sorted((p for p in tune_dir.glob("*") if any(p.glob("experiment_state*.json"))),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise RaysumError(f"{path} holds no Tune experiment (no experiment_state*.json in it or in {tune_dir})")
    return runs[-1]


def load_trials(run: Path, objective: Objective = ENSEMBLE_OBJECTIVE) -> pd.DataFrame:
    """One row per trial, in creation order: trial, trial_id, status, params, metrics, time_s
    (and epochs, the last epoch a trial reported, when its unit reports epochs)."""
    from ray.tune import ExperimentAnalysis

    from raysum.tune.training_search import tune_state

    tune_state(run)  # a damaged state file: an error naming it
    try:
        analysis = ExperimentAnalysis(str(run), default_metric=objective.metric, default_mode=objective.mode)
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds for files it cannot read back
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RaysumError(f"{run}: Ray Tune cannot read this search back ({type(exc).__name__}: {first}); restore "
                          "its files from a copy or run the search again") from None
    rows = []
    # Ray lists trials read back from disk in its state file's order; the table (and the best
    # trial among equal scores, the first) follows creation order, as the search itself does.
    for number, trial in enumerate(sorted(analysis.trials, key=lambda t: creation_number(t.experiment_tag))):
        result = trial.last_result or {}
        row = {"trial": number, "trial_id": trial.trial_id, "status": trial.status}
        row.update({f"param/{k}": v for k, v in trial.config.items()})
        row[objective.metric] = result.get(objective.metric)
        if objective.reported:
            row[objective.reported] = result.get(objective.reported)
        epochs = (trial.metric_analysis or {}).get("epoch", {}).get("max")
        if epochs is not None:
            row["epochs"] = epochs
        row["time_s"] = result.get("time_total_s")
        rows.append(row)
    if not rows:
        raise RaysumError(f"Tune experiment {run} has no trials")
    return pd.DataFrame(rows)


def param_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c.startswith("param/")]


def print_table(trials: pd.DataFrame, console, run: Path, objective: Objective = ENSEMBLE_OBJECTIVE) -> None:
    from rich.table import Table

    params = param_columns(trials)
    scores = [(objective.label, objective.metric)] + (
        [(objective.reported_label, objective.reported)] if objective.reported else [])
    scores += [("epochs run", "epochs")] if "epochs" in trials.columns else []
    note = "; dev reported only" if objective.reported else ""
    table = Table(title=f"Tune trials of {run} (objective: {objective.metric}, {objective.mode}{note})")
    for col in ["#", *(p[len("param/"):] for p in params), *(label for label, _ in scores), "status", "time s"]:
        table.add_column(col, justify="left" if col in ("status",) else "right")
    values = trials[objective.metric]
    best = objective.best_index(values) if values.notna().any() else None
    for i, row in trials.iterrows():
        style = "bold green" if i == best else None
        table.add_row(str(row["trial"]), *(_cell(row[p]) for p in params), *(_cell(row[key]) for _, key in scores),
                      _status(row), _cell(row["time_s"], 3), style=style)
    console.print(table)


def _status(row: pd.Series) -> str:
    """Tune's status; a trial ASHA stopped before its last epoch says so."""
    planned, ran = row.get("param/epochs"), row.get("epochs")
    if ran is not None and planned is not None and not pd.isna(ran) and ran < planned:
        return f"{row['status']} (stopped at epoch {ran:g})"
    return str(row["status"])


def _cell(value, digits: int = 4) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}" if value == 0 or abs(value) >= 0.01 else f"{value:.3g}"  # learning rates
    return "-" if value is None else str(value)


def best_config_yaml(trials: pd.DataFrame, run: Path) -> str:
    """The experiment's config with the best trial's ensemble and decoding settings, or
    the best params alone (a Tune run outside an experiment)."""
    import yaml

    best = trials.loc[trials[METRIC].idxmax()]
    params = {p[len("param/"):]: _native(best[p]) for p in param_columns(trials)}
    experiment = Experiment(run.parent.parent)
    searched = "strategy" in params or any(k.startswith(DECODING_PREFIX) for k in params)
    if searched and experiment.is_experiment():
        cfg = experiment.resolved()
        source = f"tune:{run}"
        _apply_ensemble(cfg, params, source)
        _apply_decodings(cfg, params, source)
        labels = {k[len(DECODING_PREFIX):]: str(v) for k, v in params.items() if k.startswith(DECODING_PREFIX)}
        use = (f"# use: raysum finalize {experiment.path} --config analysis/best_config.yaml   "
               "(inspect: raysum config show --config analysis/best_config.yaml)\n")
        return header(run, METRIC, best[METRIC], best[DEV_METRIC], labels) + use + cfg.to_yaml()
    return f"# best trial of {run}: {METRIC} {best[METRIC]:.4f}\n" + yaml.safe_dump(
        {"params": params}, allow_unicode=True, sort_keys=False)


def _apply_ensemble(cfg, params: dict, source: str) -> None:
    from raysum.ensemble import canonical

    if "strategy" not in params:
        return
    strategy = canonical(params["strategy"])
    cfg.experiment.ensemble_strategy = strategy
    cfg.sources["ensemble_strategy"] = source
    if strategy == "weighted_avg":
        cfg.experiment.ensemble_weights = [float(params[f"{WEIGHT_PREFIX}{m}"]) for m in cfg.models]
        cfg.sources["ensemble_weights"] = source


def _apply_decodings(cfg, params: dict, source: str) -> None:
    """The chosen decoding label of each model becomes its own generation settings; its
    extra settings are cleared (the choice is made: a retrain generates it alone)."""
    from raysum.generation.decodings import DECODING_KEYS, decoding_table, with_decoding

    chosen = {k[len(DECODING_PREFIX):]: str(v) for k, v in params.items() if k.startswith(DECODING_PREFIX)}
    if not chosen:
        return
    cfg.experiment.decoding_settings = None
    cfg.sources["decoding_settings"] = source
    for model, label in chosen.items():
        settings = cfg.models[model]
        cfg.models[model] = with_decoding(settings, decoding_table(settings)[label])
        for name in (*DECODING_KEYS, "decoding_settings"):
            cfg.sources[f"models.{model}.{name}"] = source


def _native(value):
    return value.item() if hasattr(value, "item") else value


def importances(trials: pd.DataFrame, objective: Objective = ENSEMBLE_OBJECTIVE) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) on a study rebuilt from the finished trials."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    done = trials[trials[objective.metric].notna()]
    distributions = {}
    for col in param_columns(done):
        values = done[col].tolist()
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            low, high = float(min(values)), float(max(values))
            if low < high:
                distributions[col[len("param/"):]] = FloatDistribution(low, high)
        elif len(set(map(str, values))) > 1:
            distributions[col[len("param/"):]] = CategoricalDistribution(sorted(set(map(str, values))))
    if not distributions:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if objective.mode == "max" else "minimize")
    for _, row in done.iterrows():
        params = {k: (str(row[f"param/{k}"]) if isinstance(d, CategoricalDistribution) else float(row[f"param/{k}"]))
                  for k, d in distributions.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=float(row[objective.metric])))
    return optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))


def plot(trials: pd.DataFrame, out: Path, objective: Objective = ENSEMBLE_OBJECTIVE, suffix: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = objective.metric
    done = trials[trials[metric].notna()]
    ylabel = "competition_score" if objective is ENSEMBLE_OBJECTIVE else metric
    title = f" ({suffix.lstrip('_')})" if suffix else ""
    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(done["trial"], done[metric], "o", alpha=0.6, label=f"trial ({objective.label})")
    ax.plot(done["trial"], objective.best_so_far(done[metric]), "-", color="C3",
            label=f"best so far ({objective.label})")
    if objective.reported and done[objective.reported].notna().any():
        ax.plot(done["trial"], done[objective.reported], "x", alpha=0.4, color="C2",
                label=f"trial ({objective.reported_label}, not optimised)")
    ax.set(title=f"Objective over trials{title}", xlabel="trial", ylabel=ylabel)
    ax.legend()
    written.append(_save(fig, out / f"objective_over_trials{suffix}.png"))

    params = param_columns(done)
    fig, axes = plt.subplots(1, max(1, len(params)), figsize=(4 * max(1, len(params)), 3.6), squeeze=False)
    for ax, col in zip(axes[0], params):
        values = done[col]
        if values.map(lambda v: isinstance(v, str)).any():
            labels = sorted(set(map(str, values)))
            ax.scatter(values.map(lambda v: labels.index(str(v))), done[metric], alpha=0.6)
            ax.set_xticks(range(len(labels)), labels, rotation=20)
        else:
            ax.scatter(values, done[metric], alpha=0.6)
            if col.endswith("learning_rate"):
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(title=col[len("param/"):], xlabel=col[len("param/"):], ylabel=metric)
    fig.suptitle(f"Each parameter against the objective ({objective.label}){title}")
    written.append(_save(fig, out / f"params_vs_objective{suffix}.png"))

    fig, ax = plt.subplots(figsize=(6, 3.6))
    try:
        scores = importances(trials, objective)
    except (ValueError, RuntimeError) as exc:  # too few distinct trials for fANOVA
        scores, note = {}, f"not computable: {exc}"
    else:
        note = "no parameter varied" if not scores else ""
    if scores:
        names = list(scores)[::-1]
        ax.barh(names, [scores[n] for n in names])
    else:
        ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True)
    ax.set(title=f"Parameter importance (Optuna fANOVA){title}", xlabel="importance (share of objective variance)",
           ylabel="parameter")
    written.append(_save(fig, out / f"param_importance{suffix}.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    write_atomic(path, lambda temp: fig.savefig(temp, dpi=100, format="png"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


@dataclass
class Search:
    """One Tune run of an experiment, read back for the report."""

    run: Path
    kind: str  # "ensemble", "decoding", "decoding + ensemble", or "training <model>"
    objective: Objective
    trials: pd.DataFrame

    def best(self) -> pd.Series | None:
        values = self.trials[self.objective.metric]
        return None if values.isna().all() else self.trials.loc[self.objective.best_index(values)]


def experiment_searches(path: str | Path) -> list[Search]:
    """Every Tune search an experiment holds, oldest first: a training search's run per model,
    or each stage-2 (ensemble / decoding) run under ``tune/``. A run Tune cannot read back
    is an error naming it."""
    from raysum.tune.training_search import METRICS, is_training_search, read_request

    path = Path(path)
    tune_dir = Experiment(path).tune_dir
    if is_training_search(path):
        request = read_request(path)
        objective = Objective(request["metric"], METRICS[request["metric"]], request["metric"])
        runs = [(tune_dir / name, f"training {model}") for model, name in request["runs"].items()
                if any((tune_dir / name).glob("experiment_state*.json"))]
        return [Search(run, kind, objective, load_trials(run, objective)) for run, kind in runs]
    runs = sorted((p for p in tune_dir.glob("*") if any(p.glob("experiment_state*.json"))),
                  key=lambda p: p.stat().st_mtime)
    out = []
    for run in runs:
        trials = load_trials(run)
        names = [c[len("param/"):] for c in param_columns(trials)]
        parts = (["decoding"] if any(n.startswith(DECODING_PREFIX) for n in names) else []) + (
            ["ensemble"] if any(n == "strategy" or n.startswith(WEIGHT_PREFIX) for n in names) else [])
        out.append(Search(run, " + ".join(parts) or "stage-2", ENSEMBLE_OBJECTIVE, trials))
    return out


def analyze(path: str | Path, console) -> dict:
    """Read the search back, print the table, write analysis/ (CSV, best config, plots)."""
    from raysum.tune.training_search import is_training_search

    path = Path(path)
    if is_training_search(path.parent.parent) and not is_training_search(path):
        path = path.parent.parent  # a training search's Tune run: analyse the whole search
    if is_training_search(path):
        return _analyze_training(path, console)
    run = find_run(path)
    trials = load_trials(run)
    if trials[METRIC].isna().all():
        raise RaysumError(f"no trial of {run} reported {METRIC}")
    out = Experiment(path).analysis_dir
    out.mkdir(parents=True, exist_ok=True)
    print_table(trials, console, run)
    _write_analysis(out, trials, best_config_yaml(trials, run))
    plots = plot(trials, out)
    console.print(f"wrote {out / layout.TRIALS_CSV}, {out / layout.BEST_CONFIG_YAML}, "
                  + ", ".join(p.name for p in plots))
    return {"run": run, "trials": trials, "analysis": out, "plots": plots}


def _analyze_training(path: Path, console) -> dict:
    """Every model's Tune run of a training search; best_config.yaml holds each model's best."""
    from raysum.tune.training_search import METRICS, read_request, training_best_config

    request = read_request(path)
    objective = Objective(request["metric"], METRICS[request["metric"]], request["metric"])
    out = Experiment(path).analysis_dir
    frames, best, plots = [], {}, []
    for model, run_name in request["runs"].items():
        run = Experiment(path).tune_dir / run_name
        if not any(run.glob("experiment_state*.json")):
            raise RaysumError(f"the training search {path} has no Tune run for {model} yet ({run}); "
                              f"finish it with raysum tune --resume {path}")
        trials = load_trials(run, objective)
        if trials[objective.metric].isna().all():
            raise RaysumError(f"no trial of {run} reported {objective.metric}")
        out.mkdir(parents=True, exist_ok=True)
        print_table(trials, console, run, objective)
        row = trials.loc[objective.best_index(trials[objective.metric])]
        best[model] = {"run": str(run), "trial_id": row["trial_id"], objective.metric: float(row[objective.metric]),
                       "params": {p[len("param/"):]: _native(row[p]) for p in param_columns(trials)}}
        plots += plot(trials, out, objective, suffix="" if len(request["runs"]) == 1 else f"_{model}")
        frames.append(trials.assign(model=model))
    trials = pd.concat(frames, ignore_index=True)
    _write_analysis(out, trials, training_best_config(path, best, objective.metric))
    console.print(f"wrote {out / layout.TRIALS_CSV}, {out / layout.BEST_CONFIG_YAML}, "
                  + ", ".join(p.name for p in plots))
    return {"runs": [b["run"] for b in best.values()], "trials": trials, "analysis": out, "plots": plots,
            "best": best}


def _write_analysis(out: Path, trials: pd.DataFrame, best_config: str) -> None:
    write_atomic(out / layout.TRIALS_CSV, lambda temp: trials.to_csv(temp, index=False))
    write_text_atomic(out / layout.BEST_CONFIG_YAML, best_config)
