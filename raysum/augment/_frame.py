"""``augment_frame``: a fold's training part in, its augmented rows out, cached on disk.

How many rows: ``round(ratio * len(train))`` in total, split as evenly as possible over
the methods in the order given (the first ``total % len(methods)`` get one more). Each
method walks the training rows in its own seeded random order, one pass after another,
and keeps every new example it makes (not a copy of a training row or of an example it
already made); a pass that makes nothing new ends the method (``speaker_swap`` and
``back_translation`` make one example per row, the random rewrites can make more). A
method that ends short hands what it could not make to the methods after it, then to
any earlier one that can still make more; only when every method has run out is the
frame shorter than asked, with a warning.

Only rows of the given frame are ever read, so augmenting a fold's training part cannot
leak its held-out dialogues. The result is cached as parquet under ``cache_dir``, named
by a hash of everything it depends on: the training rows, the methods, ratio and seed,
the translators and their settings (for ``back_translation``) and ``CACHE_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections import Counter, deque
from pathlib import Path
from types import ModuleType

import pandas as pd

from raysum.augment._registry import AUGMENT_METHODS, check_available
from raysum.augment.back_translation import DEFAULT_TRANSLATORS, Translator
from raysum.errors import ConfigError, DataError
from raysum.storage import write_atomic

log = logging.getLogger(__name__)

CACHE_VERSION = 1   # bump when a method's output for the same input changes
COLUMNS = ["fname", "dialogue", "summary", "source_fname", "method"]
MAX_PASSES = 20


def cached_augmentation(train: pd.DataFrame, methods: list[str], ratio: float, seed: int, cache_dir: str | None,
                        translator_models: list[str] | None = None) -> pd.DataFrame | None:
    """The rows ``augment_frame`` would read back from ``cache_dir`` (None: it would make them)."""
    methods = list(methods)
    if cache_dir is None or round(ratio * len(train)) == 0:
        return None
    uses_translator = any(hasattr(AUGMENT_METHODS[m], "augment_batch") for m in methods)
    settings = Translator.settings_for(list(translator_models or DEFAULT_TRANSLATORS)) if uses_translator else None
    return _read_cache(Path(cache_dir) / f"augment-{_cache_key(train, methods, ratio, seed, settings)}.parquet")


def augment_frame(train: pd.DataFrame, methods: list[str], ratio: float, seed: int, cache_dir: str | None,
                  translator_models: list[str] | None = None, *, translator: Translator | None = None) -> pd.DataFrame:
    """New rows only (``COLUMNS``): ``round(ratio * len(train))`` augmented examples of
    ``train``'s rows (fname, dialogue, summary), fname ``f"{source}#aug-{method}-{i}"``.

    ``translator_models`` names the back-translation checkpoints (default
    ``DEFAULT_TRANSLATORS``); an already loaded ``translator`` can be passed instead.
    Same inputs, same rows: read back from ``cache_dir`` when it holds them."""
    methods = list(methods)
    _validate(train, methods, ratio)
    total = round(ratio * len(train))
    if total == 0:
        return pd.DataFrame(columns=COLUMNS)
    uses_translator = any(hasattr(AUGMENT_METHODS[m], "augment_batch") for m in methods)
    names = translator.names if translator is not None else list(translator_models or DEFAULT_TRANSLATORS)
    settings = (translator.settings() if translator is not None else Translator.settings_for(names)) \
        if uses_translator else None
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"augment-{_cache_key(train, methods, ratio, seed, settings)}.parquet"
        cached = _read_cache(path)
        if cached is not None:
            return cached
    if uses_translator and translator is None:
        if problems := check_available(methods, names):
            raise ConfigError(problems)
        translator = Translator(names)

    sources = [{"fname": str(f), "dialogue": d, "summary": s}
               for f, d, s in zip(train["fname"], train["dialogue"], train["summary"])]
    streams = [_Stream(m, AUGMENT_METHODS[m], sources, seed, translator) for m in methods]
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    missing = 0
    for stream, quota in zip(streams, _quotas(total, len(methods))):
        made = stream.take(quota + missing)
        rows[stream.method] += made
        missing = quota + missing - len(made)
    for stream in streams:  # a second chance for methods that can still make more
        if missing == 0:
            break
        made = stream.take(missing)
        rows[stream.method] += made
        missing -= len(made)
    if missing:
        log.warning("augmentation made %d of the %d examples asked for (ratio %s): %s ran out of new examples",
                    total - missing, total, ratio, ", ".join(methods))
    frame = pd.DataFrame([row for m in methods for row in rows[m]], columns=COLUMNS)
    if path is not None:
        _write(frame, path)
    return frame


def _validate(train: pd.DataFrame, methods: list[str], ratio: float) -> None:
    missing = [c for c in ("fname", "dialogue", "summary") if c not in train.columns]
    if missing:
        raise DataError(f"augmentation needs columns fname, dialogue, summary; missing {', '.join(missing)}")
    duplicated = train["fname"].astype(str)[train["fname"].astype(str).duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"fname must be unique to augment; duplicated: {', '.join(duplicated[:5])}")
    problems = [p for p in check_available(methods, []) if p.startswith("unknown")]
    if len(set(methods)) != len(methods):
        problems.append(f"augmentation methods are listed twice: {methods}")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 0):
        problems.append(f"augmentation ratio must be a number >= 0, got {ratio!r}")
    elif ratio > 0 and not methods:
        problems.append("augmentation ratio > 0 needs at least one augmentation method")
    if problems:
        raise ConfigError(problems)


def _quotas(total: int, n_methods: int) -> list[int]:
    share, extra = divmod(total, n_methods)
    return [share + (i < extra) for i in range(n_methods)]


def _cache_key(train: pd.DataFrame, methods: list[str], ratio: float, seed: int, settings: dict | None) -> str:
    content = {
        "version": CACHE_VERSION,
        "rows": [[str(f), d, s] for f, d, s in zip(train["fname"], train["dialogue"], train["summary"])],
        "methods": methods, "ratio": float(ratio), "seed": seed, "translators": settings,
    }
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()[:20]


def _read_cache(path: Path) -> pd.DataFrame | None:
    """The cached rows; None when there are none, or when the file is damaged (made again)."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        log.warning("augmentation cache %s is damaged (%s); making its rows again", path, exc)
        return None
    if list(frame.columns) != COLUMNS:
        log.warning("augmentation cache %s has columns %s, not %s; making its rows again", path,
                    list(frame.columns), COLUMNS)
        return None
    return frame


