"""Driver-side inputs that vary the data: augmented training parts (train folds only)
and TTA input variants (with the label maps that undo speaker permutations)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from raysum.config.resolve import ResolvedConfig
from raysum.experiment import Experiment, layout, write_parquet
from raysum.experiment.candidates import SOURCE_SPLIT

# Data split -> the candidates split its summaries get (train: out-of-fold).
_CANDIDATE_SPLIT = {data: candidates for candidates, data in SOURCE_SPLIT.items()}


def augment_training_part(train: pd.DataFrame, cfg: ResolvedConfig, cache_dir: Path,
                          translator=None) -> tuple[pd.DataFrame, dict]:
    """`train` (fname, dialogue, summary) plus its augmented rows when augmentation is on.
    Only rows of `train` are ever augmented: a fold's held-out part never reaches here.
    ``translator``: back-translations made ahead (:func:`pretranslate`)."""
    exp = cfg.experiment
    info = {"source_rows": len(train), "augmented_rows": 0}
    if not exp.use_augmentation:
        return train, info
    from raysum.augment import augment_frame

    extra = augment_frame(train, list(exp.augmentation_methods), exp.augmentation_ratio, exp.seed,
                          str(cache_dir), translator_models=list(exp.augmentation_translators), translator=translator)
    info.update({"augmented_rows": len(extra), "ratio": exp.augmentation_ratio,
                 "methods": list(exp.augmentation_methods),
                 "per_method": {str(k): int(v) for k, v in extra["method"].value_counts().items()}})
    return pd.concat([train, extra[["fname", "dialogue", "summary"]]], ignore_index=True), info


def pretranslate(parts: list[pd.DataFrame], cfg: ResolvedConfig, cache_dir: Path, console=None):
    """Back-translation for every training part at once, before any is augmented: a pass
    with a stand-in translator learns which utterance pieces each part's augmentation will
    ask for, the pieces not translated before go to Ray tasks (the cluster's GPUs when it
    has some) in one go, and every translation is kept in ``cache_dir`` by content. Returns
    the translations for :func:`augment_training_part` (None: no back-translation here)."""
    exp = cfg.experiment
    if not exp.use_augmentation or "back_translation" not in exp.augmentation_methods:
        return None
    from raysum.augment import DEFAULT_TRANSLATORS, KnownTranslations, RequestRecorder, augment_frame, cached_augmentation
    from raysum.augment.back_translation import read_translations, write_translations

    methods, models = list(exp.augmentation_methods), list(exp.augmentation_translators or DEFAULT_TRANSLATORS)
    recorder = RequestRecorder(models)
    for part in parts:
        if cached_augmentation(part, methods, exp.augmentation_ratio, exp.seed, str(cache_dir), models) is None:
            augment_frame(part, methods, exp.augmentation_ratio, exp.seed, None, translator=recorder)
    known = read_translations(cache_dir, models)
    todo = sorted(recorder.requested - set(known))
    if todo:
        from raysum.launch import translate_on_ray

        if console is not None:
            console.print(f"back-translation: {len(todo)} utterance piece(s) of {len(parts)} training part(s) "
                          f"through {' -> '.join(models)}, as Ray tasks ({len(recorder.requested) - len(todo)} "
                          "translated before)")
        known.update(translate_on_ray(models, todo, console))
        write_translations(cache_dir, models, known)
    return KnownTranslations(models, known)


def tta_variant_names(cfg: ResolvedConfig) -> list[str]:
    exp = cfg.experiment
    if not exp.use_tta:
        return []
    return [f"{strategy}_{i + 1}" for strategy in exp.tta_strategies for i in range(exp.tta_num_aug)]


def write_tta_inputs(experiment: Experiment, cfg: ResolvedConfig, frames: dict[str, pd.DataFrame],
                     folder: Path | None = None) -> None:
    """One parquet (fname, dialogue) per split and variant, `inputs/tta/<split>_<variant>.parquet`,
    and every variant's label map by candidates split and fname (`folder`: a prediction's own
    inputs instead of inputs/)."""
    settings = cfg.experiment
    if not settings.use_tta:
        return
    from raysum.tta import make_variants

    maps = []
    for split, frame in frames.items():
        per_variant: dict[str, list[str]] = {}
        for fname, dialogue in zip(frame["fname"], frame["dialogue"]):
            for strategy in settings.tta_strategies:
                variants = make_variants(dialogue, strategy, settings.tta_num_aug, settings.seed, key=str(fname))
                for i, (text, label_map) in enumerate(variants):
                    name = f"{strategy}_{i + 1}"
                    per_variant.setdefault(name, []).append(text)
                    maps.append({"split": _CANDIDATE_SPLIT[split], "fname": str(fname), "tta": name,
                                 "label_map": json.dumps(label_map)})
        for name, texts in per_variant.items():
            write_parquet(experiment.tta_input(split, name, folder),
                          pd.DataFrame({"fname": frame["fname"].astype(str), "dialogue": texts}))
    write_parquet(experiment.label_maps_file(folder), pd.DataFrame(maps))


def write_fold_tta_inputs(exp: Experiment, cfg: ResolvedConfig, fold: int, heldout_fnames: list[str]) -> None:
    """A fold's out-of-fold variants: the training set's variants of its held-out dialogues."""
    for name in tta_variant_names(cfg):
        variants = exp.read_table(exp.tta_input("train", name), required=("fname", "dialogue"))
        write_parquet(exp.tta_input(layout.fold_label(fold), name),
                      variants[variants["fname"].isin(set(heldout_fnames))])


def tta_predict_paths(exp: Experiment, cfg: ResolvedConfig, oof_label: str | None,
                      folder: Path | None = None) -> dict[str, str]:
    """Unit predict entries "split|variant" -> parquet, for oof (when the unit has one), dev and test."""
    out = {}
    for name in tta_variant_names(cfg):
        if oof_label is not None:
            out[f"oof|{name}"] = str(exp.tta_input(oof_label, name, folder))
        out[f"dev|{name}"] = str(exp.tta_input("dev", name, folder))
        out[f"test|{name}"] = str(exp.tta_input("test", name, folder))
    return out


def map_back_labels(candidates: pd.DataFrame, label_maps: pd.DataFrame) -> pd.DataFrame:
    """Generated summaries of TTA variants with the original speaker labels restored."""
    if label_maps is None or label_maps.empty or (candidates["tta"] == "none").all():
        return candidates
    from raysum.tta import map_back

    # An fname names a dialogue within its split only; label maps from before the split
    # column are looked up by fname.
    key = ["split", "fname", "tta"] if "split" in label_maps.columns else ["fname", "tta"]
    lookup = {k: json.loads(m) for k, m in zip(zip(*(label_maps[c] for c in key)), label_maps["label_map"])}
    out = candidates.copy()
    out["text"] = [text if tta == "none" or not lookup.get(k) else map_back(text, lookup[k])
                   for k, tta, text in zip(zip(*(out[c] for c in key)), out["tta"], out["text"])]
    return out
