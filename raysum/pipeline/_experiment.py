"""A new experiment's inputs: data loaded once, folds, one input file per fold, and the
plain dict each unit runs from (the layout itself is raysum.experiment's)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from raysum.config.resolve import ResolvedConfig
from raysum.config.schema import FOLD_MODES
from raysum.errors import ConfigError, DataError
from raysum.experiment import Experiment, layout, write_parquet
from raysum.pipeline._resume import input_settings, unit_settings
from raysum.training.tracking import tracking_dir
from raysum.pipeline._variants import (
    augment_training_part,
    pretranslate,
    tta_predict_paths,
    write_fold_tta_inputs,
    write_tta_inputs,
)


@dataclass
class Unit:
    """One (model, fold) training unit; fold None = trained on all training data."""

    model: str
    fold: int | None

    @property
    def name(self) -> str:
        return f"{self.model}/{self.fold_label}"

    @property
    def fold_label(self) -> str:
        return layout.fold_label(self.fold)


@dataclass
class ExperimentData:
    train: pd.DataFrame
    dev: pd.DataFrame
    test: pd.DataFrame
    folds: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    loaded_rows: dict[str, int] = field(default_factory=dict)  # rows of each file, before max_train_samples
    # max_eval_samples: the dialogues each unit generates and is scored on, by "dev" and fold label
    # (fold0, ...); empty when evaluation is not capped.
    eval_fnames: dict[str, list[str]] = field(default_factory=dict)


def load_experiment_data(cfg: ResolvedConfig) -> ExperimentData:
    """Load and check train/dev/test (every problem of every file at once), sample, fold.

    An fname in both train and test is a DataError; train/dev and dev/test sharing fnames
    is a note (every later lookup is by split and fname)."""
    from raysum.data import (
        assign_folds, bundled_data, check_splits, load_dataset, parse_columns, parse_split_map, sample_rows,
    )

    exp = cfg.experiment
    paths = {
        "train": exp.train_data or str(bundled_data("train")),
        "dev": exp.dev_data or str(bundled_data("dev")),
        "test": exp.test_data or str(bundled_data("test")),
    }
    split_map, columns = parse_split_map(exp.data_split_map)[0], parse_columns(exp.data_columns)[0]
    frames, failures = {}, []
    for split, path in paths.items():
        try:
            frames[split] = load_dataset(path, require_references=split != "test", split=split_map[split],
                                         columns=columns)
        except DataError as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise DataError([str(exc) for exc in failures])
    problems, notes = check_splits({split: dict(zip(frame["fname"], frame["dialogue"]))
                                    for split, frame in frames.items()})
    if problems:
        raise DataError(problems)
    train, note = sample_rows(frames["train"], exp.max_train_samples, exp.seed)
    if note:
        notes.append(note)
    folds = assign_folds(train, exp.k_folds, exp.fold_seed) if exp.mode in FOLD_MODES else None
    data = ExperimentData(train=train.reset_index(drop=True), dev=frames["dev"], test=frames["test"],
                          folds=folds, notes=notes, paths=paths,
                          loaded_rows={split: len(frame) for split, frame in frames.items()})
    if exp.max_eval_samples is not None:
        data.eval_fnames = eval_sample(data, exp.max_eval_samples, exp.seed)
        problem = stacking_sample_problem(cfg, data)
        if problem:
            raise ConfigError(problem)
    return data


def eval_sample(data: ExperimentData, n: int, seed: int) -> dict[str, list[str]]:
    """max_eval_samples: a seeded sample of at most ``n`` dev dialogues (every unit) and of each
    fold's held-out part (every unit of that fold), in file order. Drawn from the experiment's
    seed alone, so a run with the same data, folds and seed evaluates the same dialogues."""
    from raysum.data import sample_rows

    out = {"dev": sample_rows(data.dev, n, seed, "max_eval_samples")[0]["fname"].astype(str).tolist()}
    if data.folds is not None:
        for fold in sorted(data.folds["fold"].unique()):
            heldout = data.folds[data.folds["fold"] == fold].reset_index(drop=True)
            out[layout.fold_label(int(fold))] = sample_rows(heldout, n, seed, "max_eval_samples")[0]["fname"].tolist()
    return out


def stacking_sample_problem(cfg: ResolvedConfig, data: ExperimentData) -> str | None:
    """Stacking's meta-model learns from the OOF candidates: a cap that leaves it fewer than
    MIN_OOF_DIALOGUES dialogues (and fewer than the uncapped OOF part) is refused."""
    from raysum.ensemble import canonical
    from raysum.ensemble.stacking import MIN_OOF_DIALOGUES

    if data.folds is None or canonical(cfg.experiment.ensemble_strategy) != "stacking":
        return None
    sampled = sum(len(v) for k, v in data.eval_fnames.items() if k != "dev")
    if sampled >= MIN_OOF_DIALOGUES or sampled >= len(data.folds):
        return None
    k = int(data.folds["fold"].nunique())
    return (f"max_eval_samples={cfg.experiment.max_eval_samples} leaves stacking {sampled} out-of-fold dialogues "
            f"({k} folds); its meta-model needs at least {MIN_OOF_DIALOGUES}: raise max_eval_samples to "
            f"{-(-MIN_OOF_DIALOGUES // k)} or more, or choose another ensemble_strategy")


def plan_units(cfg: ResolvedConfig) -> list[Unit]:
    exp = cfg.experiment
    folds = list(range(exp.k_folds)) if exp.mode in FOLD_MODES else [None]
    return [Unit(model, fold) for model in cfg.models for fold in folds]


def output_root(cfg: ResolvedConfig) -> Path:
    """--output_dir as an absolute path (a file:// URI is its path): Ray workers and storage
    do not share our cwd."""
    from raysum.storage import local_path

    return local_path(cfg.experiment.output_dir).resolve()


def create_experiment_dir(cfg: ResolvedConfig) -> Path:
    """A new directory; never reuses one that exists."""
    exp = cfg.experiment
    root = output_root(cfg)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    path = root / f"{stamp}_{exp.experiment_name}"
    suffix = 2
    while path.exists():
        path = root / f"{stamp}_{exp.experiment_name}_{suffix}"
        suffix += 1
    path.mkdir(parents=True)
    return path


def write_experiment_files(path: Path, cfg: ResolvedConfig, data: ExperimentData, command_line: list[str],
                           console=None) -> None:
    exp = Experiment(path)
    exp.write_config(cfg)
    exp.write_run_info({"command_line": command_line, "created": time.time(), "data": data.paths,
                        "notes": data.notes, "warnings": cfg.warnings, "inputs": input_settings(cfg),
                        **({"eval_sample": {k: len(v) for k, v in data.eval_fnames.items()}}
                           if data.eval_fnames else {})})
    for split in layout.DATA_SPLITS:
        exp.write_input(split, getattr(data, split))
    cache = output_root(cfg) / ".augmentation"
    augmentation, encoded = {}, []  # encoded: what the units train and evaluate on
    if data.folds is not None:
        exp.write_folds(data.folds)
        from raysum.data import fold_split

        folds = [int(fold) for fold in sorted(data.folds["fold"].unique())]
        parts = {fold: fold_split(data.train, data.folds, fold) for fold in folds}
        translations = pretranslate([_unit_frame(train_df) for train_df, _ in parts.values()], cfg, cache, console)
        for fold, (train_df, heldout) in parts.items():
            train_part, augmentation[layout.fold_label(fold)] = augment_training_part(_unit_frame(train_df), cfg, cache,
                                                                                      translations)
            write_parquet(exp.fold_input(fold, "train"), train_part)
            write_parquet(exp.fold_input(fold, "heldout"), _unit_frame(heldout))
            encoded += [train_part, _unit_frame(heldout)]
            if data.eval_fnames:  # what the fold's units generate: the sample of the held-out part
                write_parquet(exp.fold_input(fold, layout.OOF_SAMPLE), _unit_frame(
                    _only(heldout, data.eval_fnames[layout.fold_label(fold)])))
    else:
        translations = pretranslate([_unit_frame(data.train)], cfg, cache, console)
        full, augmentation[layout.FULL_FOLD] = augment_training_part(_unit_frame(data.train), cfg, cache, translations)
        write_parquet(exp.fold_input(None, "train"), full)
        encoded += [full, _unit_frame(data.dev)]
    exp.write_augmentation(augmentation)
    exp.write_input(layout.DEV_UNITS, _unit_frame(data.dev))
    exp.write_input(layout.ENCODING_ROWS, encoding_rows(encoded))
    exp.write_input(layout.TEST_UNITS, data.test[["fname", "dialogue"]])
    dev, train = data.dev, data.train
    if data.eval_fnames:
        exp.write_input(layout.DEV_SAMPLE, _unit_frame(_only(data.dev, data.eval_fnames["dev"])))
        dev = _only(data.dev, data.eval_fnames["dev"])
        train = _only(data.train, [f for k, v in data.eval_fnames.items() if k != "dev" for f in v])
    write_tta_inputs(exp, cfg, {"train": train, "dev": dev, "test": data.test})
    if data.folds is not None:
        for fold in sorted(data.folds["fold"].unique()):
            heldout = data.folds.loc[data.folds["fold"] == fold, "fname"].tolist()
            write_fold_tta_inputs(exp, cfg, int(fold), data.eval_fnames.get(layout.fold_label(int(fold)), heldout))


def encoding_rows(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Every distinct (dialogue, summary) of the parts, in order of first appearance: the table
    a unit encodes whole and takes its rows from (raysum.training.encoding)."""
    rows = pd.concat([part[["dialogue", "summary"]] for part in parts], ignore_index=True)
    return rows.drop_duplicates(ignore_index=True)


def _only(df: pd.DataFrame, fnames: list[str]) -> pd.DataFrame:
    """The rows of ``df`` whose fname is among ``fnames``, in ``df``'s order."""
    return df[df["fname"].astype(str).isin(set(fnames))].reset_index(drop=True)


def _unit_frame(df: pd.DataFrame) -> pd.DataFrame:
    """What a unit reads: fname, dialogue, summary (the first reference)."""
    return pd.DataFrame({"fname": df["fname"].astype(str), "dialogue": df["dialogue"].astype(str),
                         "summary": [refs[0] for refs in df["references"]]})


def unit_config(path: Path, cfg: ResolvedConfig, unit: Unit, baseline: bool) -> dict:
    """The plain dict a unit runs from (what Ray ships to the worker)."""
    from dataclasses import asdict

    exp = Experiment(path)
    train_path = exp.fold_input(unit.fold, "train")
    capped = cfg.experiment.max_eval_samples is not None
    if unit.fold is None:
        eval_path, predict = exp.input_file(layout.DEV_UNITS), {}
    else:
        eval_path = exp.fold_input(unit.fold, "heldout")
        predict = {"oof": str(exp.fold_input(unit.fold, layout.OOF_SAMPLE) if capped else eval_path)}
    predict.update({"dev": str(exp.input_file(layout.DEV_SAMPLE if capped else layout.DEV_UNITS)),
                    "test": str(exp.input_file(layout.TEST_UNITS))})
    predict.update(tta_predict_paths(exp, cfg, None if unit.fold is None else unit.fold_label))
    return {
        "unit_dir": str(exp.unit(unit.model, unit.fold).path),
        "model": asdict(cfg.models[unit.model]),
        "fold": unit.fold,
        "seed": cfg.experiment.seed,
        "train_path": str(train_path),
        "eval_path": str(eval_path),
        "predict": predict,
        "baseline_splits": ["dev"] if baseline else [],
        "tokenizer_cache": str(output_root(cfg) / ".tokenizers"),
        "encoding_cache": str(output_root(cfg) / ".encoded"),
        **shared_encoding(exp, cfg, unit),
        "resume": True,
        "max_failures": cfg.experiment.max_failures,
        "tracking": list(cfg.experiment.tracking),
        "tracking_dir": str(tracking_dir(path, unit.model, unit.fold_label)),
        "settings": unit_settings(cfg, unit.model),
        "decoding_splits": decoding_splits(cfg),
        **epoch_score(exp, cfg, unit),
    }


def shared_encoding(exp: Experiment, cfg: ResolvedConfig, unit: Unit) -> dict:
    """The table of the experiment's rows a unit encodes whole and takes its rows from, so the
    units of a model tokenize once. Not for a tiny preset: its tokenizer is trained on the
    fold's training part, so no other fold shares its encoding and the whole table would only
    be more to tokenize than its own rows. Not in an experiment written without the table."""
    rows = exp.input_file(layout.ENCODING_ROWS)
    if cfg.models[unit.model].from_config or not rows.is_file():
        return {}
    return {"encoding_rows": str(rows)}


def epoch_score(exp: Experiment, cfg: ResolvedConfig, unit: Unit) -> dict:
    """A unit that keeps its best epoch by eval_score scores its held-out part after each epoch
    (the OOF part of a fold, dev for a unit without folds) against these references, with
    the tokens scores.json uses."""
    if cfg.models[unit.model].select_best != "eval_score":
        return {}
    references = exp.input_file("train" if unit.fold is not None else "dev")
    return {"epoch_score": {"references": str(references), "tokenizer": "kiwi"}}


def decoding_splits(cfg: ResolvedConfig) -> list[str]:
    """The splits a unit generates once per extra decoding setting: OOF and dev (what a
    decoding search scores), and test unless ``decoding_for_test`` is off (what finalize
    submits). TTA variants: the model's own settings only."""
    return ["oof", "dev", *(["test"] if cfg.experiment.decoding_for_test else [])]


def ray_storage(path: Path, cfg: ResolvedConfig) -> str:
    """Ray Train's storage for this experiment's units: --storage_path/<experiment> (a path or
    URI, so experiments sharing a bucket never share run names), else <experiment>/ray."""
    root = cfg.experiment.storage_path
    if not root:
        return str(Experiment(path).ray_dir)
    from raysum.storage import scheme

    if scheme(root) is None:
        return str(Path(root).resolve() / path.name)
    return f"{root.rstrip('/')}/{path.name}"  # a URI goes to Ray Train (pyarrow.fs) as it is


def load_resolved(path: Path) -> ResolvedConfig:
    """The resolved config an experiment directory was run with (from config.json)."""
    return Experiment(path).resolved()
