"""The experiment directory: its layout, its reader/writer, the candidates schema.

Every stage (pipeline, ensemble, tune, report, predict, analyze) reads and writes an
experiment through :class:`Experiment`; file names live in :mod:`.layout` only, every
write is atomic (temporary file, then rename), and a damaged file read back is an error
naming it, or a note where raysum can do without it (:mod:`.files`).
"""

from raysum.experiment import layout
from raysum.experiment.candidates import COLUMNS as CANDIDATE_COLUMNS
from raysum.experiment.directory import (
    UNIT_SELECTION_KEYS, Experiment, UnitFiles, read_json, read_jsonl, settings_hash, unit_selection, write_csv,
    write_json, write_parquet,
)
from raysum.experiment.files import read_csv, read_parquet

__all__ = [
    "CANDIDATE_COLUMNS", "Experiment", "UNIT_SELECTION_KEYS", "UnitFiles", "layout", "read_json", "read_jsonl",
    "settings_hash", "unit_selection", "write_csv", "write_json", "write_parquet", "read_csv", "read_parquet",
]
