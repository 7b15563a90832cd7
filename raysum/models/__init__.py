"""Models: architecture registry, loading (checkpoints and tiny presets), tokenizers
trained for tiny presets, and the prompt/encoding contract shared by training and
generation."""

from raysum.models.architectures import (
    ARCHITECTURES, KINDS, architecture_problems, auto_model_class, available_architectures, get_architecture, register_architecture,
)
from raysum.models.loading import (
    apply_lora, check_weights_available, count_parameters, load_model_and_tokenizer, load_trained_model,
    resolve_device, resolve_precision, shape_only_model, torch_dtype,
)
from raysum.models.export import export_model
from raysum.models.prompts import (
    ENCODING_SETTINGS, IGNORE_INDEX, chat_prompt_parts, encode_examples, encode_sources, encode_targets,
    generation_eos_ids,
)
from raysum.models.tokenizer import CHAT_MARKERS, MASK_TAGS, SPEAKER_TAGS, TAG_TOKENS, train_tokenizer

__all__ = [
    "ARCHITECTURES", "architecture_problems", "CHAT_MARKERS", "ENCODING_SETTINGS", "IGNORE_INDEX", "KINDS", "MASK_TAGS", "SPEAKER_TAGS", "TAG_TOKENS",
    "apply_lora", "auto_model_class", "available_architectures", "chat_prompt_parts", "check_weights_available",
    "count_parameters", "encode_examples", "encode_sources", "encode_targets", "export_model",
    "generation_eos_ids", "get_architecture",
    "load_model_and_tokenizer", "load_trained_model", "register_architecture", "resolve_device",
    "resolve_precision", "shape_only_model", "torch_dtype", "train_tokenizer",
]
