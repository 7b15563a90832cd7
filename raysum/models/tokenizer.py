"""Tokenizers for the tiny presets: trained on the training texts, cached by content hash.

The tokenizer is a BPE over whitespace/punctuation pieces (SentencePiece-style "▁" marks
spaces, so decoding restores the text exactly). Speaker tags (`#Person1#`..) and the
competition's mask tags (`#PhoneNumber#`, ..) are *normal* added tokens: they are never
split, and, unlike special tokens, they stay in `decode(..., skip_special_tokens=True)`
because a summary has to name the speakers.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

SPEAKER_TAGS = tuple(f"#Person{i}#" for i in range(1, 8))
MASK_TAGS = (
    "#PhoneNumber#", "#Address#", "#DateOfBirth#", "#Email#",
    "#PassportNumber#", "#SSN#", "#CardNumber#", "#CarNumber#",
)
TAG_TOKENS = SPEAKER_TAGS + MASK_TAGS

BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
# BART's ids (bos 0, pad 1, eos 2), so tiny BART configs keep their usual special ids.
SPECIAL_TOKENS = (BOS, PAD, EOS, UNK)
CHAT_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")

# User/assistant turns; an assistant turn ends with eos, which is what training appends to
# the summary, so generation stops where training taught it to.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Bump when the construction below changes, so cached tokenizers are not reused.
_BUILD_VERSION = "bpe-metaspace-v1"
_TAG_PATTERN = re.compile("|".join(re.escape(t) for t in TAG_TOKENS))


def tokenizer_fingerprint(texts: Iterable[str], vocab_size: int) -> str:
    """Content hash of the training texts, the vocabulary size and the construction."""
    digest = hashlib.sha256(f"{_BUILD_VERSION}\x1f{vocab_size}".encode())
    for text in texts:
        digest.update(b"\x1e")
        digest.update(text.encode("utf-8"))
    return digest.hexdigest()[:20]


def train_tokenizer(texts: list[str], vocab_size: int, cache_dir: str | os.PathLike | None = None,
                    model_max_length: int = 1024):
    """A `PreTrainedTokenizerFast` trained on `texts` with `vocab_size` entries in total.

    With `cache_dir`, the tokenizer is saved under `cache_dir/tokenizer-<hash>` and
    reused by every unit whose training texts are identical (units of one fold).
    """
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if t]
    if not texts:
        from raysum.errors import RaysumError
        raise RaysumError("cannot train a tokenizer without training texts")
    key = tokenizer_fingerprint(texts, vocab_size)
    target = Path(cache_dir) / f"tokenizer-{key}" if cache_dir is not None else None
    if target is not None and (target / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(target))

    tokenizer = _wrap(_train_backend(texts, vocab_size), model_max_length)
    if target is not None:
        _save_atomically(tokenizer, target)
    return tokenizer


def _train_backend(texts: list[str], vocab_size: int):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never"),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    reserved = len(SPECIAL_TOKENS) + len(CHAT_MARKERS) + len(TAG_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - len(TAG_TOKENS), reserved + 1),
        special_tokens=list(SPECIAL_TOKENS + CHAT_MARKERS),
        min_frequency=2,
        show_progress=False,
    )
    # Tags are whole tokens; keep their letters out of the merges.
    backend.train_from_iterator((_TAG_PATTERN.sub(" ", t) for t in texts), trainer=trainer)
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    bos, eos = backend.token_to_id(BOS), backend.token_to_id(EOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}",
        special_tokens=[(BOS, bos), (EOS, eos)],
    )
    return backend


def _wrap(backend, model_max_length: int):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        extra_special_tokens=list(CHAT_MARKERS),
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _save_atomically(tokenizer, target: Path) -> None:
    """Units of one fold may train the same tokenizer at once: write aside, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer.save_pretrained(str(staging))
        os.replace(staging, target)
    except OSError:
        if not (target / "tokenizer.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
