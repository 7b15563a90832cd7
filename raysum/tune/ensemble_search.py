"""Stage 2: ensemble strategy and weights searched on a finished experiment's candidates.

    raysum tune --space search_spaces/ensemble.yaml --experiment DIR --trials 200 --seed 0

The driver prepares the candidates once (tokens and pairwise ROUGE of every OOF and
dev pool) and scores the strategies that take no weights once: their selection does
not depend on the trial. Each Ray Tune trial then runs weighted_avg's utility for its
weights on the shared pairwise ROUGE (or looks up the precomputed score) and reports
OOF and dev ROUGE. OptunaSearch (seeded) maximises the out-of-fold competition_score;
dev is reported, never optimised on. A trial's score is the mean ROUGE of the chosen
candidates to their references, taken from the prepared reference ROUGE: the same
number ``raysum.ensemble.evaluate`` gives for the same selection (a test checks it).

Everything is written under ``DIR/tune/``: Tune's storage (``DIR/tune/<run>/``) and
``DIR/tune/ensemble_best.json``. The experiment's own files are only read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from raysum.errors import ConfigError, RaysumError
from raysum.experiment import Experiment, layout, write_json
from raysum.launch import ray_summary
from raysum.tune._best import best_result
from raysum.tune.space import SearchSpace, load_space, to_tune

METRIC = "oof_competition_score"
SPLITS = ("oof", "dev")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")
WEIGHT_PREFIX = "weights."


class EnsembleObjective:
    """OOF and dev scores of (strategy, weights) on prepared candidates.

    ``precompute`` scores the strategies that take no weights once (in the driver);
    ``slim`` drops what only those needed (token lists), so the copy each trial
    receives holds pools, pairwise ROUGE and reference ROUGE only.
    """

    def __init__(self, prepared, oof_references: Mapping, seed: int):
        self.prepared = prepared
        self.oof_references = oof_references
        self.seed = seed
        self.pool_split = prepared.pools["split"].to_numpy()
        self.fixed: dict[str, dict] = {}

    def precompute(self, strategies) -> None:
        for name in strategies:
            self.fixed[name] = self._score(name, None)

    def slim(self) -> "EnsembleObjective":
        table = self.prepared.candidates[["split", "fname", "model", "fold", "tta", "pool"]]
        prepared = dataclasses.replace(self.prepared, candidates=table, tokens=[], dialogue_tokens={})
        out = EnsembleObjective(prepared, {}, self.seed)
        out.fixed = dict(self.fixed)
        return out

    def __call__(self, strategy: str, weights: Mapping[str, float] | None = None) -> dict:
        from raysum.ensemble import canonical

        name = canonical(strategy)
        if name in self.fixed:
            return self.fixed[name]
        if name != "weighted_avg":
            weights = None
        elif weights is not None and not sum(weights.values()) > 0:
            weights = None  # every weight 0: weighted_avg falls back to voting
        return self._score(name, weights)

    def scores(self, strategy: str, weights: Mapping[str, float] | None = None) -> dict:
        """{split: {rouge1, rouge2, rougeL, rouge_sum, competition_score, n}} like evaluate's."""
        flat = self(strategy, weights)
        return {split: {k: flat[f"{split}_{k}"] for k in (*ROUGE_KEYS, "rouge_sum", "competition_score", "n")}
                if f"{split}_n" in flat else None for split in SPLITS}

    def _score(self, name: str, weights) -> dict:
        from raysum.ensemble import run_strategy

        rows = run_strategy(self.prepared, name, weights=weights, references=self.oof_references or None,
                            seed=self.seed).rows
        quality = self.prepared.reference_rouge[rows]
        out = {}
        for split in SPLITS:
            q = quality[self.pool_split == split]
            q = q[~np.isnan(q).any(axis=1)]
            if not len(q):
                continue
            means = q.mean(axis=0)
            out.update({f"{split}_{k}": float(v) for k, v in zip(ROUGE_KEYS, means)})
            out[f"{split}_rouge_sum"] = float(means.sum())
            out[f"{split}_competition_score"] = float(means.sum() / 3 * 100)
            out[f"{split}_n"] = len(q)
        return out