def _write(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda temp: frame.to_parquet(temp, index=False))  # readers never see half a file


class _Stream:
    """One method's examples, in a seeded order over the training rows, made on demand."""

    def __init__(self, method: str, module: ModuleType, sources: list[dict], seed: int,
                 translator: Translator | None):
        self.method, self.module, self.sources, self.translator = method, module, sources, translator
        self.rng = random.Random(f"raysum-augment:{seed}:{method}")
        self.seen = {(s["dialogue"], s["summary"]) for s in sources}
        self.copies: Counter[str] = Counter()
        self.order: deque[int] = deque()
        self.passes, self.new_in_pass, self.ended = 0, 0, False

    def take(self, k: int) -> list[dict]:
        made: list[dict] = []
        while len(made) < k:
            picked = self._next_rows(k - len(made))
            if not picked:
                break
            examples = [self.sources[i] for i in picked]
            if hasattr(self.module, "augment_batch"):
                results = self.module.augment_batch(examples, self.rng, translator=self.translator)
            else:
                results = [self.module.augment(dict(ex), self.rng) for ex in examples]
            for source, result in zip(examples, results):
                if result is not None and self._is_new(result):
                    made.append(self._row(source, result))
        return made

    def _next_rows(self, k: int) -> list[int]:
        """Up to ``k`` next row indices in this method's order, never across the end of a pass
        (whether a pass made anything new is known only once its rows were augmented)."""
        if not self.order and not self.ended:
            if self.passes and not self.new_in_pass or self.passes >= MAX_PASSES:
                self.ended = True
            else:
                self.order = deque(self.rng.sample(range(len(self.sources)), len(self.sources)))
                self.passes, self.new_in_pass = self.passes + 1, 0
        return [self.order.popleft() for _ in range(min(k, len(self.order)))]

    def _is_new(self, result: dict) -> bool:
        key = (result["dialogue"], result["summary"])
        if key in self.seen:
            return False
        self.seen.add(key)
        self.new_in_pass += 1
        return True

    def _row(self, source: dict, result: dict) -> dict:
        i = self.copies[source["fname"]]
        self.copies[source["fname"]] += 1
        return {"fname": f"{source['fname']}#aug-{self.method}-{i}", "dialogue": result["dialogue"],
                "summary": result["summary"], "source_fname": source["fname"], "method": self.method}
