"""Augmentation ``back_translation``: each utterance translated ko -> en -> ko with MarianMT.

The translators are seq2seq checkpoints loaded with ``from_pretrained`` (a hub name found
in the Hugging Face cache, or a local directory), by default
``Helsinki-NLP/opus-mt-ko-en`` then ``Helsinki-NLP/opus-mt-tc-big-en-ko``; the text goes
through each in turn. What is translated, and what never is:

- the speaker tag of a turn (``#Person1#:``) is kept, only the utterance is translated;
- an utterance is cut at its ``#...#`` tags (``#PhoneNumber#``, ``#Address#`` ...), which
  are kept verbatim in place; each piece between tags with at least
  ``MIN_SYLLABLES`` Hangul syllables is translated on its own, shorter pieces are kept;
- with ``keep_digits`` (the default) a translated piece whose digit sequences differ from
  its source (``22만 원`` -> ``220,000원``) is dropped in favour of the source piece, so
  numbers, times and dates stay as said; an empty translation is dropped likewise;
- the summary is kept as it is.

A dialogue that comes back unchanged is not an example (None). Translation is batched:
``Translator.translate`` sorts the distinct pieces of many dialogues by length and
generates ``batch_size`` at a time; ``augment_batch`` is the path ``augment_frame``
takes. There is no fallback to untrained weights: a checkpoint that cannot be loaded is
a ``ConfigError`` naming it and how to provide it (see ``checkpoint_problems``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from raysum.data import TAG_PATTERN
from raysum.errors import ConfigError
from raysum.tta import split_line

DEFAULT_TRANSLATORS: tuple[str, ...] = ("Helsinki-NLP/opus-mt-ko-en", "Helsinki-NLP/opus-mt-tc-big-en-ko")
MIN_SYLLABLES = 3
_HANGUL = re.compile(r"[가-힣]")
_DIGITS = re.compile(r"\d+")
_SPLIT_AT_TAGS = re.compile(f"({TAG_PATTERN.pattern})")


# ---------------------------------------------------------------- can the checkpoints load?

def _offline() -> bool:
    return any(os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def checkpoint_problems(names: Sequence[str]) -> list[str]:
    """Why each translator in ``names`` cannot be loaded here, one message per problem."""
    from huggingface_hub import try_to_load_from_cache

    problems = []
    needs_sentencepiece = False
    for name in names:
        local = Path(name).expanduser()
        if local.is_dir() or name.startswith((".", "/", "~")):
            if not (local / "config.json").is_file():
                problems.append(f"translator checkpoint {name!r}: no config.json in that directory; "
                                f"save a model there with save_pretrained (model and tokenizer)")
            needs_sentencepiece |= (local / "source.spm").is_file()
            continue
        try:
            cached = try_to_load_from_cache(name, "config.json")
        except ValueError:  # not a repo id either (huggingface_hub's HFValidationError)
            problems.append(f"translator checkpoint {name!r} is neither a local directory nor a "
                            f"Hugging Face model name (org/name)")
            continue
        if not isinstance(cached, str):
            if _offline():
                problems.append(
                    f"translator checkpoint {name!r} is not in the Hugging Face cache "
                    f"({_cache_location()}) and HF_HUB_OFFLINE is set: download it where there is "
                    f"internet (`hf download {name}`) and point HF_HOME at that cache, or give the "
                    f"path of a local directory with the model instead of {name!r}")
            continue
        needs_sentencepiece |= isinstance(try_to_load_from_cache(name, "source.spm"), str)
        needs_sentencepiece |= name.startswith("Helsinki-NLP/")
    if needs_sentencepiece and importlib.util.find_spec("sentencepiece") is None:
        problems.append("the Marian translators' tokenizer needs sentencepiece: pip install sentencepiece")
    return problems


def _cache_location() -> str:
    from huggingface_hub import constants

    return f"HF_HOME={os.environ.get('HF_HOME', constants.HF_HOME)}, hub cache {constants.HF_HUB_CACHE}"


# ---------------------------------------------------------------- the translator

class Translator:
    """A chain of seq2seq translation checkpoints, loaded once and run in batches."""

    def __init__(self, models: Sequence[str] = DEFAULT_TRANSLATORS, *, batch_size: int = 32,
                 num_beams: int = 4, max_new_tokens: int = 256, max_input_tokens: int = 256,
                 device: str | None = None):
        if not models:
            raise ConfigError("back_translation needs at least one translator checkpoint")
        problems = checkpoint_problems(models)
        if problems:
            raise ConfigError(problems)
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.names = [str(name) for name in models]
        self.batch_size, self.num_beams = batch_size, num_beams
        self.max_new_tokens, self.max_input_tokens = max_new_tokens, max_input_tokens
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.stages = []
        for name in self.names:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForSeq2SeqLM.from_pretrained(name).to(self.device).eval()
            self.stages.append((tokenizer, model))

    @staticmethod
    def settings_for(models: Sequence[str], num_beams: int = 4, max_new_tokens: int = 256,
                     max_input_tokens: int = 256) -> dict:
        """What decides a translator's output (for cache keys), without loading it."""
        return {"models": [str(m) for m in models], "num_beams": num_beams, "max_new_tokens": max_new_tokens,
                "max_input_tokens": max_input_tokens}

    def settings(self) -> dict:
        return self.settings_for(self.names, self.num_beams, self.max_new_tokens, self.max_input_tokens)

    def translate(self, texts: Sequence[str]) -> list[str]:
        """``texts`` through every checkpoint in turn (ko -> en -> ko for the default pair)."""
        out = list(texts)
        for tokenizer, model in self.stages:
            out = self._translate_once(tokenizer, model, out)
        return out

    def _translate_once(self, tokenizer, model, texts: list[str]) -> list[str]:
        """Each distinct text once, through the generation engine: length-sorted batches of at
        most `batch_size` texts (the engine's token budget on CUDA), beam search as the
        checkpoint's own generate would run it (no early stopping)."""
        from raysum.generation import Decoding, GenerationEngine

        # Positions past the model's table do not exist: the decoder's start token takes one.
        positions = getattr(model.config, "max_position_embeddings", None) or 10**6
        max_input, max_new = min(self.max_input_tokens, positions), min(self.max_new_tokens, positions - 1)
        distinct = sorted(set(texts), key=len)
        sources = [list(ids) for ids in tokenizer(distinct, truncation=True, max_length=max_input)["input_ids"]]
        decoding = Decoding(num_beams=self.num_beams, max_new_tokens=max_new, early_stopping=False)
        # dynamic KV cache: compiling a translator for one augmentation pass costs more than it saves
        rows = GenerationEngine(model, tokenizer, cache="dynamic").generate(sources, decoding, self.batch_size)
        translated = tokenizer.batch_decode([row.tokens for row in rows], skip_special_tokens=True)
        done = dict(zip(distinct, (t.strip() for t in translated)))
        return [done[text] for text in texts]


