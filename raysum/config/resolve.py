"""Layered resolution with provenance.

Precedence, lowest to highest (written down here and in the README, nowhere else):

    default  <  preset:<file>  <  experiment:<file>  <  cli

Within one layer a per-model value beats a global one (``models.qwen3-4b.epochs``
beats ``epochs`` in the same experiment file), but a higher layer always wins: a
global ``--gradient_accumulation_steps 1`` on the command line beats a per-model value
in the experiment file or the preset. Every leaf remembers the layer that set it.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from raysum.config.presets import PRESET_DIR, model_name, preset_path, read_preset
from raysum.config.schema import (
    SHARED_FIELDS,
    ExperimentConfig,
    LoraSettings,
    ModelSettings,
    ResourceSettings,
    default_ensemble_strategy,
    model_settings_from_dict,
)
from raysum.errors import ConfigError
from raysum.storage import in_ray_job, job_output_dir

DEFAULT = "default"
JOB_DEFAULT = "default inside a Ray job"  # output_dir's, see raysum.storage.job_output_dir
CLI = "cli"

# Nested blocks of ModelSettings that are dataclasses themselves (null allowed for lora).
_NESTED = {"lora": LoraSettings, "resources": ResourceSettings}
# Mappings that are leaves of their own kind: any keys allowed.
_FREE_MAPPINGS = {"from_config"}


@dataclass
class ResolvedConfig:
    """The outcome of resolution: typed values plus the source of every leaf."""

    experiment: ExperimentConfig
    models: dict[str, ModelSettings]
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def tree(self) -> dict:
        """Nested mapping in which every leaf is ``{"value": ..., "source": ...}``."""
        out: dict = {}
        for key, value in _flatten(_global_dict(self.experiment)).items():
            _put(out, key, {"value": value, "source": self.sources.get(key, DEFAULT)})
        models: dict = {}
        for name, settings in self.models.items():
            node = models.setdefault(name, {})  # a name may contain dots: never split it
            for key, value in _flatten(_model_dict(settings)).items():
                full = f"models.{name}.{key}"
                _put(node, key, {"value": value, "source": self.sources.get(full, DEFAULT)})
        out["models"] = models
        return out

    def changed_from_preset(self, name: str) -> list[tuple[str, Any, Any, str]]:
        """Model ``name``'s settings the experiment file or the command line set to a value
        other than its preset's: (setting, value, preset value, source)."""
        from raysum.config.presets import load_preset

        preset = _flatten(_model_dict(load_preset(self.files.get(name, name))))
        out = []
        for key, value in _flatten(_model_dict(self.models[name])).items():
            source = self.sources.get(f"models.{name}.{key}", DEFAULT)
            if source != DEFAULT and not source.startswith("preset:") and preset.get(key) != value:
                out.append((key, value, preset.get(key), source))
        return out

    def plain(self) -> dict:
        """Values only, in the shape `--config` accepts (models as a mapping)."""
        out = _global_dict(self.experiment)
        out["models"] = {name: _model_dict(s) for name, s in self.models.items()}
        return out

    def to_yaml(self) -> str:
        """The plain YAML with each leaf's source as a trailing comment (loadable by --config)."""
        lines = ["# resolved raysum configuration; each value's source follows it as a comment",
                 "# precedence: default < preset:<file> < experiment:<file> < cli"]
        flat_sources = dict(self.sources)
        _emit(lines, self.plain(), "", 0, flat_sources)
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- helpers


def _global_dict(cfg: ExperimentConfig) -> dict:
    data = asdict(cfg)
    data.pop("models")
    return data


