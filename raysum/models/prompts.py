"""How a dialogue (and its summary) becomes token ids, the one contract between training
and generation: both call these functions, so what the model sees at generation is
exactly what it was trained on.

seq2seq: source = [bos] dialogue [eos], labels = [bos] summary [eos] (BART's layout;
         bos only when the tokenizer has one).
causal:  the chat template renders the prompt strategy's template (with `{dialogue}`) as
         the user message and opens the assistant turn; the summary plus eos follows.
         Labels are -100 over the prompt, so only the summary is learned.

Prompt strategies (`prompt_strategy`, causal models): `zero_shot` renders
`settings.prompt_template`; `instruction_ko` a longer Korean instruction
(:data:`INSTRUCTION_KO`: what to keep, how long, tags verbatim); `few_shot` puts up to
`few_shot_k` examples (dialogue and summary, picked from the unit's training part by
:class:`raysum.models.shots.ShotPool`) before `settings.prompt_template`. The examples
share the source budget: the dialogue keeps its `max_source_length` tokens, the examples,
most similar first, fill what is left (one that does not fit is skipped, none is cut).
"""

from __future__ import annotations

from raysum.errors import RaysumError

IGNORE_INDEX = -100
INSTRUCTION_KO = (
    "당신은 한국어 대화 요약 전문가입니다. 아래 대화를 읽고 누가 무엇을 했는지, 무엇을 하기로 했는지 핵심만 "
    "한두 문장으로 요약하세요. 화자 태그(#Person1# 등)와 마스킹 태그(#PhoneNumber# 등)는 대화에 나온 그대로 "
    "쓰세요.\n\n대화:\n{dialogue}\n\n요약:")
EXAMPLES_INTRO = "다음은 대화와 그 요약의 예시입니다.\n\n"
EXAMPLE = "대화:\n{dialogue}\n요약: {summary}\n\n"
# The model settings the functions below read: with the tokenizer, all that shapes an encoding
# (few-shot prompts also depend on the unit's training part: they are not cached).
ENCODING_SETTINGS = ("kind", "max_source_length", "max_target_length", "prompt_template", "prompt_strategy")
_SLOT = "\ue000DIALOGUE\ue000"  # a private-use marker no template or dialogue contains
_EXAMPLES_SLOT = "\ue000EXAMPLES\ue000"
# Llama 3.x templates print today's date unless given one; a fixed date keeps the
# prompt identical between training and generation on different days.
_TEMPLATE_KWARGS = {"date_string": "01 Jan 2025"}


def prompt_template(settings) -> str:
    """The user message a causal model's prompt strategy renders (with `{dialogue}`)."""
    return INSTRUCTION_KO if getattr(settings, "prompt_strategy", "zero_shot") == "instruction_ko" \
        else settings.prompt_template


def prompt_texts(settings) -> list[str]:
    """The words a causal model's prompts add to its dialogues (for a tokenizer trained here)."""
    texts = [prompt_template(settings).replace("{dialogue}", " ")]
    if getattr(settings, "prompt_strategy", "zero_shot") == "few_shot":
        texts += [EXAMPLES_INTRO, EXAMPLE.format(dialogue=" ", summary=" ")]
    return texts


def encode_sources(tokenizer, settings, dialogues: list[str],
                   shots: list[list[tuple[str, str]]] | None = None) -> list[list[int]]:
    """Model inputs for generation: seq2seq encoder ids, or the causal prompt ids. ``shots``:
    per dialogue its few-shot examples (dialogue, summary), for `prompt_strategy: few_shot`."""
    dialogues = [d.strip() for d in dialogues]
    if settings.kind == "causal":
        body = _token_ids(tokenizer, dialogues, settings.max_source_length)
        if getattr(settings, "prompt_strategy", "zero_shot") == "few_shot":
            if shots is None or len(shots) != len(dialogues):
                raise RaysumError("few-shot prompts need each dialogue's examples (from the unit's training part)")
            head, middle, tail = _few_shot_ids(tokenizer, settings)
            return [head + _examples_ids(tokenizer, examples, settings.max_source_length - len(ids)) + middle + ids
                    + tail for ids, examples in zip(body, shots)]
        prefix, suffix = _prompt_ids(tokenizer, settings)
        return [prefix + ids + suffix for ids in body]
    return _with_bos_eos(tokenizer, _token_ids(tokenizer, dialogues, settings.max_source_length - 2))


