"""The model registry: every YAML file in `presets/` is a model, and more can be registered."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import yaml

from raysum.config.schema import ModelSettings, model_settings_from_dict
from raysum.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "presets"

_REGISTRY: dict[str, Path] = {}


def register_model(name: str, preset: str | Path) -> None:
    """Make `name` usable in `--models`; `preset` is a YAML file of ModelSettings fields."""
    _REGISTRY[name] = Path(preset)


for _path in sorted(PRESET_DIR.glob("*.yaml")):
    register_model(_path.stem, _path)


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def preset_path(name: str) -> Path:
    """The preset file of a registered name, or `name` itself when it is a YAML path."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_models())} (or a preset YAML path)")


def model_name(name: str) -> str:
    """The key a model is known by in the config: the registry name, or a YAML path's stem."""
    return name if name in _REGISTRY else Path(name).stem


def read_preset(name: str) -> dict:
    """The raw mapping of a preset file (only the keys it sets)."""
    path = preset_path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path}: expected a mapping of settings")
    return data


def load_preset(name: str) -> ModelSettings:
    """Defaults overlaid with the preset file, as typed settings (no experiment/CLI overrides)."""
    data = asdict(ModelSettings())
    data.update(read_preset(name))
    data["name"] = model_name(name)
    return model_settings_from_dict(data)
