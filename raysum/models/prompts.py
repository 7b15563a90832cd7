"""How a dialogue (and its summary) becomes token ids, the one contract between training
and generation: both call these functions, so what the model sees at generation is
exactly what it was trained on.

seq2seq: source = [bos] dialogue [eos], labels = [bos] summary [eos] (BART's layout;
         bos only when the tokenizer has one).
causal:  the chat template renders `settings.prompt_template` (with `{dialogue}`) as the
         user message and opens the assistant turn; the summary plus eos follows.
         Labels are -100 over the prompt, so only the summary is learned.
"""

from __future__ import annotations

from raysum.errors import RaysumError

IGNORE_INDEX = -100
# The model settings the functions below read: with the tokenizer, all that shapes an encoding.
ENCODING_SETTINGS = ("kind", "max_source_length", "max_target_length", "prompt_template")
_SLOT = "\ue000DIALOGUE\ue000"  # a private-use marker no template or dialogue contains
# Llama 3.x templates print today's date unless given one; a fixed date keeps the
# prompt identical between training and generation on different days.
_TEMPLATE_KWARGS = {"date_string": "01 Jan 2025"}


def encode_sources(tokenizer, settings, dialogues: list[str]) -> list[list[int]]:
    """Model inputs for generation: seq2seq encoder ids, or the causal prompt ids."""
    dialogues = [d.strip() for d in dialogues]
    if settings.kind == "causal":
        prefix, suffix = _prompt_ids(tokenizer, settings)
        body = _token_ids(tokenizer, dialogues, settings.max_source_length)
        return [prefix + ids + suffix for ids in body]
    return _with_bos_eos(tokenizer, _token_ids(tokenizer, dialogues, settings.max_source_length - 2))


def encode_targets(tokenizer, settings, summaries: list[str]) -> list[list[int]]:
    """Label ids of the summaries, ending in eos."""
    summaries = [s.strip() for s in summaries]
    if settings.kind == "causal":
        eos = _eos_id(tokenizer)
        return [ids + [eos] for ids in _token_ids(tokenizer, summaries, settings.max_target_length)]
    return _with_bos_eos(tokenizer, _token_ids(tokenizer, summaries, settings.max_target_length - 2))


def encode_examples(tokenizer, settings, dialogues: list[str], summaries: list[str]) -> list[dict]:
    """Training examples: `input_ids` and `labels` (prompt masked for causal LMs)."""
    sources = encode_sources(tokenizer, settings, dialogues)
    targets = encode_targets(tokenizer, settings, summaries)
    if settings.kind == "causal":
        return [{"input_ids": s + t, "labels": [IGNORE_INDEX] * len(s) + t} for s, t in zip(sources, targets)]
    return [{"input_ids": s, "attention_mask": [1] * len(s), "labels": t} for s, t in zip(sources, targets)]


def chat_prompt_parts(tokenizer, settings) -> tuple[str, str]:
    """The rendered chat prompt before and after the dialogue."""
    if "{dialogue}" not in settings.prompt_template:
        raise RaysumError("prompt_template must contain {dialogue}")
    if not getattr(tokenizer, "chat_template", None):
        raise RaysumError(f"the tokenizer of {settings.name or settings.checkpoint!r} has no chat template")
    content = settings.prompt_template.replace("{dialogue}", _SLOT)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True, **_TEMPLATE_KWARGS)
    if rendered.count(_SLOT) != 1:
        raise RaysumError("the chat template does not reproduce the user message verbatim")
    prefix, suffix = rendered.split(_SLOT)
    return prefix, suffix


def _prompt_ids(tokenizer, settings) -> tuple[list[int], list[int]]:
    prefix, suffix = chat_prompt_parts(tokenizer, settings)
    pieces = tokenizer([prefix, suffix], add_special_tokens=False)["input_ids"]
    return list(pieces[0]), list(pieces[1])


def _token_ids(tokenizer, texts: list[str], max_tokens: int) -> list[list[int]]:
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max(1, max_tokens))
    return [list(ids) for ids in encoded["input_ids"]]


def _with_bos_eos(tokenizer, rows: list[list[int]]) -> list[list[int]]:
    head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = _eos_id(tokenizer)
    return [head + ids + [eos] for ids in rows]


def generation_eos_ids(generation_config, tokenizer) -> list[int]:
    """The ids generation stops at: the model's generation eos ids (a list for chat models)
    plus the tokenizer's eos."""
    configured = getattr(generation_config, "eos_token_id", None)
    ids = list(configured) if isinstance(configured, list) else [configured] if configured is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise RaysumError("the tokenizer has no eos token; summaries need one to end")
    return tokenizer.eos_token_id
