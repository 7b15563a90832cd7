"""Ray Tune searches: search spaces (``search_spaces/*.yaml``), stage 2 on cached
candidates, and reading a finished search back.

    from raysum.tune import load_space, to_tune
    space = load_space("search_spaces/ensemble.yaml")
    param_space = to_tune(space, ["kobart", "qwen3-4b"])       # ray.tune sampling objects

    from raysum.tune.ensemble_search import search_ensemble    # raysum tune
    from raysum.tune.analysis import analyze                   # raysum analyze

Importing this package imports neither ray.tune nor optuna: they are imported by the
functions that use them.
"""

from raysum.tune.space import Parameter, SearchSpace, check_models, load_space, to_optuna, to_tune

__all__ = ["Parameter", "SearchSpace", "check_models", "load_space", "to_optuna", "to_tune"]
