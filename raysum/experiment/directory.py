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

from raysum.errors import ConfigError, RaysumError
from raysum.experiment import candidates as candidates_table
from raysum.experiment import layout
from raysum.experiment.files import (
    RESTORE, damaged, read_csv, read_json, read_jsonl, read_parquet, write_csv, write_json, write_keeping_previous,
    write_parquet,
)
from raysum.storage import write_text_atomic


def settings_hash(settings: dict) -> str:
    """A short fingerprint of a unit's settings (sorted JSON, SHA-256)."""
    import hashlib

    text = json.dumps(settings, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# unit.json: which epoch's weights a unit kept (`select_best`, the epoch, its step), how many
# epochs it trained and whether early stopping ended it, and why.
UNIT_SELECTION_KEYS = ("selected_by", "best_epoch", "best_step", "epochs_trained", "stopped_early", "stop_reason")


def unit_selection(info: dict) -> dict:
    """The selection keys of a unit.json ({} for a unit from before raysum recorded them)."""
    return {k: info[k] for k in UNIT_SELECTION_KEYS if k in info}


class UnitFiles:
    """One unit's directory, ``units/<model>/<fold label>/``."""

    def __init__(self, path: str | Path, notes: list[str] | None = None):
        self.path = Path(path)
        # What reading its files left out or will make again (a damaged unit.json, a torn
        # metrics line, a damaged baseline), for the command to print.
        self.notes = [] if notes is None else notes

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

    @property
    def checkpoint_dir(self) -> Path:
        """The trained weights (what generating again after training loads)."""
        return self.path / layout.UNIT_CHECKPOINT_DIR

    def info(self) -> dict:
        """unit.json ({} before the unit finished). A damaged one reads as {} with a note:
        the unit counts as unfinished and trains again."""
        return read_json(self.info_file, {}, notes=self.notes,
                         action=f"unit {self._name} counts as unfinished and trains again on the next resume")

    @property
    def _name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    def done(self) -> bool:
        return self.info().get("status") == "done"

    def write_info(self, summary: dict) -> Path:
        return write_text_atomic(self.info_file, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")

    def metrics(self) -> list[dict]:
        """metrics.jsonl; a line cut short (the unit was writing it) is left out with a note."""
        return read_jsonl(self.metrics_file, self.notes)

    def predictions(self) -> pd.DataFrame:
        if not self.predictions_file.is_file():
            raise RaysumError(f"unit {self.path} has no predictions ({self.predictions_file})")
        return candidates_table.read(self.predictions_file, action=(
            f"to generate them again, delete {self.info_file} and resume the experiment (the unit trains again)"))

    def write_predictions(self, frame: pd.DataFrame) -> Path:
        return write_parquet(self.predictions_file, frame)

    def baseline(self) -> pd.DataFrame | None:
        """baseline.parquet (the untrained model's summaries); None when there is none. A
        damaged one is None with a note: a unit generates it again when it trains."""
        if not self.baseline_file.is_file():
            return None
        return read_parquet(self.baseline_file, required=("split", "fname", "text"), notes=self.notes,
                            action="the untrained model's score is left out; it is generated again when this "
                                   "unit trains again")

    def write_baseline(self, frame: pd.DataFrame) -> Path:
        return write_parquet(self.baseline_file, frame)

    def record_attempt(self, node_id: str, started_at: float, settings: dict | None = None) -> None:
        """One line per start of the unit's workers: where the unit ran (also while it runs) and
        the settings it trains with (a resume checks them against the config)."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"node_id": node_id, "started_at": started_at,
                  **({"settings": settings} if settings is not None else {})}
        with self.attempts_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def recorded_settings(self) -> dict | None:
        """The settings the unit was trained with (unit.json), or is training with (its last
        start); None when nothing was recorded (not started, or an older experiment)."""
        try:
            info = self.info()
        except RaysumError:
            info = {}  # a damaged unit.json: the unit runs again
        if info.get("status") == "done":
            return info.get("settings")
        starts = [row for row in read_jsonl(self.attempts_file) if "settings" in row]
        return starts[-1]["settings"] if starts else None

    def started(self) -> bool:
        return self.metrics_file.is_file() or self.attempts_file.is_file()


class Experiment:
    """An experiment directory: paths, readers and (atomic) writers of its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # What reading its files left out or will make again (a damaged unit.json, run.json,
        # baseline, a torn metrics line), for the command to print.
        self.notes: list[str] = []

    def __repr__(self) -> str:
        return f"Experiment({str(self.path)!r})"

    @property
    def _resume(self) -> str:
        return f"rebuild it with `raysum train --resume {self.path}`"

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
        return UnitFiles(self.units_dir / model / label, self.notes)

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

    @property
    def finalize_dir(self) -> Path:
        """Where ``raysum finalize`` puts the test candidates it generates until the units' files hold them."""
        return self.path / layout.FINALIZE_DIR

    # ------------------------------------------------------------------ config and run

    def is_experiment(self) -> bool:
        return (self.path / layout.CONFIG_JSON).is_file()

    def config_tree(self) -> dict:
        """config.json: every leaf {value, source}; checked (a tree that is not one, or has
        settings this version does not know, is an error naming the file)."""
        return self._config()[0]

    def resolved(self):
        """The resolved config the experiment was run with (from config.json)."""
        return self._config()[1]

    def _config(self):
        from raysum.config.resolve import config_from_tree

        file = self.path / layout.CONFIG_JSON
        tree = read_json(file)
        if tree is None:
            raise RaysumError(f"{self.path} is not a raysum experiment directory (no {layout.CONFIG_JSON})")
        try:
            return tree, config_from_tree(tree)
        except ConfigError as exc:
            more = f"; and {len(exc.problems) - 5} more" if len(exc.problems) > 5 else ""
            raise damaged(file, f"not a raysum config of this version: {'; '.join(exc.problems[:5])}{more}",
                          RESTORE) from None

    def write_config(self, cfg) -> None:
        write_text_atomic(self.path / layout.CONFIG_YAML, cfg.to_yaml())
        write_json(self.path / layout.CONFIG_JSON, cfg.tree())

    def run_info(self) -> dict:
        """run.json ({} when missing; damaged: {} with a note, it only describes the run)."""
        return read_json(self.path / layout.RUN_JSON, {}, notes=self.notes,
                         action="its command line and timings are left out (the next run writes a new one)")

    def write_run_info(self, run: dict) -> None:
        write_json(self.path / layout.RUN_JSON, run)

    # ------------------------------------------------------------------ data

    def write_input(self, name: str, frame: pd.DataFrame) -> Path:
        return write_parquet(self.input_file(name), frame)

    def read_input(self, name: str, columns: list[str] | None = None,
                   required: tuple[str, ...] = ("fname",)) -> pd.DataFrame | None:
        """``inputs/<name>.parquet`` (None when missing); damaged: an error naming it."""
        return self.read_table(self.input_file(name), columns, required)

    def read_table(self, file: Path, columns: list[str] | None = None,
                   required: tuple[str, ...] = ()) -> pd.DataFrame | None:
        """A Parquet file the experiment wrote when it started (an input, a TTA variant);
        None when missing; damaged: an error naming it (nothing makes it again)."""
        return read_parquet(file, columns, required=required, action=RESTORE) if file.is_file() else None

    def references(self) -> dict[str, dict[str, list[str]]]:
        """{oof, dev, test: fname -> references} (oof reads the training data)."""
        refs = {}
        for split, name in candidates_table.SOURCE_SPLIT.items():
            frame = self.read_input(name, required=("fname", "references"))
            refs[split] = {} if frame is None else {
                f: list(r) for f, r in zip(frame["fname"], frame["references"]) if len(r)}
        return refs

    def dialogues(self) -> dict[str, dict[str, str]]:
        """{oof, dev, test: fname -> dialogue} (oof reads the training data): an fname may
        name different dialogues in different splits."""
        out = {}
        for split, name in candidates_table.SOURCE_SPLIT.items():
            frame = self.read_input(name, columns=["fname", "dialogue"], required=("fname", "dialogue"))
            out[split] = {} if frame is None else dict(zip(frame["fname"], frame["dialogue"]))
        return out

    def folds(self) -> pd.DataFrame | None:
        file = self.path / layout.FOLDS_CSV
        return read_csv(file, required=("fname", "fold")) if file.is_file() else None

    def write_folds(self, folds: pd.DataFrame) -> None:
        write_csv(self.path / layout.FOLDS_CSV, folds)

    def augmentation(self) -> dict:
        """inputs/augmentation.json ({} when missing; damaged: {} with a note, it only counts rows)."""
        return read_json(self.inputs_dir / layout.AUGMENTATION_JSON, {}, notes=self.notes,
                         action="the augmentation counts are left out")

    def write_augmentation(self, info: dict) -> None:
        write_json(self.inputs_dir / layout.AUGMENTATION_JSON, info)

    def label_maps(self, folder: Path | None = None) -> pd.DataFrame | None:
        """fname, tta, label_map (JSON: variant speaker -> original speaker) of every TTA variant."""
        file = self.label_maps_file(folder)
        frame = self.read_table(file, required=("fname", "tta", "label_map"))
        if frame is not None:
            try:
                if not all(isinstance(json.loads(m), dict) for m in frame["label_map"]):
                    raise ValueError("a label map that is not a mapping")
            except (TypeError, ValueError) as exc:
                raise damaged(file, f"a label_map is not a JSON mapping: {exc}", RESTORE) from None
        return frame

    # ------------------------------------------------------------------ results

    def has_candidates(self) -> bool:
        return self.candidates_file.is_file()

    def candidates(self) -> pd.DataFrame:
        if not self.has_candidates():
            raise RaysumError(f"{self.path} has no {layout.CANDIDATES}: finish the experiment first "
                              f"(raysum train --resume {self.path})")
        return candidates_table.read(self.candidates_file, action=self._resume)

    def write_candidates(self, frame: pd.DataFrame, path: Path | None = None) -> Path:
        return write_parquet(path or self.candidates_file, frame)

    def has_scores(self) -> bool:
        return self.scores_file.is_file()

    def scores(self) -> dict:
        """scores.json ({} before scoring)."""
        return read_json(self.scores_file, {}, action=self._resume)

    def write_scores(self, scores: dict) -> None:
        write_json(self.scores_file, scores)

    def write_submission(self, frame: pd.DataFrame, path: Path | None = None, *, force: bool = False) -> Path | None:
        """submission.csv (or ``path``). A previous, different submission is kept beside it
        under a timestamped name unless ``force``; returns that kept file (or None)."""
        data = frame.to_csv(index=False).encode("utf-8")
        return write_keeping_previous(path or self.submission_file, data, force=force)
