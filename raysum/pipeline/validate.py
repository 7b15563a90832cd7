"""A resolved config checked against everything: the config's own rules and every
registry's names (each checked by the package that owns it). Every problem is
collected, then raised once (exit 2), before any work."""

from __future__ import annotations

from raysum import augment, data, ensemble, tta
from raysum.config import validate as config_rules
from raysum.config.resolve import ResolvedConfig
from raysum.config.schema import ModelSettings
from raysum.errors import ConfigError
from raysum.generation.decodings import decoding_problems
from raysum.models import architecture_problems
from raysum.training.tracking import tracking_problems


def validate(cfg: ResolvedConfig) -> ResolvedConfig:
    """Raise ConfigError with every problem; add warnings for values that cannot apply."""
    problems, warnings = config_rules.config_problems(cfg)
    problems = list(cfg.problems) + problems
    try:
        more, notes = ensemble.config_problems(cfg)
    except (TypeError, AttributeError):
        more, notes = [], []  # a strategy of the wrong type, already reported by resolve
    problems += more
    warnings += notes
    for owner in (augment.config_problems, tta.config_problems, data.config_problems):
        problems += _guarded(owner, cfg)
    problems += _guarded(lambda c: tracking_problems(list(c.experiment.tracking)), cfg)
    for name, settings in cfg.models.items():
        problems.extend(f"models.{name}: {p}" for p in _guarded(model_problems, settings))
    if problems:
        raise ConfigError(problems)
    cfg.warnings = warnings
    return cfg


def model_problems(settings: ModelSettings) -> list[str]:
    """Every problem of one model's settings that needs no hardware to detect."""
    return (config_rules.model_problems(settings) + architecture_problems(settings)
            + decoding_problems(settings))


def _guarded(check, value) -> list[str]:
    """A check's problems; a value of the wrong type (already reported by resolve) adds none."""
    try:
        return check(value)
    except (TypeError, AttributeError):
        return []
