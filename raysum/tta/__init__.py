"""Test-time augmentation: input variants of a dialogue whose summaries join the candidates.

    variants = make_variants(dialogue, "reorder", n=2, seed=42, key="dev_0")
    # [(text, label_map), ...]: variant i is named f"reorder_{i + 1}"
    summary = map_back(generated_for_variant, label_map)   # tags back to the original's

A strategy is a module ``raysum/tta/<name>.py`` exposing
``variant(dialogue, rng, taken=()) -> (text, label_map)``: the variant text, differing
from ``dialogue`` and from the texts in ``taken`` whenever the strategy can manage it, and
a map from tags of the variant to tags of the original (``{}`` when labels are kept).
Strategies: ``reorder`` (speaker-label permutation), ``paraphrase`` (Korean rule-based
rewrites of endings, openings and everyday words); see their module docstrings.
"""

from __future__ import annotations

import random
from types import ModuleType

from raysum.errors import ConfigError
from raysum.registry import Registry
from raysum.tta import paraphrase, reorder
from raysum.tta._korean import split_line
from raysum.tta._labels import inverse, relabel, speakers

TTA_STRATEGIES = Registry(
    "TTA strategy",
    check=lambda module: None if callable(getattr(module, "variant", None))
    else f"{module!r} has no callable variant(dialogue, rng)")


def register_tta(name: str, module: ModuleType) -> None:
    """Make ``module`` (anything with a callable ``variant``) the TTA strategy called ``name``."""
    TTA_STRATEGIES.register(name, module)


def config_problems(cfg) -> list[str]:
    """Unknown TTA strategies of a resolved config (names read from the registry)."""
    return TTA_STRATEGIES.unknown(cfg.experiment.tta_strategies)


register_tta("reorder", reorder)
register_tta("paraphrase", paraphrase)


def variant_names(strategy: str, n: int) -> list[str]:
    """The tta column values of ``n`` variants: ``reorder_1``, ``reorder_2`` ..."""
    return [f"{strategy}_{i + 1}" for i in range(n)]


def make_variants(dialogue: str, strategy: str, n: int, seed: int, key: str) -> list[tuple[str, dict[str, str]]]:
    """``n`` variants of ``dialogue`` with their label maps. Variant i depends only on
    (``seed``, ``key``, ``strategy``, i) and the variants before it, never on ``n``; the
    variants differ from the dialogue and, as far as the strategy allows, from each other."""
    if strategy not in TTA_STRATEGIES:
        raise ConfigError(f"unknown TTA strategy {strategy!r}; known: {', '.join(sorted(TTA_STRATEGIES))}")
    if n < 0:
        raise ConfigError(f"number of TTA variants must be >= 0, got {n}")
    module = TTA_STRATEGIES[strategy]
    variants: list[tuple[str, dict[str, str]]] = []
    for i in range(n):
        rng = random.Random(f"raysum-tta:{seed}:{key}:{strategy}:{i}")
        variants.append(module.variant(dialogue, rng, taken={text for text, _ in variants}))
    return variants


def map_back(summary: str, label_map: dict[str, str]) -> str:
    """``summary`` written about a variant, with its tags mapped back to the original's:
    every tag replaced at once (a swap does not cascade), nothing but tags and the particle
    attached to a replaced tag (``#Person2#는`` -> ``#Person1#은``) changes."""
    return relabel(summary, label_map)


__all__ = [
    "TTA_STRATEGIES",
    "config_problems",
    "inverse",
    "make_variants",
    "map_back",
    "register_tta",
    "relabel",
    "speakers",
    "split_line",
    "variant_names",
]
