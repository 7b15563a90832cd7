"""Configuration: typed schema, model presets, and layered resolution with provenance."""

from raysum.config.presets import available_models, load_preset, register_model
from raysum.config.schema import ExperimentConfig, LoraSettings, ModelSettings, ResourceSettings, model_settings_from_dict

__all__ = [
    "ExperimentConfig", "LoraSettings", "ModelSettings", "ResourceSettings",
    "available_models", "load_preset", "model_settings_from_dict", "register_model",
]
