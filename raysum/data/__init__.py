"""Datasets: loading (CSV/JSONL), the data check, seeded sampling and k-fold assignment.

    df = load_dataset("train.csv")            # fname, dialogue, references, topic
    check = check_dataset("train.csv")        # errors, warnings, stats
    errors, notes = check_splits({"train": {fname: dialogue}, "dev": ..., "test": ...})
    folds = assign_folds(df, k=5, seed=42)    # fname, fold
    train_df, heldout_df = fold_split(df, folds, fold=0)
"""

from raysum.data._check import (
    MAX_DIALOGUE_CHARS,
    MAX_DIALOGUE_TURNS,
    MIN_DIALOGUE_TURNS,
    DataCheck,
    Problem,
    check_splits,
    format_check,
    print_check,
)
from raysum.data._folds import assign_folds, fold_split, sample_rows
from raysum.data._load import FORMATS, SPLITS, bundled_data, check_dataset, load_dataset
from raysum.data._tags import (
    KNOWN_TAGS,
    MASK_TAGS,
    SPEAKER_TAGS,
    TAG_PATTERN,
    TURN_PATTERN,
    split_turns,
    turn_speaker,
    unusual_tags,
)

__all__ = [
    "FORMATS",
    "KNOWN_TAGS",
    "MASK_TAGS",
    "MAX_DIALOGUE_CHARS",
    "MAX_DIALOGUE_TURNS",
    "MIN_DIALOGUE_TURNS",
    "SPEAKER_TAGS",
    "SPLITS",
    "TAG_PATTERN",
    "TURN_PATTERN",
    "DataCheck",
    "Problem",
    "assign_folds",
    "bundled_data",
    "check_dataset",
    "check_splits",
    "fold_split",
    "format_check",
    "load_dataset",
    "print_check",
    "sample_rows",
    "split_turns",
    "turn_speaker",
    "unusual_tags",
]
