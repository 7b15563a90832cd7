"""The strategies by name: ``register_strategy``, the seed report's aliases, ``canonical``.

A strategy is a ``select(prepared, ...)`` function (or a module exposing one) that picks
one candidate per dialogue pool. It may accept any of the keyword options ``weights``,
``references`` and ``seed``; it returns the chosen candidate positions (one per pool, in
pool order), or a :class:`Choice` when it also has something to report.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from raysum.registry import Registry

# The seed report's names, each mapped to the strategy that does what it meant.
ALIASES: dict[str, str] = {
    "majority_vote": "voting",
    "averaging": "weighted_avg",
    "rouge_weighted": "weighted_avg",
    "blending": "stacking",
}

# name -> select function, in registration order.
STRATEGIES = Registry("ensemble strategy")

OPTIONS = ("weights", "references", "seed")
# Strategies that learn from (or compare by) the out-of-fold candidates: fold modes only.
NEEDS_OOF = ("stacking", "auto")


class Choice(NamedTuple):
    """What a strategy returns: the chosen candidate per pool, and what it wants reported."""

    rows: np.ndarray  # positions in ``prepared.candidates``, one per pool, in pool order
    info: dict[str, Any]


def register_strategy(name: str, strategy: ModuleType | Callable, *, replace: bool = False) -> None:
    """Make ``strategy`` (a module with ``select`` or the function itself) available as ``name``."""
    fn = getattr(strategy, "select", None) if isinstance(strategy, ModuleType) else strategy
    if not callable(fn):
        raise TypeError(f"strategy {name!r} must be a select function or a module with one")
    if name in ALIASES:
        raise ValueError(f"{name!r} is an alias of {ALIASES[name]!r}; choose another name")
    if name in STRATEGIES and not replace:
        raise ValueError(f"strategy {name!r} is already registered; pass replace=True to replace it")
    STRATEGIES.register(name, fn)


def canonical(name: str) -> str:
    """The registered name for ``name`` (aliases resolved); ValueError for an unknown name."""
    name = ALIASES.get(name, name)
    if name not in STRATEGIES:
        known = ", ".join(list(STRATEGIES) + [f"{a} (= {t})" for a, t in ALIASES.items()])
        raise ValueError(f"unknown ensemble strategy {name!r}; choose one of {known}")
    return name


def run_strategy(prepared, name: str, **options) -> Choice:
    """Call strategy ``name`` with the options its ``select`` accepts.

    ``weights`` given to a strategy that takes none is an error (it would be ignored);
    ``references`` and ``seed`` are passed only where they are used.
    """
    name = canonical(name)
    fn = STRATEGIES[name]
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {k: v for k, v in options.items() if takes_any or k in params}
    if options.get("weights") is not None and "weights" not in accepted:
        raise ValueError(f"weights apply to weighted_avg; strategy {name!r} takes none")
    result = fn(prepared, **accepted)
    choice = result if isinstance(result, Choice) else Choice(np.asarray(result, dtype=int), {})
    if len(choice.rows) != len(prepared.pools):
        raise RuntimeError(
            f"strategy {name!r} chose {len(choice.rows)} candidates for {len(prepared.pools)} pools"
        )
    if not np.array_equal(prepared.pool_of[choice.rows], np.arange(len(prepared.pools))):
        raise RuntimeError(f"strategy {name!r} chose a candidate outside its dialogue's pool")
    return choice


def config_problems(cfg) -> tuple[list[str], list[str]]:
    """Problems and warnings of a resolved config's ensemble settings (names read from the registry)."""
    from raysum.config.schema import FOLD_MODES

    exp, problems, warnings = cfg.experiment, [], []
    strategy = ALIASES.get(exp.ensemble_strategy, exp.ensemble_strategy)
    if strategy not in STRATEGIES:
        problems.append(f"ensemble_strategy {exp.ensemble_strategy!r} is unknown; choose one of "
                        f"{', '.join(STRATEGIES)} (aliases: {', '.join(ALIASES)})")
    if strategy in NEEDS_OOF and exp.mode not in FOLD_MODES:
        what = "learns from" if strategy == "stacking" else "compares by the score of"
        problems.append(f"ensemble_strategy {strategy} {what} out-of-fold candidates: use mode "
                        f"{', '.join(FOLD_MODES)}, not {exp.mode}")
    if exp.ensemble_weights is not None and strategy == "auto":
        warnings.append("ensemble_weights do not apply to auto: it fits weighted_avg's weights on the out-of-fold "
                        "candidates")
    elif exp.ensemble_weights is not None and strategy != "weighted_avg":
        warnings.append(f"ensemble_weights only apply to weighted_avg, not {exp.ensemble_strategy}")
    return problems, warnings