class RequestRecorder:
    """Stands in for a translator to learn which pieces an augmentation pass asks for: every
    piece comes back changed (the usual case), so the pass takes the rows it would take
    with real translations."""

    def __init__(self, models: Sequence[str]):
        self.names = [str(m) for m in models]
        self.requested: set[str] = set()

    def settings(self) -> dict:
        return Translator.settings_for(self.names)

    def translate(self, texts: Sequence[str]) -> list[str]:
        self.requested.update(texts)
        return [f"{text} ·" for text in texts]


class KnownTranslations:
    """Translations made ahead (by Ray tasks), served by piece. A piece that was not made
    ahead (a pass that went further because some rows came back unchanged) is translated
    here, by the checkpoints loaded on first need; ``missed`` counts those."""

    def __init__(self, models: Sequence[str], known: dict[str, str]):
        self.names = [str(m) for m in models]
        self.known = known
        self.missed = 0
        self._local: Translator | None = None

    def settings(self) -> dict:
        return Translator.settings_for(self.names)

    def translate(self, texts: Sequence[str]) -> list[str]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        if missing:
            self.missed += len(missing)
            self._local = self._local or Translator(self.names)
            self.known.update(zip(missing, self._local.translate(missing)))
        return [self.known[t] for t in texts]


def translate_chunk(models: Sequence[str], texts: Sequence[str]) -> list[str]:
    """``texts`` through the translator chain in this process (a Ray task's body)."""
    return Translator(models).translate(texts)