def weights_of(config: Mapping) -> dict[str, float] | None:
    """``weights.<model>`` keys of a trial config as {model: weight}; None without any."""
    weights = {k[len(WEIGHT_PREFIX):]: float(v) for k, v in config.items() if k.startswith(WEIGHT_PREFIX)}
    return weights or None


def ensemble_trial(config: dict, objective: EnsembleObjective) -> None:
    """One Tune trial: score the suggested strategy and weights, report once."""
    from ray import tune

    tune.report(objective(config["strategy"], weights_of(config)))


def _check_stage(space: SearchSpace, candidates: pd.DataFrame, path: Path) -> None:
    if space.space == "training":
        raise RaysumError(
            "a training space is searched by training a unit per trial in a new experiment directory "
            "(raysum tune --space search_spaces/training.yaml --models ...), not on an experiment's candidates")
    if space.space == "decoding":
        raise RaysumError(f"{space.path} is a decoding space: raysum tune searches it with "
                          "raysum.tune.decoding_search.search_decoding")


def refuse_small_stacking(path: Path, candidates: pd.DataFrame, strategies: list[str]) -> None:
    """Stacking among the strategies a search tries, on an OOF sample (max_eval_samples) too
    small for its meta-model: one error naming the minimum."""
    from raysum.pipeline import stacking_too_small

    if "stacking" not in strategies:
        return
    exp = Experiment(path)
    problem = stacking_too_small(exp.resolved(), candidates, len(exp.references()["oof"]))
    if problem:
        raise ConfigError(f"{problem}; leave stacking out of the strategies searched")


def stage2_references(path: Path, candidates: pd.DataFrame) -> dict:
    """{oof, dev: fname -> references} of the experiment; an error without OOF candidates
    that have references (stage 2 optimises the OOF score, never dev)."""
    refs = Experiment(path).references()
    references = {"oof": refs["oof"], "dev": refs["dev"]}
    if not ((candidates["split"] == "oof") & candidates["fname"].isin(references["oof"])).any():
        raise RaysumError(f"{path} has no out-of-fold candidates with references: the search optimises the OOF "
                          "score (never dev); run the experiment with k_folds >= 2")
    return references


def start_ray(address: str | None, num_cpus: int | None) -> None:
    """Ray for a stage-2 search: the cluster at ``address`` (or RAY_ADDRESS), else a local instance.
    A trial holds 1 CPU and starts no workers; declaring more CPUs than the cores lets
    the driver and a few trials share them without waiting on each other."""
    from raysum.launch import init_ray

    init_ray(address, num_cpus or max(4, os.cpu_count() or 1))


