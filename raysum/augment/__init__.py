"""Training-data augmentation: extra (dialogue, summary) examples from a fold's training part.

    problems = check_available(["back_translation"], translator_models)   # before any training
    extra = augment_frame(train_part, ["paraphrase", "speaker_swap"], ratio=0.5, seed=42,
                          cache_dir="outputs/cache")
    # new rows only: fname ("train_3#aug-paraphrase-0"), dialogue, summary, source_fname, method

A method is a module ``raysum/augment/<name>.py`` exposing
``augment(example, rng) -> dict | None`` (a new example with "dialogue" and "summary", or
None when the method does not apply to it); a method that is cheaper in batches also
exposes ``augment_batch(examples, rng, translator=...) -> list[dict | None]``, which
``augment_frame`` uses. Methods: ``speaker_swap``, ``turn_shuffle``, ``synonym``,
``paraphrase``, ``back_translation``; see their module docstrings.

``augment_frame`` only ever reads the frame it is given: pass it a fold's training part
and no held-out dialogue can reach the augmented rows.
"""

from __future__ import annotations

from raysum.augment._frame import CACHE_VERSION, augment_frame, cached_augmentation
from raysum.augment._registry import AUGMENT_METHODS, check_available, config_problems, register_augment
from raysum.augment.back_translation import (
    DEFAULT_TRANSLATORS, KnownTranslations, RequestRecorder, Translator, translate_chunk,
)

__all__ = [
    "AUGMENT_METHODS",
    "CACHE_VERSION",
    "DEFAULT_TRANSLATORS",
    "KnownTranslations",
    "RequestRecorder",
    "Translator",
    "augment_frame",
    "cached_augmentation",
    "check_available",
    "config_problems",
    "register_augment",
    "translate_chunk",
]
