"""Experiment trackers of a unit: TensorBoard event files (default) and MLflow (optional).

A registry maps each tracker name to the Trainer callback that feeds it, so the unit
never branches on tracker names. TensorBoard writes one event directory per unit under
the experiment (`DIR/tensorboard/<model>_<fold>/`), so `tensorboard --logdir DIR` shows
every unit side by side; the driver later adds the unit's dev ROUGE to the same
directory (`log_unit_scores`). MLflow logs to `DIR/mlruns` unless `MLFLOW_TRACKING_URI`
says otherwise, one run per unit in an MLflow experiment named after the directory.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from raysum.experiment import layout

NONE = "none"
# Scores of the driver's Korean ROUGE that go to TensorBoard next to the training curves.
SCORE_KEYS = ("rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score")


def _tensorboard_callback(logging_dir: Path, run_name: str):
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()
    # The callback's own default is under the Trainer's output_dir (our resume/, deleted
    # when the unit is done); TENSORBOARD_LOGGING_DIR would be process-wide.
    callback.logging_dir = str(logging_dir)
    return callback


def _mlflow_callback(logging_dir: Path, run_name: str):
    from transformers.integrations import MLflowCallback

    experiment_dir = logging_dir.parent.parent  # logging_dir is DIR/tensorboard/<model>_<fold> (tracking_dir)
    os.environ.setdefault("MLFLOW_TRACKING_URI", (experiment_dir / "mlruns").as_uri())
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", experiment_dir.name)
    return MLflowCallback()


# name -> (callback factory, package that must be importable)
TRACKERS: dict[str, tuple[Callable, str]] = {
    "tensorboard": (_tensorboard_callback, "tensorboard"),
    "mlflow": (_mlflow_callback, "mlflow"),
}


def tracking_problems(names: list[str]) -> list[str]:
    """Unknown tracker names, `none` mixed with others (config problems, no imports)."""
    problems = [f"tracking {n!r} is unknown; choose from {', '.join(TRACKERS)} or {NONE}"
                for n in names if n not in TRACKERS and n != NONE]
    if NONE in names and len(names) > 1:
        problems.append(f"tracking {NONE} turns every tracker off; do not combine it with {', '.join(n for n in names if n != NONE)}")
    return problems


def check_trackers_installed(names: list[str]) -> list[str]:
    """Trackers whose package is missing, each with the command that installs it."""
    return [f"tracking {name} needs the {TRACKERS[name][1]} package: pip install {TRACKERS[name][1]}"
            for name in active(names) if importlib.util.find_spec(TRACKERS[name][1]) is None]


def active(names: list[str] | None) -> list[str]:
    return [n for n in (names or []) if n in TRACKERS]


def tracking_dir(experiment_dir: Path, model: str, fold_label: str) -> Path:
    """Where one unit's TensorBoard events go."""
    return Path(experiment_dir) / layout.TRACKING_DIR / f"{model}_{fold_label}"


def tracking_callbacks(names: list[str] | None, logging_dir: str | Path | None, run_name: str) -> list:
    """One Trainer callback per active tracker (none without a logging directory)."""
    if logging_dir is None:
        return []
    return [TRACKERS[name][0](Path(logging_dir), run_name) for name in active(names)]


def log_unit_scores(logging_dir: str | Path, scores: dict, step: int) -> None:
    """A unit's OOF and dev ROUGE (scored after training, in the driver) as scalars
    `oof/<metric>` and `dev/<metric>` at the unit's last step."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(logging_dir))
    try:
        for split in ("oof", "dev"):
            for key in SCORE_KEYS:
                if scores.get(split) and key in scores[split]:
                    writer.add_scalar(f"{split}/{key}", scores[split][key], step)
    finally:
        writer.close()
