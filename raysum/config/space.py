"""Search spaces: YAML files in ``search_spaces/``, loaded, validated and turned into Ray Tune.

A search space file looks like this (every file in ``search_spaces/`` has it in its
header comment)::

    space: training                # training | decoding | ensemble: what it searches
    parameters:                    # searched for every model
      learning_rate: {kind: loguniform, low: 1.0e-5, high: 1.0e-3}
      epochs: {kind: int, low: 1, high: 5}           # optional step: {..., step: 2}
      warmup_ratio: {kind: uniform, low: 0.0, high: 0.2}
      lora.r: {kind: choice, values: [8, 16, 32]}
    models:                        # optional: per-model parameters, beat the global ones
      kobart:
        learning_rate: {kind: loguniform, low: 1.0e-5, high: 1.0e-4}

Kinds: ``loguniform`` (low, high; 0 < low < high), ``uniform`` (low, high; low < high),
``int`` (integer low, high, optional integer step > 0; high included), ``choice``
(values: a non-empty list). The ensemble space searches ``strategy`` and per-model
``weights``: ``weights: {each_model: {kind: uniform, low: 0.0, high: 1.0}}`` expands to
one ``weights.<model>`` parameter for every model of the experiment, and
``weights.<model>`` keys name one model explicitly.

:func:`load_space` collects every problem of a file and raises one
:class:`raysum.errors.ConfigError`. Parsing lives here, below everything that reads a
space (decoding settings drawn at config time, the Tune searches);
:mod:`raysum.tune.space` adds the strategy-name check and turns a space into ``ray.tune``
sampling objects and Optuna distributions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from raysum.config.resolve import read_yaml_file
from raysum.errors import ConfigError

KINDS = {"loguniform": ("low", "high"), "uniform": ("low", "high"), "int": ("low", "high", "step"),
         "choice": ("values",)}
# What each kind of space may search; ``weights`` of the ensemble space is handled apart.
PARAMETERS = {
    "training": ("epochs", "learning_rate", "gradient_accumulation_steps", "warmup_ratio", "batch_size",
                 "lora.r", "lora.alpha", "lora.dropout", "prompt_strategy"),
    "decoding": ("num_beams", "length_penalty", "no_repeat_ngram_size", "max_length"),
    "ensemble": ("strategy",),
}
EACH_MODEL = "each_model"


@dataclass(frozen=True)
class Parameter:
    """One searched setting: its kind and bounds (or values)."""

    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None
    values: tuple = ()


@dataclass
class SearchSpace:
    """A validated search space: global parameters, per-model ones, and weights."""

    space: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    models: dict[str, dict[str, Parameter]] = field(default_factory=dict)
    weights: dict[str, Parameter] = field(default_factory=dict)  # model or each_model -> parameter
    path: str = ""

    def flat(self, models: list[str]) -> dict[str, Parameter]:
        """Every parameter under its flat key, ``each_model`` expanded to ``models``."""
        out = dict(self.parameters)
        for model, params in self.models.items():
            out.update({f"models.{model}.{k}": p for k, p in params.items()})
        if EACH_MODEL in self.weights:
            out.update({f"weights.{m}": self.weights[EACH_MODEL] for m in models})
        out.update({f"weights.{m}": p for m, p in self.weights.items() if m != EACH_MODEL})
        return out


def load_space(path: str | Path,
               checks: tuple[Callable[[SearchSpace, list[str]], None], ...] = ()) -> SearchSpace:
    """Read and validate a search space file; ConfigError listing every problem (``checks``:
    more checks by the packages that own what a space names, e.g. strategy names)."""
    path = Path(path)
    data = read_yaml_file(path, "search space", missing="no such file")
    problems: list[str] = []
    space = _parse(data, problems, str(path))
    for check in checks:
        check(space, problems)
    if problems:
        raise ConfigError([f"search space {path}: {p}" for p in problems])
    return space


def _parse(data: Any, problems: list[str], path: str) -> SearchSpace:
    if not isinstance(data, dict):
        problems.append("expected a mapping with 'space' and 'parameters'")
        return SearchSpace("unknown", path=path)
    unknown = sorted(set(data) - {"space", "parameters", "models"})
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown}; allowed: space, parameters, models")
    kind = data.get("space")
    if kind not in PARAMETERS:
        problems.append(f"space is {kind!r}; choose one of {', '.join(PARAMETERS)}")
        kind = None
    space = SearchSpace(kind or "unknown", path=path)
    params = data.get("parameters")
    if not isinstance(params, dict) or not params:
        problems.append("parameters must be a non-empty mapping of name -> {kind, ...}")
        params = {}
    for name, spec in params.items():
        name = str(name)
        if kind == "ensemble" and (name == "weights" or name.startswith("weights.")):
            _parse_weights(space, name, spec, problems)
        elif kind and name not in PARAMETERS[kind]:
            problems.append(f"{name}: not a {kind} parameter; allowed: {', '.join(_allowed(kind))}")
        else:
            _keep(space.parameters, name, _parameter(name, spec, problems))
    models = data.get("models") or {}
    if not isinstance(models, dict):
        problems.append("models must map a model name to its parameters")
        models = {}
    if models and kind == "ensemble":
        problems.append("models: the ensemble space takes per-model weights as weights.<model>, not a models block")
        models = {}
    for model, block in models.items():
        if not isinstance(block, dict) or not block:
            problems.append(f"models.{model}: expected a mapping of parameters")
            continue
        for name, spec in block.items():
            if kind and name not in PARAMETERS[kind]:
                problems.append(f"models.{model}.{name}: not a {kind} parameter; allowed: {', '.join(_allowed(kind))}")
                continue
            _keep(space.models.setdefault(str(model), {}), name, _parameter(f"models.{model}.{name}", spec, problems))
    if kind == "ensemble":
        _check_strategies(space, problems)
    if kind == "decoding":  # a training space is checked per model with the whole trial (tune.training_search)
        _check_ranges(space, problems)
    return space


def _check_ranges(space: SearchSpace, problems: list[str]) -> None:
    """Every value a parameter can take lies inside its setting's range (the schema's), so no
    trial is drawn that the run would refuse."""
    from raysum.config.schema import LoraSettings, ModelSettings, field_bounds

    ranges = {**field_bounds(ModelSettings), **{f"lora.{k}": b for k, b in field_bounds(LoraSettings).items()}}
    named = [(name, name, p) for name, p in space.parameters.items()]
    named += [(f"models.{model}.{name}", name, p) for model, params in space.models.items()
              for name, p in params.items()]
    for where, name, parameter in named:
        bounds = ranges.get(name)
        if bounds is None:
            continue
        values = parameter.values if parameter.kind == "choice" else (parameter.low, parameter.high)
        outside = [v for v in values if not _is_number(v) or not bounds.admits(v)]
        if outside:
            problems.append(f"{where} must be {bounds.text()}; the space reaches {outside}")


def _allowed(kind: str) -> list[str]:
    return list(PARAMETERS[kind]) + (["weights.each_model", "weights.<model>"] if kind == "ensemble" else [])


def _keep(target: dict, name: str, parameter: Parameter | None) -> None:
    if parameter is not None:
        target[name] = parameter


def _parse_weights(space: SearchSpace, name: str, spec: Any, problems: list[str]) -> None:
    if name == "weights":
        if not isinstance(spec, dict) or not spec:
            problems.append("weights: expected {each_model: {...}} or {<model>: {...}}")
            return
        items = spec.items()
    else:
        items = [(name[len("weights."):], spec)]
    for model, sub in items:
        parameter = _parameter(f"weights.{model}", sub, problems)
        if parameter is None:
            continue
        if parameter.kind == "choice":
            bad = [v for v in parameter.values if not _is_number(v) or v < 0]
        else:
            bad = [v for v in (parameter.low,) if v < 0]
        if bad:
            problems.append(f"weights.{model}: weights must be numbers >= 0, got {bad}")
        space.weights[str(model)] = parameter


def _check_strategies(space: SearchSpace, problems: list[str]) -> None:
    """The strategy parameter's shape; its names are checked against the strategy registry by
    raysum.tune.space.load_space."""
    strategy = space.parameters.get("strategy")
    if strategy is None:
        problems.append("the ensemble space needs a 'strategy' parameter (kind choice)")
        return
    if strategy.kind != "choice":
        problems.append(f"strategy: kind must be choice, not {strategy.kind}")
        return
    if "weighted_avg" in strategy.values and not space.weights:
        problems.append("strategy offers weighted_avg but no weights are searched (add weights.each_model)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` (no dot) as a string: accept it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _parameter(name: str, spec: Any, problems: list[str]) -> Parameter | None:
    if not isinstance(spec, dict):
        problems.append(f"{name}: expected a mapping like {{kind: uniform, low: 0, high: 1}}, got {spec!r}")
        return None
    kind = spec.get("kind")
    if kind not in KINDS:
        problems.append(f"{name}: kind is {kind!r}; choose one of {', '.join(KINDS)}")
        return None
    extra = sorted(set(spec) - {"kind", *KINDS[kind]})
    if extra:
        problems.append(f"{name}: unknown key(s) {extra} for kind {kind}; allowed: {', '.join(KINDS[kind])}")
    before = len(problems)  # problems of the bounds below; an unknown key does not hide them
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            problems.append(f"{name}: choice needs values: a non-empty list")
            return None
        if len(set(map(repr, values))) != len(values):
            problems.append(f"{name}: choice values repeat: {values}")
        return Parameter(kind, values=tuple(values)) if len(problems) == before and not extra else None
    low, high = _number(spec.get("low")), _number(spec.get("high"))
    for key, value in (("low", low), ("high", high)):
        if not _is_number(value):
            problems.append(f"{name}: {key} must be a number, got {value!r}")
    if len(problems) > before:
        return None
    if kind == "int":
        step = spec.get("step", 1)
        for key, value in (("low", low), ("high", high), ("step", step)):
            if not (_is_number(value) and float(value).is_integer()):
                problems.append(f"{name}: {key} must be an integer for kind int, got {value!r}")
        if len(problems) > before:
            return None
        low, high, step = int(low), int(high), int(step)
        if step <= 0:
            problems.append(f"{name}: step must be > 0, got {step}")
        elif (high - low) % step:
            problems.append(f"{name}: high - low ({high - low}) must be a multiple of step ({step})")
    if not low < high:
        problems.append(f"{name}: low ({low}) must be below high ({high})")
    if kind == "loguniform" and low <= 0:
        problems.append(f"{name}: loguniform needs low > 0, got {low}")
    if len(problems) > before or extra:
        return None
    return Parameter(kind, low=low, high=high, step=step if kind == "int" else None)


def check_models(space: SearchSpace, models: list[str]) -> None:
    """ConfigError if the space names a model that is not among ``models``."""
    named = set(space.models) | {m for m in space.weights if m != EACH_MODEL}
    unknown = sorted(named - set(models))
    if unknown:
        raise ConfigError(f"search space {space.path}: model(s) {unknown} are not in the experiment "
                          f"({', '.join(models) or 'none'})")


def sample(parameters: dict[str, Parameter], rng) -> dict:
    """One concrete value per parameter, drawn with numpy's ``rng`` (floats to 3 decimals)."""
    out = {}
    for name, p in parameters.items():
        if p.kind == "choice":
            value = p.values[int(rng.integers(len(p.values)))]
        elif p.kind == "int":
            value = p.low + p.step * int(rng.integers((p.high - p.low) // p.step + 1))
        elif p.kind == "loguniform":
            value = round(float(math.exp(rng.uniform(math.log(p.low), math.log(p.high)))), 3)
        else:
            value = round(float(rng.uniform(p.low, p.high)), 3)
        out[name] = value.item() if hasattr(value, "item") else value
    return out


def admits(p: Parameter, value) -> bool:
    """Whether ``value`` lies in the parameter's range (choice: among its values)."""
    if p.kind == "choice":
        return value in p.values
    if not _is_number(value):
        return False
    if p.kind == "int":
        return p.low <= value <= p.high and float(value).is_integer() and (int(value) - p.low) % p.step == 0
    return p.low <= value <= p.high


def admitted(space: SearchSpace, model: str, settings: dict) -> bool:
    """Whether concrete ``settings`` lie inside ``space`` for ``model`` (its own block beats
    the global parameters; a key the space does not name is not restricted)."""
    parameters = {**space.parameters, **space.models.get(model, {})}
    return all(admits(p, settings[name]) for name, p in parameters.items() if name in settings)
