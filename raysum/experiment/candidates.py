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


def normalize(frame: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """``frame`` in the schema's column order; a table from before the decoding column
    generated with the models' own settings only (``d0``). RaysumError naming ``source``
    when a column is missing."""
    frame = frame.copy()
    if DECODING_COLUMN not in frame.columns:
        frame[DECODING_COLUMN] = DEFAULT_DECODING
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise RaysumError(f"{source}: not a raysum candidates table (missing column(s) {', '.join(missing)}; "
                          f"expected {', '.join(COLUMNS)}); it was written by another version or damaged: "
                          "rerun the step that writes it")
    frame = frame[list(COLUMNS)]
    frame["fold"] = frame["fold"].astype("Int64")
    return frame


def read(path: str | Path) -> pd.DataFrame:
    """A candidates (or unit predictions) table from Parquet, checked against the schema."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise RaysumError(f"{path}: cannot be read as a candidates table ({exc}); rerun the step that writes it") \
            from exc
    return normalize(frame, path)
