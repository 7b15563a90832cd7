"""One builder for a fake experiment directory: tests hand it what the pipeline would have
produced and it writes it through raysum's own writer (raysum.experiment.Experiment), so
a fake directory has exactly the layout the stages read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from raysum.experiment import Experiment, layout, write_json


def write_experiment(path: Path, *, config_tree: dict, inputs: dict[str, pd.DataFrame],
                     candidates: pd.DataFrame | None = None, scores: dict | None = None, run: dict | None = None,
                     folds: pd.DataFrame | None = None, augmentation: dict | None = None,
                     units: dict[tuple[str, str], tuple[dict, list[dict]]] | None = None) -> Path:
    """``inputs``: split -> frame (fname, dialogue, references[, topic]); ``units``:
    (model, fold label) -> (unit.json content, metrics rows). Returns ``path``."""
    exp = Experiment(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / layout.CONFIG_JSON, config_tree)
    if run is not None:
        exp.write_run_info(run)
    for split, frame in inputs.items():
        exp.write_input(split, frame)
    if folds is not None:
        exp.write_folds(folds)
    if augmentation is not None:
        exp.write_augmentation(augmentation)
    for (model, label), (info, metrics) in (units or {}).items():
        unit = exp.unit(model, label)
        unit.path.mkdir(parents=True, exist_ok=True)
        unit.write_info(info)
        unit.metrics_file.write_text("".join(json.dumps(row) + "\n" for row in metrics), encoding="utf-8")
    if candidates is not None:
        exp.write_candidates(candidates)
    if scores is not None:
        exp.write_scores(scores)
    return path
