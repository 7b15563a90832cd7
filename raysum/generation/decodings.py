"""Decoding settings: the model's own generation settings and up to three more per unit.

A unit generates its out-of-fold, dev and test dialogues once per decoding setting (the
model is loaded once; test only with the experiment's ``decoding_for_test``, on by
default); TTA variants only with the model's own settings, so the extra cost is one more
pass over OOF + dev + test per setting. Each setting has a short stable label:
``d0`` is the model's own (``num_beams``, ``length_penalty``, ``no_repeat_ngram_size``,
``max_length``), ``d1``..``d3`` are the model's ``decoding_settings`` in order, each a
partial override of the model's own::

    raysum train ... --decoding_settings "{num_beams: 1}" "{length_penalty: 1.4, max_length: 80}"
    raysum train ... --decoding_space search_spaces/decoding.yaml --decoding_trials 3

The candidates table's ``decoding`` column holds the label. Scores, ensembles, the
run's submission and ``raysum predict`` use ``d0`` only (:func:`default_decoding`); the
other labels are there for ``raysum tune --space search_spaces/decoding.yaml``, which
picks a setting per model on the cached candidates, and ``raysum finalize``, which
submits that choice.

Sampling is a decoding setting too: ``{do_sample: true, temperature: 0.8, top_p: 0.95}``
(``num_beams: 1``; temperature and top_p only with do_sample). Each label samples with
its own seed (:func:`sampling_seed`: the unit's seed and the label), so the same sampled
setting given twice gives two different candidates per dialogue — that is how a unit
produces several sampled candidates for voting or stacking: one per label, since the
candidates table holds one row per (split, fname, model, fold, tta, decoding) and has no
column that would tell several samples of one label apart (``num_return_sequences`` is
therefore not a decoding key). The sampling keys are left out of a table entry that does
not sample, so the settings of beam and greedy decodings read as before.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from raysum.experiment.candidates import DECODING_COLUMN as COLUMN, DEFAULT_DECODING as DEFAULT

SEARCH_KEYS = ("num_beams", "length_penalty", "no_repeat_ngram_size", "max_length")
SAMPLING_KEYS = ("do_sample", "temperature", "top_p")
SAMPLING_OFF = {"do_sample": False, "temperature": 1.0, "top_p": 1.0}
DECODING_KEYS = SEARCH_KEYS + SAMPLING_KEYS
MAX_DECODINGS = 4  # per unit, the model's own settings included
# What each key accepts: (type check, bound check, description).
_RULES = {
    "num_beams": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "max_length": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "no_repeat_ngram_size": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = off)"),
    "length_penalty": (lambda v: _is_number(v) and 0 < v <= 10, "a number in (0, 10]"),
    "do_sample": (lambda v: isinstance(v, bool), "true or false"),
    "temperature": (lambda v: _is_number(v) and 0 < v <= 10, "a number in (0, 10]"),
    "top_p": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
}


def label(index: int) -> str:
    return f"d{index}"


def own_settings(settings) -> dict:
    """The model's own decoding settings (what ``d0`` generates with)."""
    return _shown({key: getattr(settings, key) for key in DECODING_KEYS})


def decoding_table(settings) -> dict[str, dict]:
    """{label: full decoding settings} of one model: d0 its own, then its decoding_settings."""
    own = {key: getattr(settings, key) for key in DECODING_KEYS}
    table = {DEFAULT: _shown(own)}
    for i, extra in enumerate(settings.decoding_settings or [], start=1):
        table[label(i)] = _shown({**own, **extra})
    return table


def with_decoding(settings, decoding: dict):
    """``settings`` generating with ``decoding`` (the extra settings cleared; a decoding
    without sampling keys does not sample)."""
    values = {**SAMPLING_OFF, **{k: decoding[k] for k in DECODING_KEYS if k in decoding}}
    return replace(settings, decoding_settings=[], **values)


def sampling_seed(seed: int, decoding: str) -> int:
    """The seed a unit with ``seed`` samples the decoding labelled ``decoding`` with."""
    from raysum.generation._sampling import setting_seed

    return setting_seed(seed, decoding)


def _shown(decoding: dict) -> dict:
    """A decoding without its sampling keys when it does not sample (they do nothing then)."""
    if decoding.get("do_sample"):
        return decoding
    return {k: v for k, v in decoding.items() if k not in SAMPLING_KEYS}


