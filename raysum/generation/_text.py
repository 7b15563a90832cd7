"""Token ids in and out of the engine: the eos ids generation stops at, the tokens a
summary keeps, where a generated row ends, and its text."""

from __future__ import annotations


def eos_ids(model, tokenizer) -> list[int]:
    """The model's generation eos ids (a list for chat models) plus the tokenizer's eos."""
    from raysum.models import generation_eos_ids

    return generation_eos_ids(model.generation_config, tokenizer)


def strip_ids(tokenizer) -> set[int]:
    """Special tokens (bos/eos/pad, chat-template markers) minus the `#...#` tags, which a
    checkpoint may have registered as special but which belong in the summary."""
    special = set(tokenizer.all_special_ids)
    for token, token_id in tokenizer.get_added_vocab().items():
        if token.startswith("#") and token.endswith("#") and len(token) > 2:
            special.discard(token_id)
    return special


def until_eos(new, eos: list[int]):
    """1 for every generated token up to and including the first eos, 0 after it."""
    import torch

    is_eos = torch.isin(new, torch.tensor(eos, device=new.device))
    ended_before = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return (~ended_before).long()


def decode(tokenizer, rows: list[list[int]], strip: set[int]) -> list[str]:
    """The text of each row of generated ids, without the stripped special tokens."""
    kept = [[t for t in ids if t not in strip] for ids in rows]
    texts = tokenizer.batch_decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [text.strip() for text in texts]
