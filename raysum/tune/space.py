"""Search spaces for Ray Tune: the files parsed by :mod:`raysum.config.space`, strategy
names checked against the ensemble registry, turned into ``ray.tune`` sampling objects
(flat keys: ``learning_rate``, ``models.kobart.learning_rate``, ``weights.kobart``) and
the matching Optuna distributions."""

from __future__ import annotations

from pathlib import Path

from raysum.config.space import (  # noqa: F401 - the space API, in one place for the searches
    EACH_MODEL, KINDS, PARAMETERS, Parameter, SearchSpace, admits, admitted, check_models, sample,
)
from raysum.config.space import load_space as _parse_space_file
from raysum.ensemble import canonical


def _strategy_names(space: SearchSpace, problems: list[str]) -> None:
    strategy = space.parameters.get("strategy") if space.space == "ensemble" else None
    if strategy is None or strategy.kind != "choice":
        return
    for value in strategy.values:
        try:
            canonical(str(value))
        except ValueError as exc:
            problems.append(f"strategy: {exc}")


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search space file (strategy names included); ConfigError listing every problem."""
    return _parse_space_file(path, checks=(_strategy_names,))


def to_tune(space: SearchSpace, models: list[str]) -> dict:
    """``ray.tune`` sampling objects under flat keys (``weights.each_model`` expanded)."""
    from ray import tune

    check_models(space, models)
    out = {}
    for key, p in space.flat(models).items():
        if p.kind == "loguniform":
            out[key] = tune.loguniform(p.low, p.high)
        elif p.kind == "uniform":
            out[key] = tune.uniform(p.low, p.high)
        elif p.kind == "int":
            # tune.qrandint includes its upper bound, like the file's `high`.
            out[key] = tune.qrandint(p.low, p.high, p.step) if p.step != 1 else tune.randint(p.low, p.high + 1)
        else:
            out[key] = tune.choice(list(p.values))
    return out


def to_optuna(space: SearchSpace, models: list[str]) -> dict:
    """Optuna distributions under the same flat keys (for rebuilding a study from trials)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for key, p in space.flat(models).items():
        if p.kind in ("loguniform", "uniform"):
            out[key] = FloatDistribution(p.low, p.high, log=p.kind == "loguniform")
        elif p.kind == "int":
            out[key] = IntDistribution(p.low, p.high, step=p.step)
        else:
            out[key] = CategoricalDistribution(list(p.values))
    return out


