"""Stage 2: which decoding setting each model uses, searched on cached candidates.

    raysum train ... --decoding_space search_spaces/decoding.yaml --decoding_trials 3   # OOF + dev per setting
    raysum tune --space search_spaces/decoding.yaml --experiment DIR --trials 50
    raysum tune --space search_spaces/decoding.yaml --ensemble_space search_spaces/ensemble.yaml --experiment DIR

An experiment whose units generated OOF and dev with several decoding settings (the
candidates' ``decoding`` column, ``d0`` = each model's own settings) holds everything a
decoding choice needs: nothing is generated here. A generated setting is eligible when
its values lie inside the decoding space (per-model blocks beat the global parameters;
a key the space does not name is not restricted). Each Ray Tune trial (OptunaSearch,
seeded) picks one eligible label per model (``decoding.<model>``), keeps only those
candidates in every pool, and scores the experiment's ensemble strategy on them (or the
trial's strategy and weights with ``--ensemble_space``); the out-of-fold
competition_score is maximised, dev is reported. The candidates are prepared once in
the driver (tokens, pairwise ROUGE of every pool with all settings); a trial slices the
pairwise ROUGE of its choice (``raysum.ensemble.subset``), it never tokenizes again.

Written under ``DIR/tune/`` only: Tune's storage and ``decoding_best.json`` (the best
labels with their settings, OOF and dev, the same strategy with every model's own
settings, the best single unit). ``raysum analyze DIR`` turns the best trial into
``analysis/best_config.yaml`` with the chosen settings as the models' own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from raysum.errors import ConfigError, RaysumError
from raysum.experiment import Experiment, layout, write_json
from raysum.launch import ray_summary
from raysum.tune.ensemble_search import (
    METRIC,
    SPLITS,
    EnsembleObjective,
    _plain,
    _run_tune,
    refuse_small_stacking,
    stage2_references,
    start_ray,
    weights_of,
)
from raysum.tune._best import best_result
from raysum.tune.space import SearchSpace, admitted, check_models, load_space, to_tune

DECODING_PREFIX = "decoding."
HOW_TO_GENERATE = ("train it with extra decoding settings, e.g. raysum train ... --decoding_settings "
                   "'{num_beams: 1}' '{length_penalty: 1.4}', or --decoding_space search_spaces/decoding.yaml "
                   "--decoding_trials 3 (OOF and dev are generated once per setting)")


class DecodingObjective:
    """OOF and dev scores of a decoding choice ({model: label}) with an ensemble strategy.

    ``strategy``/``weights`` are used when a call gives none (the experiment's own)."""

    def __init__(self, prepared, oof_references: Mapping, seed: int, strategy: str,
                 weights: Mapping[str, float] | None):
        self.prepared = prepared
        self.oof_references = oof_references
        self.seed = seed
        self.strategy = strategy
        self.weights = weights
        self.models = prepared.candidates["model"].to_numpy()
        self.labels = prepared.candidates["decoding"].to_numpy()

    def restrict(self, choice: Mapping[str, str]):
        """The prepared candidates of the chosen label of every model."""
        from raysum.ensemble import subset

        keep = np.zeros(len(self.models), dtype=bool)
        for model, label in choice.items():
            keep |= (self.models == model) & (self.labels == label)
        return subset(self.prepared, keep)

    def _objective(self, choice: Mapping[str, str]) -> EnsembleObjective:
        return EnsembleObjective(self.restrict(choice), self.oof_references, self.seed)

    def _strategy(self, strategy: str | None, weights):
        return (self.strategy, self.weights) if strategy is None else (strategy, weights)

    def __call__(self, choice: Mapping[str, str], strategy: str | None = None, weights=None) -> dict:
        return self._objective(choice)(*self._strategy(strategy, weights))

    def scores(self, choice: Mapping[str, str], strategy: str | None = None, weights=None) -> dict:
        return self._objective(choice).scores(*self._strategy(strategy, weights))


def decodings_of(config: Mapping) -> dict[str, str]:
    """``decoding.<model>`` keys of a trial config as {model: label}."""
    return {k[len(DECODING_PREFIX):]: str(v) for k, v in config.items() if k.startswith(DECODING_PREFIX)}


def decoding_trial(config: dict, objective: DecodingObjective) -> None:
    """One Tune trial: score the suggested decoding per model (and strategy), report once."""
    from ray import tune

    strategy = config.get("strategy")
    tune.report(objective(decodings_of(config), strategy, weights_of(config) if strategy else None))


def eligible_decodings(space: SearchSpace, tables: dict[str, dict], candidates: pd.DataFrame,
                       path: Path) -> dict[str, list[str]]:
    """{model: labels} generated for the model and inside the space; an error naming what
    is missing when there is nothing to choose from."""
    if "decoding" not in candidates.columns or candidates["decoding"].nunique() < 2:
        raise RaysumError(
            f"decoding candidates are not available for this experiment ({path}): its candidates table has no "
            f"`decoding` column with several decoding settings; {HOW_TO_GENERATE}")
    generated = candidates.groupby("model")["decoding"].agg(lambda labels: sorted(set(labels))).to_dict()
    problems, out = [], {}
    for model, table in tables.items():
        labels = generated.get(model, [])
        unknown = [label for label in labels if label not in table]
        if unknown:
            problems.append(f"model {model}: the candidates carry decoding label(s) {unknown} that the experiment's "
                            "config does not define")
        out[model] = [label for label in labels if label in table and admitted(space, model, table[label])]
        if not out[model]:
            listed = "; ".join(f"{label} {table[label]}" for label in labels if label in table)
            problems.append(f"model {model}: none of its generated decoding settings lies inside {space.path} "
                            f"({listed}); widen the space")
    if problems:
        raise RaysumError("cannot search decoding settings:\n" + "\n".join(f"  - {p}" for p in problems))
    if all(len(labels) < 2 for labels in out.values()):
        raise RaysumError(f"nothing to search in {path}: every model has one decoding setting inside {space.path} "
                          f"({', '.join(f'{m}: {ls[0]}' for m, ls in out.items())}); {HOW_TO_GENERATE}")
    return out


def _ensemble_space(path: str | Path | None, models: list[str]) -> SearchSpace | None:
    if path is None:
        return None
    space = load_space(path)
    if space.space != "ensemble":
        raise ConfigError(f"--ensemble_space {path}: a {space.space} space; give an ensemble space "
                          "(search_spaces/ensemble.yaml)")
    check_models(space, models)
    return space


def search_decoding(experiment: str | Path, space_path: str | Path, *, ensemble_space: str | Path | None = None,
                    trials: int = 50, seed: int | None = None, num_cpus: int | None = None,
                    max_concurrent: int | None = None, tokenizer: str = "kiwi", ray_address: str | None = None,
                    console=None) -> dict:
    """Run the decoding search; returns (and writes to DIR/tune/decoding_best.json) the best trial."""
    from ray import tune

    from raysum.ensemble import best_single_unit, canonical, prepare
    from raysum.generation.decodings import DEFAULT, decoding_table
    from raysum.pipeline import ensemble_weights

    path = Path(experiment)
    exp = Experiment(path)
    space = load_space(space_path)
    if space.space != "decoding":
        raise ConfigError(f"{space_path}: a {space.space} space; the decoding search takes a decoding space")
    cfg = exp.resolved()
    models = list(cfg.models)
    check_models(space, models)
    joint = _ensemble_space(ensemble_space, models)
    if trials < 1:
        raise RaysumError(f"--trials must be at least 1, got {trials}")
    candidates = exp.candidates()
    tables = {m: decoding_table(cfg.models[m]) for m in models}
    eligible = eligible_decodings(space, tables, candidates, path)
    param_space = {f"{DECODING_PREFIX}{m}": tune.choice(labels) for m, labels in eligible.items()}
    if joint is not None:
        param_space.update(to_tune(joint, models))
    seed = cfg.experiment.seed if seed is None else seed
    keep = pd.Series([label in eligible.get(m, []) for m, label in zip(candidates["model"], candidates["decoding"])],
                     index=candidates.index)
    candidates = candidates[keep & candidates["split"].isin(SPLITS)]
    references = stage2_references(path, candidates)
    refuse_small_stacking(path, candidates, [canonical(cfg.experiment.ensemble_strategy)]
                          + ([canonical(s) for s in joint.parameters["strategy"].values]
                             if joint and "strategy" in joint.parameters else []))

    started = time.perf_counter()
    prepared = prepare(candidates, exp.dialogues(), references_by_split=references, tokenizer=tokenizer)
    strategy = canonical(cfg.experiment.ensemble_strategy)
    objective = DecodingObjective(prepared, references["oof"], seed, strategy,
                                  ensemble_weights(cfg) if strategy == "weighted_avg" else None)
    prepare_s = time.perf_counter() - started
    if console:
        console.print(f"prepared {len(prepared.candidates)} candidates ({sum(map(len, eligible.values()))} eligible "
                      f"decoding settings over {len(models)} model(s)) in {prepare_s:.1f} s; searching {trials} "
                      "trial(s)")

    run_name = f"decoding_{datetime.now():%Y%m%d_%H%M%S}"
    start_ray(ray_address or cfg.experiment.ray_address, num_cpus)
    results, search_s = _run_tune(objective, param_space, trials=trials, seed=seed,
                                  max_concurrent=max_concurrent, storage=exp.tune_dir, name=run_name,
                                  trial=decoding_trial)
    best = best_result(results, METRIC, "max")
    if best is None:
        raise RaysumError(f"no trial of the search reported {METRIC}: see {exp.tune_dir / run_name}")
    config = {k: best.config[k] for k in param_space}
    choice = decodings_of(config)
    if joint is not None:
        strategy = canonical(config["strategy"])
        weights = weights_of(config) if strategy == "weighted_avg" else None
    else:
        weights = objective.weights
    final = objective.scores(choice, strategy, weights)
    own = {m: DEFAULT for m in models}
    own_ok = all(DEFAULT in labels for labels in eligible.values())
    baseline = objective.scores(own, strategy, weights) if own_ok else None
    unit, unit_oof, unit_dev = best_single_unit(objective.restrict(own if own_ok else choice), references)
    summary = {
        "experiment": str(path),
        "space": str(space_path),
        "ensemble_space": str(ensemble_space) if ensemble_space else None,
        "tune_run": str(exp.tune_dir / run_name),
        "best_file": str(exp.tune_dir / layout.DECODING_BEST_JSON),
        "metric": METRIC,
        "mode": "max",
        "seed": seed,
        "trials": len(results),
        "errors": len(results.errors),
        "eligible": {m: {label: tables[m][label] for label in labels} for m, labels in eligible.items()},
        "best": {"decodings": {m: {"label": label, "settings": tables[m][label]} for m, label in choice.items()},
                 "strategy": strategy, "weights": weights, "config": config},
        "oof": final["oof"],
        "dev": final["dev"],
        "own_decoding": None if baseline is None else {"oof": baseline["oof"], "dev": baseline["dev"]},
        "best_single": {"unit": unit, "oof": unit_oof, "dev": unit_dev},
        "ray": ray_summary(),
        "timing": {"prepare_s": round(prepare_s, 2), "search_s": round(search_s, 2),
                   "trials_per_minute": round(len(results) / search_s * 60, 1)},
    }
    write_json(exp.tune_dir / layout.DECODING_BEST_JSON, summary, default=_plain)
    return summary