def decoding_problems(settings) -> list[str]:
    """Problems of a model's ``decoding_settings`` (count, keys, values, repeats)."""
    extras = settings.decoding_settings
    if extras is None:
        extras = []
    if not isinstance(extras, list):
        return [f"decoding_settings must be a list of mappings, got {extras!r}"]
    out = []
    if len(extras) > MAX_DECODINGS - 1:
        out.append(f"decoding_settings has {len(extras)} settings; at most {MAX_DECODINGS - 1} are allowed "
                   f"(with the model's own, {MAX_DECODINGS} decodings per unit)")
    for i, extra in enumerate(extras):
        where = f"decoding_settings[{i}]"
        if not isinstance(extra, dict) or not extra:
            out.append(f"{where}: expected a non-empty mapping of {', '.join(DECODING_KEYS)}, got {extra!r}")
            continue
        unknown = sorted(str(k) for k in extra if k not in DECODING_KEYS)
        if unknown:
            out.append(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(DECODING_KEYS)}")
        for key, value in extra.items():
            if key in _RULES and not _RULES[key][0](value):
                out.append(f"{where}: {key} must be {_RULES[key][1]}, got {value!r}")
    if out:
        return out
    own = {key: getattr(settings, key) for key in DECODING_KEYS}
    seen: dict[str, str] = {}
    given = [set(own), *(set(e) for e in extras)]
    for (name, decoding), extra, keys in zip(decoding_table(settings).items(), [{}, *extras], given):
        out += _combination_problems(name, {**own, **extra}, keys)
        key = repr(sorted(decoding.items()))
        if key in seen and not decoding.get("do_sample"):  # a sampled repeat draws other samples (its own seed)
            out.append(f"decoding_settings: {name} repeats {seen[key]} ({decoding}); every setting must differ")
        seen.setdefault(key, name)
    return out


def _combination_problems(name: str, decoding: dict, given: set[str]) -> list[str]:
    """Sampling keys that cannot act together with the rest of a full decoding (for the
    sampling-only keys: those the setting gives itself)."""
    where = "the model's own settings" if name == DEFAULT else f"decoding setting {name}"
    if decoding.get("do_sample"):
        if decoding.get("num_beams") != 1:
            return [f"{where}: do_sample samples with num_beams 1, got num_beams {decoding.get('num_beams')} "
                    "(give num_beams: 1 with it)"]
        return []
    unused = [k for k in ("temperature", "top_p") if k in given and decoding[k] != 1.0]
    return [f"{where}: {', '.join(unused)} only act(s) with do_sample: true"] if unused else []


def default_decoding(candidates):
    """The candidates generated with each model's own settings (a table without the
    ``decoding`` column, from before there were several, is all ``d0``)."""
    if COLUMN not in candidates.columns:
        return candidates
    return candidates[candidates[COLUMN].fillna(DEFAULT) == DEFAULT].reset_index(drop=True)


def apply_decoding_space(cfg, space_path: str | Path | None, trials: int | None) -> None:
    """``--decoding_space FILE --decoding_trials K``: K settings drawn (seeded) from the
    space become every model's ``decoding_settings``, their source naming the space file.
    Global parameters are drawn once per setting, a model's own block of the space per
    model. Problems join ``cfg.problems`` (validation raises them with the rest)."""
    import numpy as np

    from raysum.config.space import check_models, load_space
    from raysum.errors import ConfigError

    trials = MAX_DECODINGS - 1 if trials is None else trials
    problems = cfg.problems
    if space_path is None:
        problems.append("--decoding_trials needs --decoding_space FILE (the space the settings are drawn from)")
        return
    if cfg.sources.get("decoding_settings") == "cli":
        problems.append("give --decoding_settings or --decoding_space, not both")
    if not 1 <= trials <= MAX_DECODINGS - 1:
        problems.append(f"--decoding_trials must be 1..{MAX_DECODINGS - 1} (with the model's own settings, "
                        f"{MAX_DECODINGS} decodings per unit), got {trials}")
    try:
        space = load_space(space_path)
        if space.space != "decoding":
            raise ConfigError(f"--decoding_space {space_path}: a {space.space} space; give a decoding space "
                              "(search_spaces/decoding.yaml)")
        check_models(space, list(cfg.models))
    except ConfigError as exc:
        problems.extend(exc.problems)
        return
    if problems:
        return
    rng = np.random.default_rng(cfg.experiment.seed)
    drawn: dict[str, list[dict]] = {name: [] for name in cfg.models}
    for _ in range(trials):
        for name, extra in _draw_new(rng, space, cfg, drawn).items():
            drawn[name].append(extra)
    source = f"decoding_space:{space_path}"
    for name, extras in drawn.items():
        cfg.models[name].decoding_settings = extras
        cfg.sources[f"models.{name}.decoding_settings"] = source


def _draw_new(rng, space, cfg, drawn: dict, attempts: int = 100) -> dict[str, dict]:
    """One setting per model, differing from every model's own and earlier ones when the
    space allows (a small choice-only space may not: the last draw is kept then, and
    validation reports the repeat)."""
    from raysum.config.space import sample

    for _ in range(attempts):
        common = sample(space.parameters, rng)
        per_model = {name: {**common, **sample(space.models.get(name, {}), rng)} for name in cfg.models}
        if all(_is_new(cfg.models[name], drawn[name], extra) for name, extra in per_model.items()):
            return per_model
    return per_model


def _is_new(settings, earlier: list[dict], extra: dict) -> bool:
    own = own_settings(settings)
    full = {**own, **extra}
    return full != own and all(full != {**own, **e} for e in earlier)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
