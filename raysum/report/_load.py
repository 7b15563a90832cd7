"""An experiment directory read back: the one place the report, its plots and its checks
get their numbers from. Nothing here computes a score the pipeline already wrote; what is
missing (a failed unit, an unfinished experiment) stays missing rather than invented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from raysum.errors import RaysumError
from raysum.experiment import Experiment, layout, unit_selection


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
        return layout.fold_of(self.fold_label)

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
    def selection(self) -> dict:
        """Which epoch's weights the unit kept and why training ended ({} when not recorded)."""
        return unit_selection(self.info)

    @property
    def samples_per_s(self) -> float | None:
        """Training throughput: training examples x epochs trained (fewer than `epochs` after an
        early stop) / training seconds (unit.json)."""
        info = self.info
        epochs = info.get("epochs_trained") or info.get("epochs")
        if not info.get("train_s") or info.get("train_samples") is None or epochs is None:
            return None
        return info["train_samples"] * epochs / info["train_s"]

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
    def experiment(self) -> Experiment:
        return Experiment(self.path)

    @property
    def notes(self) -> list[str]:
        """What reading the files left out (a damaged run.json or unit.json, a torn metrics line)."""
        return self.experiment.notes

    @cached_property
    def candidates(self) -> pd.DataFrame | None:
        return self.experiment.candidates() if self.experiment.has_candidates() else None

    @cached_property
    def folds(self) -> pd.DataFrame | None:
        return self.experiment.folds()

    @cached_property
    def augmentation(self) -> dict:
        return self.experiment.augmentation()

    def inputs(self, split: str) -> pd.DataFrame | None:
        """The data the experiment ran on (train, dev, test)."""
        return self.experiment.read_input(split)

    @cached_property
    def _references(self) -> dict[str, dict[str, list[str]]]:
        return self.experiment.references()

    def references(self, split: str) -> dict[str, list[str]]:
        """fname -> references of a candidates split (oof reads the training data)."""
        return self._references.get(split, {})

    @cached_property
    def searches(self) -> tuple[list, str | None]:
        """The experiment's Tune searches (``raysum.tune.analysis.Search``), and why they
        could not be read (None: read, or none)."""
        if not self.experiment.tune_dir.is_dir():
            return [], None
        from raysum.tune.analysis import experiment_searches

        try:
            return experiment_searches(self.path), None
        except RaysumError as exc:
            return [], str(exc)

    def unit(self, name: str) -> UnitRecord | None:
        return next((u for u in self.units if u.name == name), None)


def load_experiment(path: str | Path) -> ExperimentRecord:
    """Read an experiment directory (config.json is required, everything else optional)."""
    exp = Experiment(Path(path).resolve())
    record = ExperimentRecord(path=exp.path, config=exp.config_tree(), run=exp.run_info(), scores=exp.scores())
    record.experiment = exp  # one reader: its notes are the report's
    for model in record.models:
        for label in exp.unit_labels(model):
            unit = exp.unit(model, label)
            record.units.append(UnitRecord(model, label, unit.info(), pd.DataFrame(unit.metrics())))
    return record
