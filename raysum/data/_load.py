"""Reading datasets into one table of dialogues and their references.

Sources: CSV and JSONL files (read here, with record numbers), and through HF `datasets`
Parquet files, `save_to_disk` folders and Hub datasets ``hf://ORG/NAME[:CONFIG]``
(``_sources``). Every source carries ``fname``, ``dialogue``, optional summaries and an
optional topic, under these names or those ``columns`` maps them to. Summaries come as
``summary`` or as numbered ``summary1..summaryN`` columns (DialogSum's dev/test carry
three); ``summary`` may also be a list of strings (JSONL, Arrow). Topics come as
``topic`` or ``topic1..topicN`` (the first non-empty one is kept). Text files are UTF-8
with or without BOM; CRLF and CR line ends become '\\n', also inside dialogue text.
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
from raysum.data._sources import SPLITS, file_bytes, is_hub_source, is_saved_dataset, read_hub, read_parquet, read_saved
from raysum.errors import DataError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
REQUIRED_COLUMNS = ("fname", "dialogue")
_NUMBERED_SUMMARY = re.compile(r"summary(\d+)")
_NUMBERED_TOPIC = re.compile(r"topic(\d+)")


def load_dataset(path, require_references: bool = False, split: str | None = None,
                 columns: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Read a dataset into columns ``fname``, ``dialogue``, ``references``, ``topic``.

    ``path``: a CSV, JSONL or Parquet file (path or URI), a `save_to_disk` folder or
    ``hf://ORG/NAME[:CONFIG]``; ``split`` picks the split of a source that has several
    (a lone table ignores it); ``columns`` maps raysum's columns to the source's
    (``{"fname": ["id"], "summary": ["summary1", "summary2"]}``, see ``parse_columns``).

    ``references`` is a list of summaries per dialogue ([] when the file has none);
    ``topic`` is a string or None. Runs the data check first and raises ``DataError``
    listing every error with its row number (1-based record number in the file: for CSV
    the n-th record after the header, a record spanning several lines counting once; for
    JSONL the line number; for Parquet and `datasets` sources the row's position in its
    split). Warnings are not raised: see ``check_dataset``.
    ``require_references=True`` makes a file without summary columns an error.
    """
    records, check = _read(path, require_references, split, columns)
    if not check.ok:
        raise DataError([str(p) for p in check.errors], path=str(path))
    return pd.DataFrame({
        "fname": [r.fname for r in records],
        "dialogue": [r.dialogue for r in records],
        "references": pd.Series([[text for _, text in r.references] for r in records], dtype=object),
        "topic": pd.Series([r.topic for r in records], dtype=object),
    })


def check_dataset(path, require_references: bool = False, split: str | None = None,
                  columns: dict[str, list[str]] | None = None) -> DataCheck:
    """Run the data check on a dataset (the sources of ``load_dataset``): every error and
    warning, plus statistics.

    Row numbers in the problems are 1-based record numbers in the file: for CSV the n-th
    record after the header (a quoted dialogue spanning several lines counts once, blank
    lines are skipped); for JSONL the line number; for Parquet and `datasets` sources the
    row's position in its split.
    """
    return _read(path, require_references, split, columns)[1]