def _translations_file(cache_dir: str | Path, models: Sequence[str]) -> Path:
    key = hashlib.sha256(json.dumps(Translator.settings_for(models), sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return Path(cache_dir) / f"translations-{key}.parquet"


def read_translations(cache_dir: str | Path, models: Sequence[str]) -> dict[str, str]:
    """Pieces translated before by this translator chain and its settings ({} when none, or
    when the file is damaged: they are translated again)."""
    import pandas as pd

    path = _translations_file(cache_dir, models)
    if not path.is_file():
        return {}
    try:
        frame = pd.read_parquet(path)
        return dict(zip(frame["piece"].astype(str), frame["translation"].astype(str)))
    except Exception:  # noqa: BLE001 - a damaged cache is made again, never trusted
        return {}


def write_translations(cache_dir: str | Path, models: Sequence[str], known: dict[str, str]) -> Path:
    import pandas as pd

    from raysum.storage import write_atomic

    frame = pd.DataFrame({"piece": list(known), "translation": list(known.values())})
    return write_atomic(_translations_file(cache_dir, models), lambda temp: frame.to_parquet(temp, index=False))


_DEFAULT: dict[tuple[str, ...], Translator] = {}


def default_translator(models: Sequence[str] = DEFAULT_TRANSLATORS) -> Translator:
    """One shared ``Translator`` per chain of checkpoint names."""
    key = tuple(models)
    if key not in _DEFAULT:
        _DEFAULT[key] = Translator(key)
    return _DEFAULT[key]


# ---------------------------------------------------------------- dialogues

def _pieces(utterance: str) -> list[tuple[str, bool]]:
    """(piece, translate it?) for an utterance cut at its tags; whitespace around pieces is kept apart."""
    out = []
    for part in _SPLIT_AT_TAGS.split(utterance):
        if not part:
            continue
        if TAG_PATTERN.fullmatch(part) or len(_HANGUL.findall(part)) < MIN_SYLLABLES:
            out.append((part, False))
            continue
        lead, core, trail = re.match(r"(\s*)(.*?)(\s*)$", part, re.DOTALL).groups()
        out += [(lead, False), (core, True), (trail, False)]
    return out


def back_translate(dialogues: Sequence[str], translator: Translator, keep_digits: bool = True) -> list[str]:
    """Every dialogue with its utterances back-translated (see the module docstring), in one batched pass."""
    layouts = []
    sources: list[str] = []
    for dialogue in dialogues:
        lines = []
        for line in dialogue.split("\n"):
            prefix, utterance = split_line(line)
            lines.append((prefix, _pieces(utterance)))
            sources += [piece for piece, translate in lines[-1][1] if translate]
        layouts.append(lines)
    translated = dict(zip(sources, translator.translate(sources))) if sources else {}

    def keep(piece: str) -> str:
        new = translated.get(piece, "")
        if not new or (keep_digits and Counter(_DIGITS.findall(new)) != Counter(_DIGITS.findall(piece))):
            return piece
        return new

    return ["\n".join(prefix + "".join(keep(p) if tr else p for p, tr in pieces) for prefix, pieces in lines)
            for lines in layouts]


def augment_batch(examples: Sequence[dict], rng: random.Random, *, translator: Translator,
                  keep_digits: bool = True) -> list[dict | None]:
    """Back-translated copies of ``examples`` (None where the dialogue came back unchanged)."""
    dialogues = back_translate([ex["dialogue"] for ex in examples], translator, keep_digits)
    return [None if new == ex["dialogue"] else {**ex, "dialogue": new} for ex, new in zip(examples, dialogues)]


def augment(example: dict, rng: random.Random) -> dict | None:
    """One example through the default translators (loaded once); prefer ``augment_batch``."""
    return augment_batch([example], rng, translator=default_translator())[0]
