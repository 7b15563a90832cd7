"""Which transformers classes a preset uses: by `kind` for checkpoints, by `architecture`
for tiny presets built from a config. Registries, looked up lazily, like peft's
`PEFT_TYPE_TO_CONFIG_MAPPING`; adding a family is one `register_architecture` call."""

from __future__ import annotations

from dataclasses import dataclass

from raysum.errors import ConfigError
from raysum.registry import Registry

KINDS = ("seq2seq", "causal")

# kind -> the Auto class that loads any checkpoint of that kind.
_AUTO_CLASSES = {"seq2seq": "AutoModelForSeq2SeqLM", "causal": "AutoModelForCausalLM"}


@dataclass(frozen=True)
class Architecture:
    """A model family a tiny preset can build from `from_config: {architecture: name, ...}`."""

    name: str
    kind: str
    config_class: str
    model_class: str

    def build_config(self, **kwargs):
        return _transformers_attr(self.config_class)(**kwargs)

    def build_model(self, config):
        return _transformers_attr(self.model_class)(config)


ARCHITECTURES = Registry("architecture")


def register_architecture(name: str, kind: str, config_class: str, model_class: str) -> None:
    """Make `from_config: {architecture: name}` build `transformers.<model_class>`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    ARCHITECTURES.register(name, Architecture(name, kind, config_class, model_class))


register_architecture("bart", "seq2seq", "BartConfig", "BartForConditionalGeneration")
register_architecture("llama", "causal", "LlamaConfig", "LlamaForCausalLM")
register_architecture("qwen3", "causal", "Qwen3Config", "Qwen3ForCausalLM")


def available_architectures() -> list[str]:
    return sorted(ARCHITECTURES)


def architecture_problems(settings) -> list[str]:
    """A tiny preset's `from_config.architecture` that is not registered."""
    if settings.from_config is not None and settings.from_config.get("architecture") not in ARCHITECTURES:
        return [f"from_config.architecture must be one of {', '.join(ARCHITECTURES)}"]
    return []


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {name!r} in from_config; available: {', '.join(available_architectures())}"
        ) from None


def auto_model_class(kind: str):
    """`AutoModelForSeq2SeqLM` or `AutoModelForCausalLM`."""
    return _transformers_attr(_AUTO_CLASSES[kind])


def _transformers_attr(name: str):
    import transformers

    return getattr(transformers, name)
