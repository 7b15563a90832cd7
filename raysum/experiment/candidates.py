"""The candidates table: every generated summary of every unit, one row each.

Its schema lives here and is checked whenever a table is read back, so a table missing
a column (or written by another version) is a clear error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from raysum.errors import RaysumError

# split, fname, model, fold (Int64, null for units without folds), tta variant ("none"
# for the dialogue itself), decoding label ("d0" = the model's own settings), text,
# number of generated tokens, mean token log-prob.
COLUMNS = ("split", "fname", "model", "fold", "tta", "decoding", "text", "n_tokens", "logprob")
DECODING_COLUMN = "decoding"
DEFAULT_DECODING = "d0"
# The data split each candidates split's dialogues come from: out-of-fold candidates are
# the training data's. A fname is a dialogue only together with its split.
SOURCE_SPLIT = {"oof": "train", "dev": "dev", "test": "test"}


def normalize(frame: pd.DataFrame, source: str | Path, action: str = "rerun the step that writes it") -> pd.DataFrame:
    """``frame`` in the schema's column order; a table from before the decoding column
    generated with the models' own settings only (``d0``). RaysumError naming ``source``
    when a column is missing."""
    frame = frame.copy()
    if DECODING_COLUMN not in frame.columns:
        frame[DECODING_COLUMN] = DEFAULT_DECODING
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise RaysumError(f"{source}: not a raysum candidates table (missing column(s) {', '.join(missing)}; "
                          f"expected {', '.join(COLUMNS)}); it was written by another version or damaged: {action}")
    frame = frame[list(COLUMNS)]
    try:
        frame["fold"] = frame["fold"].astype("Int64")
    except (TypeError, ValueError) as exc:
        raise RaysumError(f"{source}: column fold holds something other than fold numbers ({exc}); it was "
                          f"written by another version or damaged: {action}") from None
    return frame


def read(path: str | Path, action: str = "rerun the step that writes it") -> pd.DataFrame:
    """A candidates (or unit predictions) table from Parquet, checked against the schema;
    a damaged one is an error naming it with ``action`` (what makes it again)."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RaysumError(f"{path}: cannot be read as a candidates table ({first}); {action}") from exc
    return normalize(frame, path, action)
