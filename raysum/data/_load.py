"""Reading dataset files (CSV or JSONL) into one table of dialogues and their references.

Both formats carry ``fname``, ``dialogue``, optional summaries and an optional topic.
Summaries come as ``summary`` or as numbered ``summary1..summaryN`` columns (DialogSum's
dev/test carry three); in JSONL ``summary`` may also be a list of strings. Topics come as
``topic`` or ``topic1..topicN`` (the first non-empty one is kept). Files are UTF-8 with
or without BOM; CRLF and CR line ends become '\\n', also inside dialogue text.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from raysum.data._check import DataCheck, Problem, Record, check_records, compute_stats
from raysum.errors import DataError

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
SPLITS = ("train", "dev", "test")
REQUIRED_COLUMNS = ("fname", "dialogue")
_NUMBERED_SUMMARY = re.compile(r"summary(\d+)")
_NUMBERED_TOPIC = re.compile(r"topic(\d+)")


def load_dataset(path, require_references: bool = False) -> pd.DataFrame:
    """Read a dataset file into columns ``fname``, ``dialogue``, ``references``, ``topic``.

    ``references`` is a list of summaries per dialogue ([] when the file has none);
    ``topic`` is a string or None. Runs the data check first and raises ``DataError``
    listing every error with its row number (1-based record number in the file: for CSV
    the n-th record after the header, a record spanning several lines counting once; for
    JSONL the line number). Warnings are not raised: see ``check_dataset``.
    ``require_references=True`` makes a file without summary columns an error.
    """
    records, check = _read(path, require_references)
    if not check.ok:
        raise DataError([str(p) for p in check.errors], path=str(path))
    return pd.DataFrame({
        "fname": [r.fname for r in records],
        "dialogue": [r.dialogue for r in records],
        "references": pd.Series([[text for _, text in r.references] for r in records], dtype=object),
        "topic": pd.Series([r.topic for r in records], dtype=object),
    })


def check_dataset(path, require_references: bool = False) -> DataCheck:
    """Run the data check on a file: every error and warning, plus statistics.

    Row numbers in the problems are 1-based record numbers in the file: for CSV the n-th
    record after the header (a quoted dialogue spanning several lines counts once, blank
    lines are skipped); for JSONL the line number.
    """
    return _read(path, require_references)[1]


def bundled_data(split: str) -> Path:
    """Path of the small dataset shipped with raysum (``train``, ``dev`` or ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown bundled split {split!r}: choose one of {', '.join(SPLITS)}")
    return Path(str(resources.files("raysum") / "resources" / "data" / f"{split}.csv"))


def _read(path, require_references: bool) -> tuple[list[Record], DataCheck]:
    check = DataCheck()
    text, fmt = _read_text(path, check.errors)
    if text is None:
        return [], check
    check.format = fmt
    columns, raw = (_parse_csv if fmt == "csv" else _parse_jsonl)(text, check.errors)
    check.columns = columns
    records = _to_records(columns, raw, require_references, check)
    check_records(records, check.errors, check.warnings)
    # A missing column is one problem, not one "empty text" per row.
    missing = {p.column for p in check.errors if p.row is None and p.column}
    check.errors = [p for p in check.errors if p.row is None or p.column not in missing]
    check.stats = compute_stats(records)
    check.errors.sort(key=_problem_order)
    check.warnings.sort(key=_problem_order)
    return records, check


def _problem_order(problem: Problem) -> tuple[int, int]:
    # File-level problems first, then by row; the sort is stable within a row.
    return (0, 0) if problem.row is None else (1, problem.row)


def _read_text(path, errors: list[Problem]) -> tuple[str | None, str | None]:
    """The file's text: a local path, a file:// URI, or a remote URI read through pyarrow.fs."""
    from raysum.storage import local_path, read_bytes

    local = local_path(path)
    fmt = FORMATS.get(Path(urlparse(str(path)).path if local is None else local).suffix.lower())
    shown = path if local is None else local
    if local is not None and not local.exists():
        errors.append(Problem(None, None, f"file not found: {shown}"))
        return None, None
    if local is not None and local.is_dir():
        errors.append(Problem(None, None, f"{shown} is a directory, not a dataset file"))
        return None, None
    if fmt is None:
        suffix = Path(str(shown)).suffix
        errors.append(Problem(None, None, f"unknown file extension {suffix or '(none)'!r}: "
                                          f"expected one of {', '.join(FORMATS)}"))
        return None, None
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        errors.append(Problem(None, None, f"file not found: {shown}"))
        return None, None
    except OSError as exc:
        errors.append(Problem(None, None, f"cannot read {shown}: {exc.strerror or exc}"))
        return None, None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        errors.append(Problem(None, None, _decode_message(data, exc)))
        return None, None
    return text.replace("\r\n", "\n").replace("\r", "\n"), fmt


def _decode_message(data: bytes, exc: UnicodeDecodeError) -> str:
    line = data[: exc.start].count(b"\n") + 1
    bad = data[exc.start: exc.end].hex(" ")
    total = data.decode("utf-8", errors="replace").count("\ufffd")
    message = (f"not valid UTF-8: first undecodable byte(s) {bad} at byte offset {exc.start:,} "
               f"(line {line}); {total:,} undecodable sequence(s) in the file")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return message + "; the file looks like UTF-16: save it as UTF-8"
    try:
        data.decode("cp949")
    except UnicodeDecodeError:
        return message + "; save it as UTF-8"
    return message + "; it decodes as CP949/EUC-KR (Korean Windows/Excel): save it as UTF-8"


def _parse_csv(text: str, errors: list[Problem]) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] = []
    raw: list[tuple[int, dict[str, Any]]] = []
    row = 0
    try:
        for fields in reader:
            if not fields:
                continue  # blank line
            if not header:
                header = [name.strip() or f"(unnamed column {i})" for i, name in enumerate(fields, 1)]
                continue
            row += 1
            if len(fields) != len(header):
                errors.append(Problem(row, None, f"{len(fields)} fields where the header has {len(header)} "
                                                 f"(line {reader.line_num}; an unquoted comma or quote?)"))
            raw.append((row, dict(zip(header, fields))))
    except csv.Error as exc:
        errors.append(Problem(row + 1, None, f"cannot parse CSV near line {reader.line_num}: {exc} "
                                             f"(an unbalanced quote?); the rest of the file was not read"))
    if not header:
        errors.append(Problem(None, None, "empty file: no header line"))
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        errors.append(Problem(None, None, f"duplicate column name(s) in the header: {', '.join(duplicates)}"))
    return header, raw


