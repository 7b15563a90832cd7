"""Reading and writing an experiment directory: the one object every stage uses.

    exp = Experiment(path)
    cfg = exp.resolved()                     # the config it was run with
    table = exp.candidates()                 # checked against the candidates schema
    exp.write_scores(scores)                 # every write: temp file + rename
    unit = exp.unit("kobart", 0)             # units/kobart/fold0/: unit.json, metrics.jsonl, ...

The layout (file names) is :mod:`raysum.experiment.layout`; nothing else spells it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from raysum.errors import RaysumError
from raysum.experiment import candidates as candidates_table
from raysum.experiment import layout
from raysum.storage import write_atomic, write_text_atomic


def write_json(path: Path, data, **dumps) -> Path:
    """JSON (UTF-8, indented) written atomically."""
    dumps.setdefault("indent", 1)
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, **dumps))


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_parquet(temp, index=False))


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_csv(temp, index=False))


def read_json(path: Path, default=None):
    """A JSON file's content; ``default`` when it does not exist; a clear error when it is damaged."""
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RaysumError(f"{path} is damaged (not valid JSON: {exc})") from exc


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; a torn last line (a write cut short) is left out."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class UnitFiles:
    """One unit's directory, ``units/<model>/<fold label>/``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def info_file(self) -> Path:
        return self.path / layout.UNIT_JSON

    @property
    def metrics_file(self) -> Path:
        return self.path / layout.METRICS_JSONL

    @property
    def predictions_file(self) -> Path:
        return self.path / layout.UNIT_PREDICTIONS

    @property
    def baseline_file(self) -> Path:
        return self.path / layout.BASELINE

    @property
    def attempts_file(self) -> Path:
        return self.path / layout.ATTEMPTS_JSONL

    def info(self) -> dict:
        """unit.json ({} before the unit finished)."""
        return read_json(self.info_file, {}) or {}

    def done(self) -> bool:
        try:
            return self.info().get("status") == "done"
        except RaysumError:
            return False  # a damaged summary: the unit runs again

    def write_info(self, summary: dict) -> Path:
        return write_text_atomic(self.info_file, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_file)

    def predictions(self) -> pd.DataFrame:
        if not self.predictions_file.is_file():
            raise RaysumError(f"unit {self.path} has no predictions ({self.predictions_file})")
        return candidates_table.read(self.predictions_file)

    def write_predictions(self, frame: pd.DataFrame) -> Path:
        return write_parquet(self.predictions_file, frame)

    def baseline(self) -> pd.DataFrame | None:
        return pd.read_parquet(self.baseline_file) if self.baseline_file.is_file() else None

    def write_baseline(self, frame: pd.DataFrame) -> Path:
        return write_parquet(self.baseline_file, frame)

    def record_attempt(self, node_id: str, started_at: float) -> None:
        """One line per start of the unit's workers: where the unit ran, also while it runs."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self.attempts_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"node_id": node_id, "started_at": started_at}) + "\n")

    def started(self) -> bool:
        return self.metrics_file.is_file() or self.attempts_file.is_file()


