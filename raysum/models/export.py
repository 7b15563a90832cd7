"""A trained unit's checkpoint as a plain Hugging Face model folder.

Merged (the default): the weights with any LoRA adapter merged in, saved as safetensors
in the dtype of the base checkpoint, with the tokenizer and a ``generation_config.json``
holding the unit's decoding, so ``AutoModelFor{Seq2SeqLM,CausalLM}.from_pretrained`` and
``generate`` need nothing from raysum. Adapter only: the LoRA adapter (peft's
``adapter_config.json`` + ``adapter_model.safetensors``) and the tokenizer, for
``PeftModel.from_pretrained`` on the base checkpoint.

``raysum_export.json`` beside them says how raysum built a model's input ids from a
dialogue (the one part ``generate`` cannot know): for seq2seq models
``[bos] + ids(dialogue) + [eos]``; for causal models the chat prompt rendered around the
dialogue, ``ids(prompt_prefix) + ids(dialogue) + ids(prompt_suffix)``, each piece
tokenized without special tokens and the dialogue cut to its token budget.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from raysum.errors import ConfigError
from raysum.models.loading import load_trained_model
from raysum.models.prompts import chat_prompt_parts, generation_eos_ids
from raysum.storage import write_text_atomic

EXPORT_INFO = "raysum_export.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# Decoding keys in generate's terms; temperature and top_p only where the setting samples.
_SAMPLING_KEYS = ("temperature", "top_p")


def check_exportable(checkpoint_dir: str | Path, adapter_only: bool) -> None:
    """An adapter is asked of a checkpoint that holds one."""
    if adapter_only and not all((Path(checkpoint_dir) / name).is_file() for name in ADAPTER_FILES):
        raise ConfigError(
            f"{checkpoint_dir} holds full weights, not a LoRA adapter (a full fine-tune, or a tiny preset, "
            "whose LoRA is merged when it is saved): export it without --adapter_only")


def export_model(settings, checkpoint_dir: str | Path, staging: Path, *, decoding: dict, info: dict,
                 adapter_only: bool = False) -> list[str]:
    """Write the unit's model folder into the empty folder ``staging``; returns notes for the
    user (what differs from the weights the unit generated with)."""
    checkpoint_dir = Path(checkpoint_dir)
    notes = []
    check_exportable(checkpoint_dir, adapter_only)
    if adapter_only:
        for name in ADAPTER_FILES:
            shutil.copy2(checkpoint_dir / name, staging / name)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir), trust_remote_code=settings.trust_remote_code)
        generation_config = _generation_config(_base_generation_config(settings), tokenizer, decoding)
    else:
        model, tokenizer = _merged(settings, checkpoint_dir, notes)
        generation_config = _generation_config(model.generation_config, tokenizer, decoding)
        model.generation_config = generation_config
        model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    generation_config.save_pretrained(str(staging))
    record = {**info, "weights": "adapter" if adapter_only else "merged", "kind": settings.kind,
              "base_checkpoint": settings.checkpoint if adapter_only else None,
              "input": input_recipe(tokenizer, settings), "decoding": decoding, "notes": notes}
    write_text_atomic(staging / EXPORT_INFO, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return notes


def input_recipe(tokenizer, settings) -> dict:
    """How raysum turns a dialogue into the model's input ids (what training saw)."""
    if settings.kind == "causal":
        prefix, suffix = chat_prompt_parts(tokenizer, settings)
        return {"prompt_prefix": prefix, "prompt_suffix": suffix, "max_dialogue_tokens": settings.max_source_length,
                "padding_side": "left",
                "ids": "ids(prompt_prefix) + ids(dialogue.strip(), cut to max_dialogue_tokens) + ids(prompt_suffix), "
                       "each tokenized with add_special_tokens=False"}
    bos = tokenizer.bos_token_id is not None
    return {"max_dialogue_tokens": settings.max_source_length - 2, "bos": bos,
            "ids": ("[bos] + " if bos else "") + "ids(dialogue.strip(), add_special_tokens=False, "
                                                 "cut to max_dialogue_tokens) + [eos]"}


def _merged(settings, checkpoint_dir: Path, notes: list[str]):
    """The unit's model with its adapter merged, in the base checkpoint's dtype, on CPU."""
    import torch

    if settings.quantization is not None:
        notes.append(f"the unit trained and generated on {settings.quantization} 4-bit base weights; the adapter is "
                     "merged into the unquantized base, so summaries can differ slightly from the unit's")
        settings = dataclasses.replace(settings, quantization=None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_trained_model(settings, checkpoint_dir, device=device)
    if settings.lora is not None and not settings.from_config:
        dtype = _saved_dtype(settings.checkpoint)
        if dtype is not None and dtype != model.dtype:
            model.to(dtype)
    return model.to("cpu"), tokenizer


def _saved_dtype(checkpoint: str):
    """The dtype a base checkpoint's config records (None: not recorded)."""
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else None


def _base_generation_config(settings):
    """The base checkpoint's generation settings (a chat model's end-of-turn ids)."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(settings.checkpoint)
    except OSError:  # a checkpoint without generation_config.json: its model config's values
        from transformers import AutoConfig

        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(settings.checkpoint))


def _generation_config(base, tokenizer, decoding: dict):
    """generate's settings for the unit's decoding, on top of the model's own (e.g. a
    seq2seq model's decoder start token)."""
    from transformers import GenerationConfig

    config = GenerationConfig.from_dict(base.to_dict())
    eos_token_ids = generation_eos_ids(base, tokenizer)
    sampling = bool(decoding.get("do_sample"))
    values = {
        "num_beams": decoding["num_beams"], "max_new_tokens": decoding["max_length"],
        "length_penalty": decoding["length_penalty"], "no_repeat_ngram_size": decoding["no_repeat_ngram_size"],
        "do_sample": sampling, "early_stopping": True if decoding["num_beams"] > 1 else False,
        "eos_token_id": eos_token_ids if len(eos_token_ids) > 1 else eos_token_ids[0],
        "pad_token_id": tokenizer.pad_token_id,
    }
    values.update({key: decoding[key] if sampling else None for key in _SAMPLING_KEYS})
    for key, value in values.items():
        setattr(config, key, value)
    return config
