"""Datasets: loading (CSV, JSONL, Parquet, save_to_disk folders, hf:// Hub datasets), the
data check, seeded sampling and k-fold assignment.

    df = load_dataset("train.csv")            # fname, dialogue, references, topic
    df = load_dataset("hf://ORG/NAME", split="validation", columns={"fname": ["id"]})
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
from raysum.data._load import FORMATS, bundled_data, check_dataset, load_dataset
from raysum.data._sources import (
    FIELDS,
    SPLITS,
    config_problems,
    datasets_cache_dir,
    hub_source,
    is_hub_source,
    offline_problem,
    parse_columns,
    parse_split_map,
)
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
    "FIELDS",
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
    "config_problems",
    "datasets_cache_dir",
    "fold_split",
    "format_check",
    "hub_source",
    "is_hub_source",
    "load_dataset",
    "offline_problem",
    "parse_columns",
    "parse_split_map",
    "print_check",
    "sample_rows",
    "split_turns",
    "turn_speaker",
    "unusual_tags",
]