def search_ensemble(experiment: str | Path, space_path: str | Path, *, trials: int = 50, seed: int | None = None,
                    num_cpus: int | None = None, max_concurrent: int | None = None, tokenizer: str = "kiwi",
                    ray_address: str | None = None, console=None) -> dict:
    """Run the stage-2 search; returns (and writes to DIR/tune/ensemble_best.json) the best trial."""
    from raysum.ensemble import best_single_unit, canonical, prepare
    from raysum.generation.decodings import default_decoding

    path = Path(experiment)
    exp = Experiment(path)
    space = load_space(space_path)
    cfg = exp.resolved()
    candidates = exp.candidates()
    _check_stage(space, candidates, path)
    if trials < 1:
        raise RaysumError(f"--trials must be at least 1, got {trials}")
    models = list(cfg.models)
    param_space = to_tune(space, models)
    seed = cfg.experiment.seed if seed is None else seed
    # The ensemble of the models' own decoding settings; other settings: the decoding search.
    candidates = default_decoding(candidates[candidates["split"].isin(SPLITS)])
    references = stage2_references(path, candidates)
    refuse_small_stacking(path, candidates, [canonical(s) for s in space.parameters["strategy"].values])

    started = time.perf_counter()
    prepared = prepare(candidates, exp.dialogues(), references_by_split=references, tokenizer=tokenizer)
    objective = EnsembleObjective(prepared, references["oof"], seed)
    strategies = [canonical(s) for s in space.parameters["strategy"].values]
    objective.precompute([s for s in strategies if s != "weighted_avg"])
    prepare_s = time.perf_counter() - started
    if console:
        console.print(f"prepared {len(prepared.candidates)} candidates in {len(prepared.pools)} pools "
                      f"({prepare_s:.1f} s); searching {trials} trial(s)")

    run_name = f"ensemble_{datetime.now():%Y%m%d_%H%M%S}"
    start_ray(ray_address or cfg.experiment.ray_address, num_cpus)
    results, search_s = _run_tune(objective.slim(), param_space, trials=trials, seed=seed,
                                  max_concurrent=max_concurrent, storage=exp.tune_dir, name=run_name)
    best = best_result(results, METRIC, "max")
    if best is None:
        raise RaysumError(f"no trial of the search reported {METRIC}: see {exp.tune_dir / run_name}")
    config = {k: best.config[k] for k in param_space}
    strategy = canonical(config["strategy"])
    weights = weights_of(config) if strategy == "weighted_avg" else None
    # The trial's own scores are evaluate()'s (same selection, same reference ROUGE); stacking
    # is not refitted for them.
    final = objective.scores(strategy, weights)
    unit, unit_oof, unit_dev = best_single_unit(prepared, references)
    summary = {
        "experiment": str(path),
        "space": str(space_path),
        "tune_run": str(exp.tune_dir / run_name),
        "best_file": str(exp.tune_dir / layout.ENSEMBLE_BEST_JSON),
        "metric": METRIC,
        "mode": "max",
        "seed": seed,
        "trials": len(results),
        "errors": len(results.errors),
        "best": {"strategy": strategy, "weights": weights, "config": config},
        "oof": final["oof"],
        "dev": final["dev"],
        "best_single": {"unit": unit, "oof": unit_oof, "dev": unit_dev},
        "ray": ray_summary(),
        "timing": {"prepare_s": round(prepare_s, 2), "search_s": round(search_s, 2),
                   "trials_per_minute": round(len(results) / search_s * 60, 1)},
    }
    write_json(exp.tune_dir / layout.ENSEMBLE_BEST_JSON, summary, default=_plain)
    return summary


NO_TUNE_SIGINT_HANDLER = "TUNE_DISABLE_SIGINT_HANDLER"


def _run_tune(objective, param_space: dict, *, trials: int, seed: int, max_concurrent, storage: Path,
              name: str, trial=ensemble_trial):
    """Ray must be started (start_ray)."""
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    # One trial per core: on 2 cores 3 concurrent trials ran 4x slower than 2 (bench_tune.py).
    declared = int(ray.cluster_resources().get("CPU", 2))
    concurrent = max_concurrent or max(1, min(declared - 1, os.cpu_count() or 1))
    searcher = OptunaSearch(metric=METRIC, mode="max", seed=seed)
    trainable = tune.with_resources(tune.with_parameters(trial, objective=objective), {"cpu": 1})
    storage.mkdir(parents=True, exist_ok=True)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials, max_concurrent_trials=concurrent,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage.resolve()), verbose=0,
                                  log_to_file=False),
    )
    started = time.perf_counter()
    # Ctrl-C ends a candidate search at once (KeyboardInterrupt: there is nothing to resume), not
    # through Tune's graceful stop, whose partial results would be written as the search's best.
    previous = os.environ.get(NO_TUNE_SIGINT_HANDLER)
    os.environ[NO_TUNE_SIGINT_HANDLER] = "1"
    try:
        # Tune prints its run header to stdout even at verbose=0; stdout is for --json's object
        with contextlib.redirect_stdout(sys.stderr):
            results = tuner.fit()
    finally:
        if previous is None:
            os.environ.pop(NO_TUNE_SIGINT_HANDLER, None)
        else:
            os.environ[NO_TUNE_SIGINT_HANDLER] = previous
    return results, time.perf_counter() - started


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