def _model_dict(settings: ModelSettings) -> dict:
    data = asdict(settings)
    data.pop("name")
    return data


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and (key in _NESTED or key in _FREE_MAPPINGS or prefix):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _put(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _emit(lines: list[str], data: dict, prefix: str, indent: int, sources: dict[str, str]) -> None:
    pad = "  " * indent
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            _emit(lines, value, path + ".", indent + 1, sources)
            continue
        text = _scalar_text(value)
        source = sources.get(path)
        if source is None and path.startswith("models."):
            source = DEFAULT
        comment = f"  # {source or DEFAULT}"
        lines.append(f"{pad}{key}: {text}{comment}")


def _scalar_text(value: Any) -> str:
    """One-line YAML for a leaf: strings double-quoted (escapes keep them on one line)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar_text(v) for v in value) + "]"
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _expected_type(cls, dotted: str) -> Any:
    """Type annotation of a dotted leaf of `cls` (None when unknown, `Any` for free mappings)."""
    head, _, rest = dotted.partition(".")
    hints = _hints(cls)
    if head not in hints:
        return None
    if not rest:
        return hints[head]
    if head in _FREE_MAPPINGS:
        return Any
    if cls is ModelSettings and head in _NESTED:
        return _expected_type(_NESTED[head], rest)
    return None


def _coerce(value: Any, expected: Any, path: str, problems: list[str]) -> Any:
    """Convert a YAML/CLI value to the annotated type, recording a problem when impossible."""
    if expected is Any or expected is None:
        return value
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path, problems) if len(inner) == 1 else value
    if value is None:
        problems.append(f"{path}: a value is required (got null)")
        return value
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        problems.append(f"{path}: expected true/false, got {value!r}")
        return value
    if expected is int:
        if (isinstance(value, bool) or not _is_number(value) or not math.isfinite(float(value))
                or float(value) != int(float(value))):
            problems.append(f"{path}: expected an integer, got {value!r}")
            return value
        return int(float(value))
    if expected is float:
        if isinstance(value, bool) or not _is_number(value):
            problems.append(f"{path}: expected a number, got {value!r}")
            return value
        return float(value)
    if expected is str:
        return str(value) if isinstance(value, (str, int, float)) else _bad(path, "a string", value, problems)
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_coerce(v, args[0], f"{path}[{i}]", problems) for i, v in enumerate(items)] if args else items
    if origin is dict or expected is dict:
        return value if isinstance(value, dict) else _bad(path, "a mapping", value, problems)
    if is_dataclass(expected):
        return value if isinstance(value, dict) else _bad(path, "a mapping", value, problems)
    return value


def _bad(path: str, what: str, value: Any, problems: list[str]) -> Any:
    problems.append(f"{path}: expected {what}, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def parse_set(items: list[str]) -> list[tuple[str, Any]]:
    """`--set KEY=VALUE` items; VALUE is read as YAML (so 1e-3, true, [a, b] work)."""
    out = []
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. models.qwen3-4b.gradient_accumulation_steps=10")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    if problems:
        raise ConfigError(problems)
    return out


def read_yaml_file(path: str | Path, label: str, missing: str = "file not found"):
    """The YAML content of `path`; one ConfigError naming `label` and the file for a missing
    file or invalid YAML (experiment files, search spaces)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{label} {path}: {missing}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label} {path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label} {path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{label} {path}: cannot be read ({exc.strerror})") from None


def read_experiment_file(path: str | Path) -> dict:
    """Load an experiment YAML (`--config`); a clear error for a missing file or bad YAML."""
    data = read_yaml_file(path, "--config")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings at the top level")
    return data


def _preset_source(path: Path) -> str:
    try:
        return "preset:" + str(path.resolve().relative_to(PRESET_DIR.parent.parent.parent))
    except ValueError:
        return f"preset:{path}"


# --------------------------------------------------------------------------- resolution


class _Layers:
    """Flat values + sources for the globals and each model, filled layer by layer."""

    def __init__(self) -> None:
        self.globals: dict[str, Any] = _flatten(_global_dict(ExperimentConfig()))
        self.sources: dict[str, str] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.problems: list[str] = []

    def add_model(self, name: str) -> None:
        self.models[name] = _flatten(_model_dict(ModelSettings()))

    def set_global(self, key: str, value: Any, source: str) -> None:
        expected = _expected_type(ExperimentConfig, key)
        if expected is None or key == "models":
            self.problems.append(f"unknown setting {key!r} ({source})")
            return
        self.globals[key] = _coerce(value, expected, key, self.problems)
        self.sources[key] = source
        if key in SHARED_FIELDS and value is not None:
            for name in self.models:
                self.set_model(name, key, value, source)

    def set_model(self, name: str, key: str, value: Any, source: str) -> None:
        expected = _expected_type(ModelSettings, key)
        full = f"models.{name}.{key}"
        if expected is None or key == "name":
            self.problems.append(f"unknown model setting {full!r} ({source})")
            return
        flat = self.models[name]
        head = key.partition(".")[0]
        if isinstance(value, dict) and head in _NESTED and "." not in key:
            for sub, subvalue in value.items():
                self.set_model(name, f"{head}.{sub}", subvalue, source)
            return
        if head in _NESTED and "." in key and flat.get(head, "") is None:
            # Setting one field of a block that is null (e.g. lora.r on a full fine-tune):
            # the block comes into being with its defaults.
            del flat[head]
            for sub, subvalue in _flatten(asdict(_NESTED[head]())).items():
                flat[f"{head}.{sub}"] = subvalue
                self.sources[f"models.{name}.{head}.{sub}"] = DEFAULT
        if head in _NESTED and "." not in key and value is None:
            for sub in [k for k in flat if k.startswith(head + ".")]:
                del flat[sub]
                self.sources.pop(f"models.{name}.{sub}", None)
        if head in _FREE_MAPPINGS and "." not in key:
            for sub in [k for k in flat if k.startswith(head + ".")]:
                del flat[sub]
            if isinstance(value, dict):
                flat.pop(head, None)
                for sub, subvalue in value.items():
                    flat[f"{head}.{sub}"] = subvalue
                    self.sources[f"models.{name}.{head}.{sub}"] = source
                return
        flat[key] = _coerce(value, expected, full, self.problems)
        self.sources[full] = source

    def apply_mapping(self, data: dict, source: str, model_blocks: dict[str, dict]) -> None:
        """One layer: its global keys first, then its per-model blocks (more specific)."""
        for key, value in data.items():
            if key == "models":
                continue
            self.set_global(key, value, source)
        for name, block in model_blocks.items():
            if name not in self.models:
                continue
            for key, value in block.items():
                self.set_model(name, key, value, source)

    def build_models(self) -> dict[str, ModelSettings]:
        out = {}
        for name, flat in self.models.items():
            nested: dict = {}
            for key, value in flat.items():
                _put(nested, key, value)
            nested["name"] = name
            try:
                out[name] = model_settings_from_dict(nested)
            except TypeError as exc:
                self.problems.append(f"models.{name}: {exc}")
        return out


def _split_models(value: Any, source: str, problems: list[str]) -> tuple[list[str] | None, dict[str, dict]]:
    """`models` is a list of names or a mapping name -> per-model overrides (or null)."""
    if value is None:
        return None, {}
    if isinstance(value, str):
        return [value], {}
    if isinstance(value, list):
        return [str(v) for v in value], {}
    if isinstance(value, dict):
        blocks = {}
        for name, block in value.items():
            if block is not None and not isinstance(block, dict):
                problems.append(f"models.{name} ({source}): expected a mapping of settings")
                continue
            blocks[str(name)] = block or {}
        return list(blocks), blocks
    problems.append(f"models ({source}): expected a list of model names or a mapping")
    return None, {}


def _set_blocks(items: list[tuple[str, Any]], models: list[str], problems: list[str]) -> dict[str, dict]:
    """`--set models.<model>.<setting>=V` items by model; model names may contain dots
    (llama-3.2-korean-3b), so the longest listed model name that prefixes the key wins."""
    blocks: dict[str, dict] = {}
    for key, value in items:
        rest = key[len("models."):]
        known = [m for m in models if rest.startswith(m + ".")]
        name, sub = (max(known, key=len), rest[len(max(known, key=len)) + 1:]) if known else rest.partition(".")[::2]
        if not sub:
            problems.append(f"--set {key}: expected models.<model>.<setting>=VALUE")
            continue
        blocks.setdefault(name, {})[sub] = value
    return blocks


def resolve(
    cli: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
) -> ResolvedConfig:
    """Resolve defaults < presets < experiment file < command line into typed settings.

    `cli` holds only the flags the user actually gave (argparse with SUPPRESS);
    `overrides` are `--set KEY=VALUE` items (global keys or ``models.<name>.<key>``).
    Problems found here (unknown keys, wrong types, unknown models) are kept in
    `problems`; `raysum.config.validate.validate` raises them with its own, all at once.
    """
    cli = dict(cli or {})
    problems: list[str] = []
    exp_data: dict = {}
    exp_source = ""
    if config_file is not None:
        exp_data = read_experiment_file(config_file)
        exp_source = f"experiment:{config_file}"
    set_items = parse_set(overrides or [])

    cli_models, _ = _split_models(cli.pop("models", None), CLI, problems)
    exp_models, exp_blocks = _split_models(exp_data.get("models"), exp_source, problems)
    set_models: list[tuple[str, Any]] = []
    set_globals: dict[str, Any] = {}
    for key, value in set_items:
        if key.startswith("models."):
            set_models.append((key, value))
        else:
            set_globals[key] = value

    if cli_models is not None:
        names, models_source = cli_models, CLI
    elif exp_models is not None:
        names, models_source = exp_models, exp_source
    else:
        names, models_source = ExperimentConfig().models, DEFAULT

    layers = _Layers()
    layers.problems.extend(problems)
    layers.globals["models"] = names
    layers.sources["models"] = models_source
    files: dict[str, str] = {}
    keys: list[str] = []
    for raw in names:
        key = model_name(raw)
        try:
            path = preset_path(raw)
        except ConfigError as exc:
            layers.problems.extend(exc.problems)
            continue
        if key in layers.models:
            layers.problems.append(f"model {key!r} is listed twice")
            continue
        keys.append(key)
        layers.add_model(key)
        files[key] = str(path)
        try:
            preset = read_preset(raw)
        except ConfigError as exc:
            layers.problems.extend(exc.problems)
            continue
        source = _preset_source(path)
        for pkey, pvalue in preset.items():
            layers.set_model(key, pkey, pvalue, source)

    set_blocks = _set_blocks(set_models, keys, layers.problems)
    for name in list(exp_blocks) + list(set_blocks):
        if name not in layers.models and model_name(name) not in layers.models:
            where = exp_source if name in exp_blocks else "--set"
            layers.problems.append(
                f"settings for model {name!r} ({where}) but it is not among the models: {', '.join(keys) or 'none'}")
    layers.apply_mapping(exp_data, exp_source, exp_blocks)
    layers.apply_mapping({**cli, **set_globals}, CLI, set_blocks)

    if "output_dir" not in layers.sources and in_ray_job():
        # the default "outputs" would land in the job's temporary working directory
        layers.globals["output_dir"] = job_output_dir(layers.globals.get("storage_path"))
        layers.sources["output_dir"] = JOB_DEFAULT
    models = layers.build_models()
    globals_nested: dict = {}
    for key, value in layers.globals.items():
        _put(globals_nested, key, value)
    globals_nested["models"] = keys
    if "ensemble_strategy" not in layers.sources and isinstance(globals_nested.get("mode"), str):
        globals_nested["ensemble_strategy"] = default_ensemble_strategy(globals_nested["mode"])
    experiment = ExperimentConfig(**globals_nested)
    return ResolvedConfig(experiment=experiment, models=models, sources=layers.sources, files=files,
                          problems=layers.problems)



def config_from_tree(tree: dict) -> ResolvedConfig:
    """Rebuild a ResolvedConfig from `ResolvedConfig.tree()` (an experiment's config.json).
    ConfigError listing every way `tree` is not such a tree (a leaf that is not
    {value, source}, a setting this version does not know, no model), e.g. one of another
    version."""
    sources: dict[str, str] = {}
    values: dict = {}
    problems: list[str] = []

    def walk(node, prefix: str, out: dict) -> None:
        if not isinstance(node, dict):
            problems.append(f"{prefix.rstrip('.') or 'the top level'}: a mapping expected, found {_kind(node)}")
            return
        for key, item in node.items():
            if isinstance(item, dict) and set(item) == {"value", "source"}:
                out[key] = item["value"]
                sources[prefix + key] = item["source"]
            elif isinstance(item, dict):
                walk(item, prefix + key + ".", out.setdefault(key, {}))
            else:
                problems.append(f"{prefix}{key}: a {{value, source}} leaf expected, found {_kind(item)}")

    models_tree = tree.get("models", {}) if isinstance(tree, dict) else {}
    walk({k: v for k, v in tree.items() if k != "models"} if isinstance(tree, dict) else tree, "", values)
    if not isinstance(models_tree, dict) or not models_tree:
        problems.append(f"models: a mapping of model name -> settings expected, found {_kind(models_tree)}")
        models_tree = {}
    models = {}
    for name, node in models_tree.items():
        data: dict = {}
        walk(node, f"models.{name}.", data)
        data["name"] = name
        unknown = [f"models.{name}.{k}" for k in data if _expected_type(ModelSettings, k) is None]
        problems += [f"unknown model setting {k!r}" for k in unknown]
        try:
            models[name] = None if unknown else model_settings_from_dict(data)
        except TypeError as exc:  # a nested setting this version does not know
            problems.append(f"models.{name}: {exc}")
    unknown = [k for k in values if _expected_type(ExperimentConfig, k) is None]
    problems += [f"unknown setting {k!r}" for k in unknown]
    values["models"] = list(models)
    try:
        experiment = None if unknown else ExperimentConfig(**values)
    except TypeError as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError(problems)
    return ResolvedConfig(experiment=experiment, models=models, sources=sources)


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:60]
