"""The experiment directory and its inputs: data loaded once, folds, one input file per fold.

    <output_dir>/<YYYYMMDD_HHMMSS>_<experiment_name>/
        config.yaml  config.json  run.json  folds.csv
        inputs/{train,dev,test}.parquet  inputs/fold<k>_{train,heldout}.parquet
        units/<model>/fold<k>/   (or units/<model>/full without folds)
        candidates.parquet  scores.json  submission.csv
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from raysum.config.resolve import ResolvedConfig
from raysum.config.validate import FOLD_MODES
from raysum.errors import DataError, RaysumError
from raysum.training.tracking import tracking_dir
from raysum.pipeline._variants import (
    augment_training_part,
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
        return "full" if self.fold is None else f"fold{self.fold}"


@dataclass
class ExperimentData:
    train: pd.DataFrame
    dev: pd.DataFrame
    test: pd.DataFrame
    folds: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)


def load_experiment_data(cfg: ResolvedConfig) -> ExperimentData:
    """Load and check train/dev/test (every problem of every file at once), sample, fold."""
    from raysum.data import assign_folds, bundled_data, load_dataset, sample_rows

    exp = cfg.experiment
    paths = {
        "train": exp.train_data or str(bundled_data("train")),
        "dev": exp.dev_data or str(bundled_data("dev")),
        "test": exp.test_data or str(bundled_data("test")),
    }
    frames, problems = {}, []
    for split, path in paths.items():
        try:
            frames[split] = load_dataset(path, require_references=split != "test")
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        raise DataError(problems)
    notes = []
    train, note = sample_rows(frames["train"], exp.max_train_samples, exp.seed)
    if note:
        notes.append(note)
    folds = assign_folds(train, exp.k_folds, exp.fold_seed) if exp.mode in FOLD_MODES else None
    return ExperimentData(train=train.reset_index(drop=True), dev=frames["dev"], test=frames["test"],
                          folds=folds, notes=notes, paths=paths)


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


def write_experiment_files(path: Path, cfg: ResolvedConfig, data: ExperimentData, command_line: list[str]) -> None:
    (path / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    (path / "config.json").write_text(json.dumps(cfg.tree(), ensure_ascii=False, indent=1), encoding="utf-8")
    run = {"command_line": command_line, "created": time.time(), "data": data.paths, "notes": data.notes,
           "warnings": cfg.warnings}
    (path / "run.json").write_text(json.dumps(run, ensure_ascii=False, indent=1), encoding="utf-8")
    inputs = path / "inputs"
    inputs.mkdir(exist_ok=True)
    for split in ("train", "dev", "test"):
        getattr(data, split).to_parquet(inputs / f"{split}.parquet", index=False)
    cache = output_root(cfg) / ".augmentation"
    augmentation = {}
    if data.folds is not None:
        data.folds.to_csv(path / "folds.csv", index=False)
        from raysum.data import fold_split

        for fold in sorted(data.folds["fold"].unique()):
            train_df, heldout = fold_split(data.train, data.folds, int(fold))
            train_part, augmentation[f"fold{fold}"] = augment_training_part(_unit_frame(train_df), cfg, cache)
            train_part.to_parquet(inputs / f"fold{fold}_train.parquet", index=False)
            _unit_frame(heldout).to_parquet(inputs / f"fold{fold}_heldout.parquet", index=False)
    else:
        full, augmentation["full"] = augment_training_part(_unit_frame(data.train), cfg, cache)
        full.to_parquet(inputs / "full_train.parquet", index=False)
    (inputs / "augmentation.json").write_text(json.dumps(augmentation, indent=1), encoding="utf-8")
    _unit_frame(data.dev).to_parquet(inputs / "dev_units.parquet", index=False)
    data.test[["fname", "dialogue"]].to_parquet(inputs / "test_units.parquet", index=False)
    write_tta_inputs(inputs, cfg, {"train": data.train, "dev": data.dev, "test": data.test})
    if data.folds is not None:
        for fold in sorted(data.folds["fold"].unique()):
            heldout = data.folds.loc[data.folds["fold"] == fold, "fname"].tolist()
            write_fold_tta_inputs(inputs, cfg, int(fold), heldout)


def _unit_frame(df: pd.DataFrame) -> pd.DataFrame:
    """What a unit reads: fname, dialogue, summary (the first reference)."""
    return pd.DataFrame({"fname": df["fname"].astype(str), "dialogue": df["dialogue"].astype(str),
                         "summary": [refs[0] for refs in df["references"]]})


def unit_config(path: Path, cfg: ResolvedConfig, unit: Unit, baseline: bool) -> dict:
    """The plain dict a unit runs from (what Ray ships to the worker)."""
    from dataclasses import asdict

    inputs = path / "inputs"
    if unit.fold is None:
        train_path, eval_path, predict = inputs / "full_train.parquet", inputs / "dev_units.parquet", {}
    else:
        train_path = inputs / f"fold{unit.fold}_train.parquet"
        eval_path = inputs / f"fold{unit.fold}_heldout.parquet"
        predict = {"oof": str(eval_path)}
    predict.update({"dev": str(inputs / "dev_units.parquet"), "test": str(inputs / "test_units.parquet")})
    predict.update(tta_predict_paths(inputs, cfg, None if unit.fold is None else f"fold{unit.fold}"))
    return {
        "unit_dir": str(path / "units" / unit.model / unit.fold_label),
        "model": asdict(cfg.models[unit.model]),
        "fold": unit.fold,
        "seed": cfg.experiment.seed,
        "train_path": str(train_path),
        "eval_path": str(eval_path),
        "predict": predict,
        "baseline_splits": ["dev"] if baseline else [],
        "tokenizer_cache": str(output_root(cfg) / ".tokenizers"),
        "resume": True,
        "max_failures": cfg.experiment.max_failures,
        "tracking": list(cfg.experiment.tracking),
        "tracking_dir": str(tracking_dir(path, unit.model, unit.fold_label)),
    }


def ray_storage(path: Path, cfg: ResolvedConfig) -> str:
    """Ray Train's storage for this experiment's units: --storage_path/<experiment> (a path or
    URI, so experiments sharing a bucket never share run names), else <experiment>/ray."""
    root = cfg.experiment.storage_path
    if not root:
        return str(path / "ray")
    from raysum.storage import scheme

    if scheme(root) is None:
        return str(Path(root).resolve() / path.name)
    return f"{root.rstrip('/')}/{path.name}"  # a URI goes to Ray Train (pyarrow.fs) as it is


def unit_done(unit_dir: Path) -> bool:
    info = unit_dir / "unit.json"
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text()).get("status") == "done"
    except json.JSONDecodeError:
        return False


def load_resolved(path: Path) -> ResolvedConfig:
    """The resolved config an experiment directory was run with (from config.json)."""
    from raysum.config.resolve import config_from_tree

    file = Path(path) / "config.json"
    if not file.is_file():
        raise RaysumError(f"{path} is not a raysum experiment directory (no config.json)")
    return config_from_tree(json.loads(file.read_text(encoding="utf-8")))
