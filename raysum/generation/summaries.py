"""Generate summaries for many dialogues at once.

Dialogues are encoded exactly as in training (`raysum.models.prompts`), sorted by length
(longest first, so memory problems show at once) and generated in batches of
`settings.generation_batch_size` with beam search; causal LMs are left-padded and only
their new tokens are decoded.

`logprob` is the mean log-probability of the generated tokens (the summary and its eos)
under the model, from one teacher-forced forward pass over the chosen sequences.
`generate(output_scores=True)` would give the same numbers for greedy search, but it keeps
batch × beams × vocabulary floats for every step (31 GB for Qwen3-4B at 128 × 4 beams ×
100 tokens); the extra forward pass costs about one prefill. The scores are the raw model
distribution: no length penalty and no n-gram blocking. `n_tokens` counts the same tokens
(eos included when the summary ended before `max_length`).
"""

from __future__ import annotations

import inspect

from raysum.models.prompts import encode_sources

_LOGIT_BUDGET = 1 << 27  # floats of logits scored at once (512 MiB in fp32)


def generate_summaries(model, tokenizer, settings, dialogues: list[str]) -> list[dict]:
    """One `{"text", "n_tokens", "logprob"}` per dialogue, in input order."""
    import torch

    if not dialogues:
        return []
    causal = settings.kind == "causal"
    if causal:
        tokenizer.padding_side = "left"
    sources = encode_sources(tokenizer, settings, dialogues)
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    eos_ids = _eos_ids(model, tokenizer)
    strip = _strip_ids(tokenizer)
    device = next(model.parameters()).device
    results: list[dict | None] = [None] * len(sources)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), settings.generation_batch_size):
            index = order[start:start + settings.generation_batch_size]
            batch = tokenizer.pad({"input_ids": [sources[i] for i in index]}, padding=True,
                                  pad_to_multiple_of=8 if device.type == "cuda" else None, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            sequences = model.generate(**batch, **_generate_kwargs(settings, tokenizer, eos_ids))
            new = sequences[:, batch["input_ids"].shape[1]:] if causal else sequences[:, 1:]
            mask = _until_eos(new, eos_ids)
            logprobs = _score(model, batch, sequences, new, mask, causal)
            texts = _decode(tokenizer, new, mask, strip)
            counts = mask.sum(dim=1).tolist()
            for j, i in enumerate(index):
                results[i] = {"text": texts[j], "n_tokens": int(counts[j]), "logprob": float(logprobs[j])}
    model.train(was_training)
    return results


def _generate_kwargs(settings, tokenizer, eos_ids: list[int]) -> dict:
    beams = settings.num_beams
    return dict(
        do_sample=False, num_beams=beams, max_new_tokens=settings.max_length,
        # length_penalty only acts on beam scores; greedy search would warn about it.
        length_penalty=settings.length_penalty if beams > 1 else None, early_stopping=True if beams > 1 else None,
        no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
        # instruct checkpoints ship sampling defaults; beam search ignores them, say so.
        temperature=None, top_p=None, top_k=None,
        eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id, use_cache=True,
    )


def _eos_ids(model, tokenizer) -> list[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _strip_ids(tokenizer) -> set[int]:
    """Special tokens (bos/eos/pad, chat-template markers) minus the `#...#` tags, which a
    checkpoint may have registered as special but which belong in the summary."""
    special = set(tokenizer.all_special_ids)
    for token, token_id in tokenizer.get_added_vocab().items():
        if token.startswith("#") and token.endswith("#") and len(token) > 2:
            special.discard(token_id)
    return special


def _until_eos(new, eos_ids: list[int]):
    """1 for every generated token up to and including the first eos, 0 after it."""
    import torch

    is_eos = torch.isin(new, torch.tensor(eos_ids, device=new.device))
    ended_before = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return (~ended_before).long()


def _score(model, batch: dict, sequences, new, mask, causal: bool):
    """Mean log-prob of the masked new tokens, in row chunks to bound the logits' memory."""
    import torch

    vocab = model.get_output_embeddings().weight.shape[0]
    rows = max(1, _LOGIT_BUDGET // max(1, new.shape[1] * vocab))
    means = []
    for start in range(0, sequences.shape[0], rows):
        part = slice(start, start + rows)
        if causal:
            logits = _causal_logits(model, batch["attention_mask"][part], sequences[part], mask[part])
        else:
            logits = model(input_ids=batch["input_ids"][part], attention_mask=batch["attention_mask"][part],
                           decoder_input_ids=sequences[part, :-1]).logits
        token_logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, new[part].unsqueeze(-1)).squeeze(-1)
        weights = mask[part].float()
        means.append((token_logprobs * weights).sum(1) / weights.sum(1).clamp(min=1))
    return torch.cat(means).tolist()


def _causal_logits(model, prompt_mask, sequences, new_mask):
    """Logits predicting each new token, with the position ids `generate` used (left padding)."""
    import torch

    attention_mask = torch.cat([prompt_mask, new_mask.to(prompt_mask.dtype)], dim=1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    n_new = new_mask.shape[1]
    kwargs = {"logits_to_keep": n_new + 1} if _accepts(model, "logits_to_keep") else {}
    logits = model(input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=False, **kwargs).logits
    return logits[:, -(n_new + 1):-1]


def _accepts(model, argument: str) -> bool:
    parameters = inspect.signature(model.forward).parameters
    return argument in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _decode(tokenizer, new, mask, strip: set[int]) -> list[str]:
    rows = [[t for t, keep in zip(ids, kept) if keep and t not in strip]
            for ids, kept in zip(new.tolist(), mask.tolist())]
    texts = tokenizer.batch_decode(rows, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [text.strip() for text in texts]
