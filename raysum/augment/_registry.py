"""The augmentation methods by name, and the check that the ones asked for can run here."""

from __future__ import annotations

from types import ModuleType

from raysum.augment import back_translation, paraphrase, speaker_swap, synonym, turn_shuffle
from raysum.augment.back_translation import DEFAULT_TRANSLATORS, checkpoint_problems
from raysum.registry import Registry

AUGMENT_METHODS = Registry(
    "augmentation method",
    check=lambda module: None if callable(getattr(module, "augment", None))
    else f"{module!r} has no callable augment(example, rng)")


def register_augment(name: str, module: ModuleType) -> None:
    """Make ``module`` (anything with a callable ``augment``) the augmentation method ``name``."""
    AUGMENT_METHODS.register(name, module)


for _name, _module in [("speaker_swap", speaker_swap), ("turn_shuffle", turn_shuffle), ("synonym", synonym),
                       ("paraphrase", paraphrase), ("back_translation", back_translation)]:
    register_augment(_name, _module)


def check_available(methods: list[str], translator_models: list[str] | None = None) -> list[str]:
    """Every reason the augmentation asked for cannot run here (empty when it can): unknown
    methods, and for ``back_translation`` each translator checkpoint that cannot be loaded
    offline, named with how to provide it."""
    problems = [f"unknown augmentation method {m!r}; known: {', '.join(sorted(AUGMENT_METHODS))}"
                for m in methods if m not in AUGMENT_METHODS]
    if "back_translation" in methods:
        problems += checkpoint_problems(list(translator_models or DEFAULT_TRANSLATORS))
    return problems


def config_problems(cfg) -> list[str]:
    """Unknown augmentation methods of a resolved config (names read from the registry)."""
    return AUGMENT_METHODS.unknown(cfg.experiment.augmentation_methods)