def _parse_jsonl(text: str, errors: list[Problem]) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    columns: dict[str, None] = {}
    raw: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(Problem(lineno, None, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(obj, dict):
            errors.append(Problem(lineno, None, f"expected a JSON object, found {type(obj).__name__}"))
            continue
        columns.update(dict.fromkeys(obj))
        raw.append((lineno, obj))
    if not raw and not errors:
        errors.append(Problem(None, None, "empty file: no records"))
    return list(columns), raw


def _to_records(columns: list[str], raw: list[tuple[int, dict[str, Any]]],
                require_references: bool, check: DataCheck) -> list[Record]:
    summary_columns = _numbered(columns, "summary", _NUMBERED_SUMMARY)
    topic_columns = _numbered(columns, "topic", _NUMBERED_TOPIC)
    if columns or raw:
        for name in REQUIRED_COLUMNS:
            if name not in columns:
                check.errors.append(Problem(None, name, f"required column is missing (columns: {', '.join(columns)})"))
        if require_references and not summary_columns:
            check.errors.append(Problem(None, "summary", "no summary column (summary or summary1..N): "
                                                         "this file needs references"))
        if columns and not raw:
            check.errors.append(Problem(None, None, "no records after the header"))
    ignored = [c for c in columns if c not in (*REQUIRED_COLUMNS, *summary_columns, *topic_columns)]
    if ignored:
        check.warnings.append(Problem(None, None, f"ignored column(s): {', '.join(ignored)}"))

    records = []
    for row, values in raw:
        def text(column: str) -> str:
            return _as_text(values.get(column), row, column, check.errors)

        references: list[tuple[str, str]] = []
        for column in summary_columns:
            value = values.get(column)
            if isinstance(value, list):  # JSONL: "summary": ["...", "..."]
                references += [(f"{column}[{i}]", _as_text(v, row, f"{column}[{i}]", check.errors))
                               for i, v in enumerate(value, 1)]
            else:
                references.append((column, text(column)))
        topic = next((t for t in map(text, topic_columns) if t), None)
        records.append(Record(row, text("fname"), text("dialogue"), references, topic))
    return records


def _numbered(columns: list[str], name: str, numbered: re.Pattern) -> list[str]:
    """``name`` then ``name1..nameN`` in numeric order, as present in ``columns``."""
    found = sorted((int(m.group(1)), c) for c in columns if (m := numbered.fullmatch(c)))
    return ([name] if name in columns else []) + [c for _, c in found]


def _as_text(value: Any, row: int, column: str, errors: list[Problem]) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # JSONL numbers, e.g. an integer fname
    if not isinstance(value, str):
        errors.append(Problem(row, column, f"expected text, found {type(value).__name__}"))
        return ""
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()