def bundled_data(split: str) -> Path:
    """Path of the small dataset shipped with raysum (``train``, ``dev`` or ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown bundled split {split!r}: choose one of {', '.join(SPLITS)}")
    return Path(str(resources.files("raysum") / "resources" / "data" / f"{split}.csv"))


def _read(path, require_references: bool, split: str | None,
          mapping: dict[str, list[str]] | None) -> tuple[list[Record], DataCheck]:
    check = DataCheck()
    read = _read_source(path, split, check)
    if read is None:
        return [], check
    columns, raw = read
    check.columns = columns
    records = _to_records(columns, raw, require_references, check, mapping or {})
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


def _read_source(path, split: str | None, check: DataCheck) -> tuple[list[str], list] | None:
    """``(columns, [(row, values), ...])`` of any source, None after an error in ``check``."""
    from raysum.storage import local_path

    errors = check.errors
    if is_hub_source(path):
        check.format = "hub"
        return read_hub(str(path), split, errors)
    local = local_path(path)
    fmt = FORMATS.get(Path(urlparse(str(path)).path if local is None else local).suffix.lower())
    shown = path if local is None else local
    if local is not None and not local.exists():
        errors.append(Problem(None, None, f"file not found: {shown}"))
        return None
    if local is not None and is_saved_dataset(local):
        check.format = "saved dataset"
        return read_saved(local, split, errors)
    if local is not None and local.is_dir():
        errors.append(Problem(None, None, f"{shown} is a directory, not a dataset file (nor a folder written by "
                                          f"save_to_disk: it has no dataset_dict.json or dataset_info.json)"))
        return None
    if fmt is None:
        suffix = Path(str(shown)).suffix
        errors.append(Problem(None, None, f"unknown file extension {suffix or '(none)'!r}: expected one of "
                                          f"{', '.join(FORMATS)}, a save_to_disk folder or hf://ORG/NAME[:CONFIG]"))
        return None
    check.format = fmt
    if fmt == "parquet":
        return read_parquet(path, shown, errors)
    text = _read_text(path, shown, errors)
    if text is None:
        return None
    return (_parse_csv if fmt == "csv" else _parse_jsonl)(text, errors)


def _read_text(path, shown, errors: list[Problem]) -> str | None:
    """The file's text: a local path, a file:// URI, or a remote URI read through pyarrow.fs."""
    data = file_bytes(path, shown, errors)
    if data is None:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        errors.append(Problem(None, None, _decode_message(data, exc)))
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


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
                require_references: bool, check: DataCheck, mapping: dict[str, list[str]]) -> list[Record]:
    fname_column = mapping.get("fname", ["fname"])[0]
    dialogue_column = mapping.get("dialogue", ["dialogue"])[0]
    summary_columns = _mapped(columns, mapping, "summary", _NUMBERED_SUMMARY, require_references, check)
    topic_columns = _mapped(columns, mapping, "topic", _NUMBERED_TOPIC, False, check)
    if columns or raw:
        for field, name in (("fname", fname_column), ("dialogue", dialogue_column)):
            if name not in columns:
                how = f"data_columns {field}={name}; " if name != field else ""
                check.errors.append(Problem(None, field, f"required column is missing ({how}columns: "
                                                        f"{', '.join(columns)})"))
        if require_references and not summary_columns and "summary" not in mapping:
            check.errors.append(Problem(None, "summary", "no summary column (summary or summary1..N): "
                                                         "this file needs references"))
        if columns and not raw and check.format == "csv":
            check.errors.append(Problem(None, None, "no records after the header"))
    used = (fname_column, dialogue_column, *summary_columns, *topic_columns, *mapping.get("summary", []),
            *mapping.get("topic", []))
    ignored = [c for c in columns if c not in used]
    if ignored:
        check.warnings.append(Problem(None, None, f"ignored column(s): {', '.join(ignored)}"))

    records = []
    for row, values in raw:
        def text(column: str) -> str:
            return _as_text(values.get(column), row, column, check.errors)

        references: list[tuple[str, str]] = []
        for column in summary_columns:
            value = values.get(column)
            if isinstance(value, list):  # JSONL or Arrow: "summary": ["...", "..."]
                references += [(f"{column}[{i}]", _as_text(v, row, f"{column}[{i}]", check.errors))
                               for i, v in enumerate(value, 1)]
            else:
                references.append((column, text(column)))
        topic = next((t for t in map(text, topic_columns) if t), None)
        records.append(Record(row, text(fname_column), text(dialogue_column), references, topic))
    return records


def _mapped(columns: list[str], mapping: dict[str, list[str]], field: str, numbered: re.Pattern,
            required: bool, check: DataCheck) -> list[str]:
    """The source columns of ``field`` (summary or topic): those ``mapping`` names that the
    source has, else ``field`` and ``field1..N``. One mapping serves every split (DialogSum's
    train has ``summary``, its dev and test ``summary1..3``), so a mapped column a split lacks
    is a warning; none of them where references are required is an error."""
    if field not in mapping:
        return _numbered(columns, field, numbered)
    wanted = mapping[field]
    present = [c for c in wanted if c in columns]
    if columns and not present and required:
        check.errors.append(Problem(None, field, f"none of the columns data_columns maps to {field} "
                                                 f"({', '.join(wanted)}) is here (columns: {', '.join(columns)})"))
    elif columns and present and len(present) < len(wanted):
        absent = [c for c in wanted if c not in columns]
        check.warnings.append(Problem(None, field, f"column(s) {', '.join(absent)} of data_columns {field}="
                                                   f"{','.join(wanted)} are not here; using {', '.join(present)}"))
    return present


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