class Experiment:
    """An experiment directory: paths, readers and (atomic) writers of its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Experiment({str(self.path)!r})"

    # ------------------------------------------------------------------ paths

    @property
    def inputs_dir(self) -> Path:
        return self.path / layout.INPUTS_DIR

    @property
    def units_dir(self) -> Path:
        return self.path / layout.UNITS_DIR

    @property
    def tune_dir(self) -> Path:
        return self.path / layout.TUNE_DIR

    @property
    def analysis_dir(self) -> Path:
        return self.path / layout.ANALYSIS_DIR

    @property
    def ray_dir(self) -> Path:
        return self.path / layout.RAY_DIR

    @property
    def candidates_file(self) -> Path:
        return self.path / layout.CANDIDATES

    @property
    def scores_file(self) -> Path:
        return self.path / layout.SCORES

    @property
    def submission_file(self) -> Path:
        return self.path / layout.SUBMISSION

    @property
    def report_file(self) -> Path:
        return self.path / layout.REPORT_MD

    @property
    def report_html_file(self) -> Path:
        return self.path / layout.REPORT_HTML

    def unit(self, model: str, fold: int | str | None) -> UnitFiles:
        """A unit's files by model and fold (a number, None for ``full``, or a fold label)."""
        label = fold if isinstance(fold, str) else layout.fold_label(fold)
        return UnitFiles(self.units_dir / model / label)

    def unit_labels(self, model: str) -> list[str]:
        """The fold labels of a model's unit directories: fold0, fold1, ... then the rest."""
        folder = self.units_dir / model
        if not folder.is_dir():
            return []
        labels = [d.name for d in folder.iterdir() if d.is_dir()]
        return sorted(labels, key=lambda x: (0, layout.fold_of(x)) if layout.fold_of(x) is not None else (1, 0))

    def input_file(self, name: str) -> Path:
        """``inputs/<name>.parquet``: a split as loaded (train/dev/test) or a unit's input."""
        return self.inputs_dir / f"{name}.parquet"

    def fold_input(self, fold: int | None, part: str) -> Path:
        """A unit's training part (``train``) or held-out part (``heldout``, folds only)."""
        return self.input_file(f"{layout.fold_label(fold)}_{part}")

    def tta_input(self, name: str, variant: str, folder: Path | None = None) -> Path:
        """``inputs/tta/<name>_<variant>.parquet`` (``folder``: a prediction's own inputs)."""
        return (folder or self.inputs_dir) / layout.TTA_DIR / f"{name}_{variant}.parquet"

    def label_maps_file(self, folder: Path | None = None) -> Path:
        return (folder or self.inputs_dir) / layout.LABEL_MAPS

    def prediction_dir(self, name: str) -> Path:
        return self.path / layout.PREDICTIONS_DIR / name

    # ------------------------------------------------------------------ config and run

    def is_experiment(self) -> bool:
        return (self.path / layout.CONFIG_JSON).is_file()

    def config_tree(self) -> dict:
        """config.json: every leaf {value, source}."""
        tree = read_json(self.path / layout.CONFIG_JSON)
        if not tree:
            raise RaysumError(f"{self.path} is not a raysum experiment directory (no {layout.CONFIG_JSON})")
        return tree

    def resolved(self):
        """The resolved config the experiment was run with (from config.json)."""
        from raysum.config.resolve import config_from_tree

        return config_from_tree(self.config_tree())

    def write_config(self, cfg) -> None:
        write_text_atomic(self.path / layout.CONFIG_YAML, cfg.to_yaml())
        write_json(self.path / layout.CONFIG_JSON, cfg.tree())

    def run_info(self) -> dict:
        return read_json(self.path / layout.RUN_JSON, {}) or {}

    def write_run_info(self, run: dict) -> None:
        write_json(self.path / layout.RUN_JSON, run)

    # ------------------------------------------------------------------ data

    def write_input(self, name: str, frame: pd.DataFrame) -> Path:
        return write_parquet(self.input_file(name), frame)

    def read_input(self, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
        file = self.input_file(name)
        return pd.read_parquet(file, columns=columns) if file.is_file() else None

    def references(self) -> dict[str, dict[str, list[str]]]:
        """{oof, dev, test: fname -> references} (oof reads the training data)."""
        refs = {}
        for split, name in (("oof", "train"), ("dev", "dev"), ("test", "test")):
            frame = self.read_input(name)
            refs[split] = {} if frame is None else {
                f: list(r) for f, r in zip(frame["fname"], frame["references"]) if len(r)}
        return refs

    def dialogues(self) -> dict[str, str]:
        """fname -> dialogue of every split the experiment ran on."""
        out = {}
        for name in layout.DATA_SPLITS:
            frame = self.read_input(name, columns=["fname", "dialogue"])
            if frame is not None:
                out.update(zip(frame["fname"], frame["dialogue"]))
        return out

    def folds(self) -> pd.DataFrame | None:
        file = self.path / layout.FOLDS_CSV
        return pd.read_csv(file) if file.is_file() else None

    def write_folds(self, folds: pd.DataFrame) -> None:
        write_csv(self.path / layout.FOLDS_CSV, folds)

    def augmentation(self) -> dict:
        return read_json(self.inputs_dir / layout.AUGMENTATION_JSON, {}) or {}

    def write_augmentation(self, info: dict) -> None:
        write_json(self.inputs_dir / layout.AUGMENTATION_JSON, info)

    def label_maps(self, folder: Path | None = None) -> pd.DataFrame | None:
        file = self.label_maps_file(folder)
        return pd.read_parquet(file) if file.is_file() else None

    # ------------------------------------------------------------------ results

    def has_candidates(self) -> bool:
        return self.candidates_file.is_file()

    def candidates(self) -> pd.DataFrame:
        if not self.has_candidates():
            raise RaysumError(f"{self.path} has no {layout.CANDIDATES}: finish the experiment first "
                              f"(raysum train --resume {self.path})")
        return candidates_table.read(self.candidates_file)

    def write_candidates(self, frame: pd.DataFrame, path: Path | None = None) -> Path:
        return write_parquet(path or self.candidates_file, frame)

    def has_scores(self) -> bool:
        return self.scores_file.is_file()

    def scores(self) -> dict:
        """scores.json ({} before scoring)."""
        return read_json(self.scores_file, {}) or {}

    def write_scores(self, scores: dict) -> None:
        write_json(self.scores_file, scores)

    def write_submission(self, frame: pd.DataFrame, path: Path | None = None) -> Path:
        return write_csv(path or self.submission_file, frame)
