"""One file of an experiment directory, written or read back.

Writes go to a temporary file beside the target, renamed over it
(:func:`raysum.storage.write_atomic`): a reader never sees half a file and an interrupted
write leaves the previous version in place. A file a user keeps (a submission) is not
replaced silently: the previous version stays beside it under a timestamped name.

Reads turn a damaged file (truncated, corrupt, or valid but of another shape, e.g. written
by another version) into a :class:`RaysumError` that names the file and says what to do.
A reader given a ``notes`` list treats the file as optional instead: the damage becomes a
note there and the reader returns its default (files that only describe a run, or that
raysum makes again).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from raysum.errors import RaysumError
from raysum.experiment import layout
from raysum.storage import write_atomic, write_text_atomic

# What to do about a damaged file that nothing can make again.
RESTORE = "restore it from a copy or start a new experiment"


def damaged(path: Path, problem: str, action: str = RESTORE) -> RaysumError:
    return RaysumError(f"{path} is damaged ({problem}); {action}")


def _note_or_raise(path: Path, problem: str, action: str, notes: list[str] | None) -> None:
    if notes is None:
        raise damaged(path, problem, action)
    note = f"{path} is damaged ({problem}); {action}"
    if note not in notes:
        notes.append(note)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# --------------------------------------------------------------------------- writers


def write_json(path: Path, data, **dumps) -> Path:
    """JSON (UTF-8, indented) written atomically."""
    dumps.setdefault("indent", 1)
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, **dumps))


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_parquet(temp, index=False))


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_csv(temp, index=False))


def write_keeping_previous(path: Path, data: bytes, *, force: bool = False) -> Path | None:
    """``data`` into ``path`` (atomically). A previous file with other content is first kept
    beside it, named after when it was written (``layout.kept_name``), unless ``force``.
    Returns the kept file (None: there was none, it was identical, or ``force``)."""
    path = Path(path)
    kept = None
    if path.is_file() and not force:
        if path.read_bytes() == data:
            return None
        kept = _keep(path)
    write_atomic(path, lambda temp: temp.write_bytes(data))
    return kept


def _keep(path: Path) -> Path:
    """A second name for ``path``'s current content (a hard link; a copy where links fail)."""
    written = path.stat().st_mtime
    for number in range(1, 1000):
        kept = path.with_name(layout.kept_name(path.name, written, number))
        if kept.exists():
            continue
        try:
            os.link(path, kept)
        except FileExistsError:
            continue
        except OSError:  # a filesystem without hard links
            write_atomic(kept, lambda temp: shutil.copy2(path, temp))
        return kept
    raise RaysumError(f"{path}: too many kept versions beside it; move some away or give --force")


# --------------------------------------------------------------------------- readers


def _kind(data) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(data), type(data).__name__)


def read_json(path: Path, default=None, *, action: str = RESTORE, notes: list[str] | None = None):
    """A JSON object file's content; ``default`` when it does not exist. Damaged (not JSON,
    not an object): a RaysumError naming it with ``action``, or, given ``notes``, a note
    (``action`` then says what follows) and ``default``."""
    if not path.is_file():
        return default
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        _note_or_raise(path, f"not valid JSON: {_first_line(exc)}", action, notes)
        return default
    except OSError as exc:
        _note_or_raise(path, f"cannot be read: {exc.strerror or exc}", action, notes)
        return default
    if not isinstance(data, dict):
        _note_or_raise(path, f"{_kind(data)} where a JSON object belongs; written by another version?", action,
                       notes)
        return default
    return data


def read_jsonl(path: Path, notes: list[str] | None = None) -> list[dict]:
    """Rows of a JSON-lines file. A line that is not a JSON object (a write cut short: the
    torn last line of a file being appended to) is left out, with a note in ``notes``."""
    if not path.is_file():
        return []
    rows, bad = [], []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    if bad and notes is not None:
        where = "its last line was cut short" if bad == [len(lines)] else f"line(s) {', '.join(map(str, bad[:5]))}"
        note = f"{path}: {where} (not a JSON object); left out"
        if note not in notes:
            notes.append(note)
    return rows


def read_parquet(path: Path, columns: list[str] | None = None, *, required: tuple[str, ...] | list[str] = (),
                 action: str = RESTORE, notes: list[str] | None = None) -> pd.DataFrame | None:
    """A Parquet table (``columns`` only, when given) that has the ``required`` columns.
    Damaged or of another shape: a RaysumError naming it with ``action``, or, given
    ``notes``, a note and None."""
    wanted = list(dict.fromkeys([*(columns or []), *required]))
    try:
        frame = pd.read_parquet(path, columns=columns)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        missing = _missing_columns(path, wanted)
        problem = (f"missing column(s) {', '.join(missing)}; written by another version?" if missing
                   else f"not a readable Parquet file: {_first_line(exc)}")
        _note_or_raise(path, problem, action, notes)
        return None
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        _note_or_raise(path, f"missing column(s) {', '.join(missing)}; written by another version?", action, notes)
        return None
    return frame


def _missing_columns(path: Path, wanted: list[str]) -> list[str]:
    try:
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - the file itself is damaged: no columns to compare
        return []
    return [c for c in wanted if c not in names]


def read_csv(path: Path, *, required: tuple[str, ...] = (), action: str = RESTORE, **options) -> pd.DataFrame:
    """A CSV table that has the ``required`` columns; damaged: a RaysumError naming it with ``action``."""
    try:
        frame = pd.read_csv(path, **options)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas' parser errors, bad encodings
        raise damaged(path, f"not a readable CSV file: {_first_line(exc)}", action) from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise damaged(path, f"missing column(s) {', '.join(missing)}; written by another version?", action)
    return frame
