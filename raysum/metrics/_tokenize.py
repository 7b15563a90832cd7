"""Korean tokenizers for ROUGE: kiwi morphemes (default) and plain whitespace.

Korean is agglutinative: "사람이" and "사람은" share the noun but not the eojeol, so
whitespace tokens undercount real overlap, and rouge-score's default tokenizer keeps
only ``[a-z0-9]`` and drops Hangul altogether. Kiwi morphemes fix both.

Speaker tags and the competition's masks (``#Person1#``, ``#PhoneNumber#``, ...) are
handed to Kiwi as pre-tokenized spans, so each stays one token and Kiwi still analyses
the particle glued to it ("#Person1#는" -> "#Person1#", "는").
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import threading
from collections.abc import Iterable

TOKENIZERS = ("kiwi", "whitespace")

# Any "#Word#" with a letter first: #Person1#..#Person7#, #PhoneNumber#, #Address#, ...
TAG_PATTERN = re.compile(r"#[A-Za-z][A-Za-z0-9]*#")

# Tokenized texts kept per process; oldest entries go first once this is exceeded.
CACHE_SIZE = 200_000

_cache: dict[str, tuple[str, ...]] = {}
_kiwi_lock = threading.Lock()
_kiwi_instance = None
_kiwi_threads: int | None = None  # None: Kiwi's own choice, one thread per core


def set_kiwi_threads(threads: int | None) -> None:
    """Kiwi's analysis threads in this process from now on (a task holding N CPUs of a
    larger node uses N, not every core); a Kiwi built with another count is rebuilt on use."""
    global _kiwi_instance, _kiwi_threads
    with _kiwi_lock:
        if threads != _kiwi_threads:
            _kiwi_threads, _kiwi_instance = threads, None


def check_tokenizer(tokenizer: str) -> str:
    """Return ``tokenizer`` if raysum knows it, else raise ValueError naming the choices."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")
    return tokenizer


def _kiwi():
    """The process's Kiwi, built on first use (about 2-3 s) and reused."""
    global _kiwi_instance
    if _kiwi_instance is None:
        with _kiwi_lock:
            if _kiwi_instance is None:
                from kiwipiepy import Kiwi

                kiwi = Kiwi(num_workers=_kiwi_threads)
                kiwi.tokenize("")  # Kiwi defers loading its model to the first call
                _kiwi_instance = kiwi
    return _kiwi_instance


def _drop_kiwi_in_child() -> None:
    # A forked child inherits the parent's Kiwi but not its worker threads: batch calls
    # on it never return, and destroying it (also at interpreter exit) waits on those
    # threads forever. So the child pins it alive for good and builds its own on use.
    global _kiwi_instance, _kiwi_lock
    if _kiwi_instance is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_kiwi_instance))
        _kiwi_instance = None
    _kiwi_lock = threading.Lock()


os.register_at_fork(after_in_child=_drop_kiwi_in_child)


def _tag_spans(text: str) -> list[tuple[int, int, str]]:
    # Kiwi's own hashtag rule would swallow what follows ("#PhoneNumber#입니다"), so the
    # tags go in as proper-noun spans that Kiwi must keep whole.
    return [(m.start(), m.end(), "NNP") for m in TAG_PATTERN.finditer(text)]


def _analyze(texts: list[str]) -> list[tuple[str, ...]]:
    """Kiwi morphemes of every text, in one batched call."""
    results = _kiwi().tokenize(texts, pretokenized=_tag_spans)
    return [tuple(token.form for token in tokens) for tokens in results]


def _check_texts(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single str")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be str, got {type(text).__name__}")
    return texts


def _remember(texts: list[str], tokens: list[tuple[str, ...]]) -> None:
    _cache.update(zip(texts, tokens))
    overflow = len(_cache) - CACHE_SIZE
    if overflow > 0:
        for text in list(itertools.islice(_cache, overflow)):
            del _cache[text]


def token_table(texts: Iterable[str], tokenizer: str = "kiwi") -> dict[str, tuple[str, ...]]:
    """Map each distinct text to its tokens; kiwi analyses only texts not seen before.

    The tuples are shared with the cache: callers read them, never change them.
    """
    check_tokenizer(tokenizer)
    texts = _check_texts(texts)
    if tokenizer == "whitespace":
        return {text: tuple(text.split()) for text in texts}
    table = {text: _cache.get(text) for text in texts}
    missing = [text for text, tokens in table.items() if tokens is None]
    if missing:
        analysed = _analyze(missing)
        _remember(missing, analysed)
        table.update(zip(missing, analysed))
    return table


def tokenize_many(texts: list[str], tokenizer: str = "kiwi") -> list[list[str]]:
    """Tokens of each text, in order; kiwi analyses all unseen texts in one batch."""
    texts = _check_texts(texts)
    table = token_table(texts, tokenizer)
    return [list(table[text]) for text in texts]


def tokenize(text: str, tokenizer: str = "kiwi") -> list[str]:
    """Tokens of one text: kiwi morphemes with ``#...#`` tags whole, or ``text.split()``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    return tokenize_many([text], tokenizer)[0]


def clear_cache() -> None:
    """Forget every tokenized text (the Kiwi instance itself is kept)."""
    _cache.clear()


class KoreanTokenizer:
    """rouge-score compatible tokenizer: ``RougeScorer(types, tokenizer=KoreanTokenizer())``."""

    def __init__(self, kind: str = "kiwi"):
        self.kind = check_tokenizer(kind)

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.kind)

    def tokenize_many(self, texts: list[str]) -> list[list[str]]:
        return tokenize_many(texts, self.kind)

    def __repr__(self) -> str:
        return f"KoreanTokenizer(kind={self.kind!r})"