def encode_targets(tokenizer, settings, summaries: list[str]) -> list[list[int]]:
    """Label ids of the summaries, ending in eos."""
    summaries = [s.strip() for s in summaries]
    if settings.kind == "causal":
        eos = _eos_id(tokenizer)
        return [ids + [eos] for ids in _token_ids(tokenizer, summaries, settings.max_target_length)]
    return _with_bos_eos(tokenizer, _token_ids(tokenizer, summaries, settings.max_target_length - 2))


def encode_examples(tokenizer, settings, dialogues: list[str], summaries: list[str],
                    shots: list[list[tuple[str, str]]] | None = None) -> list[dict]:
    """Training examples: `input_ids` and `labels` (prompt masked for causal LMs)."""
    sources = encode_sources(tokenizer, settings, dialogues, shots)
    targets = encode_targets(tokenizer, settings, summaries)
    if settings.kind == "causal":
        return [{"input_ids": s + t, "labels": [IGNORE_INDEX] * len(s) + t} for s, t in zip(sources, targets)]
    return [{"input_ids": s, "attention_mask": [1] * len(s), "labels": t} for s, t in zip(sources, targets)]


def chat_prompt_parts(tokenizer, settings) -> tuple[str, str]:
    """The rendered chat prompt before and after the dialogue."""
    return tuple(_rendered_parts(tokenizer, settings, prompt_template(settings)))


def _rendered_parts(tokenizer, settings, template: str, with_examples: bool = False) -> list[str]:
    """The rendered chat prompt cut at its slots: (before, after) the dialogue, or (before
    the examples, between examples and dialogue, after) ``with_examples``."""
    if "{dialogue}" not in template:
        raise RaysumError("prompt_template must contain {dialogue}")
    if not getattr(tokenizer, "chat_template", None):
        raise RaysumError(f"the tokenizer of {settings.name or settings.checkpoint!r} has no chat template")
    content = (_EXAMPLES_SLOT if with_examples else "") + template.replace("{dialogue}", _SLOT)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True, **_TEMPLATE_KWARGS)
    if rendered.count(_SLOT) != 1 or rendered.count(_EXAMPLES_SLOT) != int(with_examples):
        raise RaysumError("the chat template does not reproduce the user message verbatim")
    head, _, rest = rendered.partition(_EXAMPLES_SLOT) if with_examples else ("", "", rendered)
    middle, suffix = rest.split(_SLOT)
    return [head, middle, suffix] if with_examples else [middle, suffix]


def _few_shot_ids(tokenizer, settings) -> tuple[list[int], list[int], list[int]]:
    pieces = tokenizer(_rendered_parts(tokenizer, settings, settings.prompt_template, with_examples=True),
                       add_special_tokens=False)["input_ids"]
    return list(pieces[0]), list(pieces[1]), list(pieces[2])


def _examples_ids(tokenizer, examples: list[tuple[str, str]], budget: int) -> list[int]:
    """The examples block (intro, then examples in order) within ``budget`` tokens: an
    example that does not fit is skipped; no example fits, no block."""
    if not examples or budget <= 0:
        return []
    texts = [EXAMPLES_INTRO] + [EXAMPLE.format(dialogue=d, summary=s) for d, s in examples]
    intro, *rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    block, used = list(intro), len(intro)
    for ids in rows:
        if used + len(ids) <= budget:
            block += ids
            used += len(ids)
    return block if used > len(intro) else []


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
