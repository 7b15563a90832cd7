"""An experiment directory read back: the one place the report, its plots and its checks
get their numbers from. Nothing here computes a score the pipeline already wrote; what is
missing (a failed unit, an unfinished experiment) stays missing rather than invented.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from raysum.errors import RaysumError

FOLD_PREFIX = "fold"


@dataclass
class UnitRecord:
    """One (model, fold) unit as its directory shows it."""

    model: str
    fold_label: str
    info: dict  # unit.json ({} when the unit did not finish)
    metrics: pd.DataFrame  # metrics.jsonl, one row per logging step or evaluation

    @property
    def name(self) -> str:
        return f"{self.model}/{self.fold_label}"

    @property
    def fold(self) -> int | None:
        return int(self.fold_label[len(FOLD_PREFIX):]) if self.fold_label.startswith(FOLD_PREFIX) else None

    @property
    def done(self) -> bool:
        return self.info.get("status") == "done"

    @property
    def train_rows(self) -> pd.DataFrame:
        return self.metrics[self.metrics["loss"].notna()] if "loss" in self.metrics else self.metrics.iloc[0:0]

    @property
    def eval_rows(self) -> pd.DataFrame:
        return self.metrics[self.metrics["eval_loss"].notna()] if "eval_loss" in self.metrics else self.metrics.iloc[0:0]

    @property
    def samples_per_s(self) -> float | None:
        """Training throughput: training examples x epochs / training seconds (unit.json)."""
        info = self.info
        if not info.get("train_s") or info.get("train_samples") is None or info.get("epochs") is None:
            return None
        return info["train_samples"] * info["epochs"] / info["train_s"]

    @property
    def effective_batch_size(self) -> int | None:
        """What training actually used (metrics.jsonl), not what was asked for."""
        rows = self.train_rows
        if rows.empty or "effective_batch_size" not in rows:
            return None
        return int(rows["effective_batch_size"].iloc[-1])


@dataclass
class ExperimentRecord:
    path: Path
    config: dict  # config.json: every leaf {value, source}
    run: dict  # run.json
    scores: dict  # scores.json ({} before scoring)
    units: list[UnitRecord] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return list(self.config.get("models", {}))

    def setting(self, key: str):
        """A global setting's value."""
        return self.config[key]["value"]

    def model_setting(self, model: str, key: str):
        node = self.config["models"][model]
        for part in key.split("."):
            node = node[part]
        return node["value"]

    @property
    def tokenizer(self) -> str:
        return self.scores.get("tokenizer", "kiwi")

    @property
    def has_folds(self) -> bool:
        return any(u.fold is not None for u in self.units)

    @cached_property
    def candidates(self) -> pd.DataFrame | None:
        file = self.path / "candidates.parquet"
        return pd.read_parquet(file) if file.is_file() else None

    @cached_property
    def folds(self) -> pd.DataFrame | None:
        file = self.path / "folds.csv"
        return pd.read_csv(file) if file.is_file() else None

    @cached_property
    def augmentation(self) -> dict:
        file = self.path / "inputs" / "augmentation.json"
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}

    def inputs(self, split: str) -> pd.DataFrame | None:
        """The data the experiment ran on: inputs/<train|dev|test>.parquet."""
        file = self.path / "inputs" / f"{split}.parquet"
        return pd.read_parquet(file) if file.is_file() else None

    def references(self, split: str) -> dict[str, list[str]]:
        """fname -> references of a candidates split (oof reads the training data)."""
        frame = self.inputs("train" if split == "oof" else split)
        if frame is None:
            return {}
        return {f: list(r) for f, r in zip(frame["fname"], frame["references"]) if len(r)}

    def unit(self, name: str) -> UnitRecord | None:
        return next((u for u in self.units if u.name == name), None)


def _read_json(file: Path) -> dict:
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def _read_metrics(file: Path) -> pd.DataFrame:
    rows = []
    if file.is_file():
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return pd.DataFrame(rows)


def _fold_order(label: str) -> tuple[int, int]:
    return (0, int(label[len(FOLD_PREFIX):])) if label.startswith(FOLD_PREFIX) and label[len(FOLD_PREFIX):].isdigit() \
        else (1, 0)


def load_experiment(path: str | Path) -> ExperimentRecord:
    """Read an experiment directory (config.json is required, everything else optional)."""
    path = Path(path).resolve()
    config = _read_json(path / "config.json")
    if not config:
        raise RaysumError(f"{path} is not a raysum experiment directory (no config.json)")
    record = ExperimentRecord(path=path, config=config, run=_read_json(path / "run.json"),
                              scores=_read_json(path / "scores.json"))
    for model in record.models:
        model_dir = path / "units" / model
        labels = sorted((d.name for d in model_dir.iterdir() if d.is_dir()), key=_fold_order) \
            if model_dir.is_dir() else []
        for label in labels:
            unit_dir = model_dir / label
            record.units.append(UnitRecord(model, label, _read_json(unit_dir / "unit.json"),
                                           _read_metrics(unit_dir / "metrics.jsonl")))
    return record
