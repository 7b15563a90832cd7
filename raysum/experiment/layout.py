"""The experiment directory's layout: every file and folder name, defined once.

    <output_dir>/<YYYYMMDD_HHMMSS>_<experiment_name>/
        config.yaml  config.json  run.json  folds.csv
        inputs/{train,dev,test}.parquet  inputs/fold<k>_{train,heldout}.parquet  inputs/full_train.parquet
        inputs/{dev,test}_units.parquet  inputs/augmentation.json
        inputs/dev_sample.parquet  inputs/fold<k>_oof_sample.parquet   (max_eval_samples)
        inputs/encoding_rows.parquet
        inputs/tta/<split>_<variant>.parquet  inputs/tta_label_maps.parquet
        units/<model>/fold<k>/   (or units/<model>/full without folds)
            unit.json  metrics.jsonl  predictions.parquet  baseline.parquet  attempts.jsonl
        candidates.parquet  scores.json  submission.csv  report.md  report.html  plots/
        submission.<YYYYMMDD-HHMMSS>.csv   (a replaced submission, kept; see kept_name)
        predictions/<file>/      (raysum predict)
        finalize/                (raysum finalize: test candidates being generated, merged into the units')
        tune/                    (searches)  analysis/  (raysum analyze)
        ray/                     (Ray Train's storage, unless --storage_path)
        tensorboard/<model>_<fold label>/   (TensorBoard events per unit)

Every other package asks :class:`raysum.experiment.Experiment` for a path or a table
instead of spelling these names.
"""

from __future__ import annotations

# Experiment level.
CONFIG_YAML = "config.yaml"
CONFIG_JSON = "config.json"
RUN_JSON = "run.json"
LOCK_FILE = ".raysum.lock"  # who writes the experiment now (raysum.experiment.lock)
FOLDS_CSV = "folds.csv"
CANDIDATES = "candidates.parquet"
SCORES = "scores.json"
SUBMISSION = "submission.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
INPUTS_DIR = "inputs"
UNITS_DIR = "units"
REPLACED_DIR = "replaced"  # replaced/<time>/<model>/<fold label>/: units a resume retrained (--retrain_changed)
PREDICTIONS_DIR = "predictions"
FINALIZE_DIR = "finalize"  # raysum finalize's scratch: test candidates generated, until the units' files hold them
TUNE_DIR = "tune"
ANALYSIS_DIR = "analysis"
RAY_DIR = "ray"
TRACKING_DIR = "tensorboard"  # tensorboard/<model>_<fold label>/: one unit's event files

# inputs/
AUGMENTATION_JSON = "augmentation.json"
LABEL_MAPS = "tta_label_maps.parquet"
TTA_DIR = "tta"
DATA_SPLITS = ("train", "dev", "test")  # inputs/<split>.parquet: the data as loaded (with references)
DEV_UNITS = "dev_units"  # inputs/<name>.parquet: what every unit generates for (fname, dialogue[, summary])
TEST_UNITS = "test_units"
DEV_SAMPLE = "dev_sample"  # max_eval_samples: the dev dialogues every unit generates for
# inputs/<name>.parquet: every distinct (dialogue, summary) a unit trains or evaluates on, encoded
# once per tokenizer and encoding settings (raysum.training.encoding)
ENCODING_ROWS = "encoding_rows"
OOF_SAMPLE = "oof_sample"  # fold<k>_oof_sample: the held-out dialogues the fold's units generate for (ditto)

# units/<model>/<fold label>/
UNIT_JSON = "unit.json"
METRICS_JSONL = "metrics.jsonl"
UNIT_PREDICTIONS = "predictions.parquet"
BASELINE = "baseline.parquet"
ATTEMPTS_JSONL = "attempts.jsonl"
UNIT_CHECKPOINT_DIR = "checkpoint"  # the trained weights (adapters for LoRA)
SHOT_POOL = "few_shot_pool.parquet"  # in checkpoint/: the training examples few-shot prompts pick from
UNIT_RESUME_DIR = "resume"  # epoch checkpoints while training, removed when the unit is done
# In each resume/checkpoint-<step>/: written once the Trainer's save of it finished; a
# checkpoint without it (the command was killed while saving) is never resumed from.
CHECKPOINT_SEAL = "raysum_complete.json"
FULL_FOLD = "full"  # the fold label of a unit trained on all training data
FOLD_PREFIX = "fold"

# predictions/<file>/ (raysum predict)
PREDICT_INPUT = "input.parquet"

# tune/
TRAINING_SEARCH_JSON = "training_search.json"
SPACE_YAML = "space.yaml"
TRAINING_BEST_JSON = "training_best.json"
ENSEMBLE_BEST_JSON = "ensemble_best.json"
DECODING_BEST_JSON = "decoding_best.json"
TUNE_UNITS_DIR = UNITS_DIR
TUNE_TRAIN_RUNS_DIR = "train_runs"

# analysis/
TRIALS_CSV = "trials.csv"
BEST_CONFIG_YAML = "best_config.yaml"

# A replaced file a user keeps (a submission) stays beside it as <stem>.<when it was written><suffix>.
KEPT_STAMP = "%Y%m%d-%H%M%S"


def fold_label(fold: int | None) -> str:
    """``fold<k>``, or ``full`` for a unit trained on all training data."""
    return FULL_FOLD if fold is None else f"{FOLD_PREFIX}{fold}"


def fold_of(label: str) -> int | None:
    """The fold number of a fold label (None for ``full`` or anything else)."""
    rest = label[len(FOLD_PREFIX):]
    return int(rest) if label.startswith(FOLD_PREFIX) and rest.isdigit() else None


def kept_name(name: str, written: float, number: int = 1) -> str:
    """The name a previous version of ``name`` is kept under: ``submission.20261203-101500.csv``
    (written then, local time); ``number`` 2, 3, ... for versions written in the same second."""
    import time

    stem, dot, suffix = name.rpartition(".")
    if not stem:
        stem, dot, suffix = name, "", ""
    stamp = time.strftime(KEPT_STAMP, time.localtime(written)) + (f"-{number}" if number > 1 else "")
    return f"{stem}.{stamp}{dot}{suffix}"
