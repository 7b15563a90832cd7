"""The data check: errors that make a dataset unusable, warnings worth a look, and statistics.

Errors: empty or duplicate fname, empty dialogue, empty summary, a turn without a
speaker tag, a control character (NUL and the like) in fname, dialogue or a summary
(plus the file-level errors found while reading, see ``_load``).
Warnings: over-long dialogues, very short dialogues, unusual tags, a summary longer
than its dialogue. Row numbers are the record numbers that ``_load`` assigns.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raysum.data._tags import split_turns, turn_speaker, unusual_tags

MAX_DIALOGUE_CHARS = 2000
MAX_DIALOGUE_TURNS = 60
MIN_DIALOGUE_TURNS = 2
# Turn numbers listed in one "no speaker tag" error before it says "and N more".
_LISTED_TURNS = 5
# C0 controls and DEL except tab, newline and carriage return, and the C1 controls: a NUL
# or an escape code is an export gone wrong, and several of them split lines in Python.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_NAMES = {0x00: "NUL", 0x1b: "ESC", 0x7f: "DEL", 0x85: "NEL"}
# fnames listed in one message about fnames shared between splits.
_LISTED_FNAMES = 5


@dataclass(frozen=True)
class Problem:
    """One finding. ``row`` is the 1-based record number in the file (None: the whole file)."""

    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        if self.row is not None:
            where = f"row {self.row}" + (f" ({self.column})" if self.column else "")
        else:
            where = self.column or ""
        return f"{where}: {self.message}" if where else self.message


@dataclass
class DataCheck:
    """What the data check found in one file.

    ``errors`` make the file unusable (``load_dataset`` raises on them); ``warnings`` are
    reported only. Row numbers in both are 1-based record numbers: for CSV the n-th
    record after the header (a quoted field spanning several lines counts once, blank
    lines are skipped), for JSONL the line number.
    """

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Record:
    """One dialogue as read from the file, text normalised ('\\n' line ends, outer spaces stripped)."""

    row: int
    fname: str
    dialogue: str
    references: list[tuple[str, str]]  # (column, summary text)
    topic: str | None


def check_records(records: list[Record], errors: list[Problem], warnings: list[Problem]) -> None:
    """Append every row-level error and warning found in ``records``."""
    first_row: dict[str, int] = {}
    for record in records:
        _check_control(record, errors)
        _check_fname(record, first_row, errors)
        _check_dialogue(record, errors, warnings)
        _check_references(record, errors, warnings)


def _check_control(record: Record, errors: list[Problem]) -> None:
    fields = [("fname", record.fname), ("dialogue", record.dialogue), *record.references]
    for column, text in fields:
        found = list(_CONTROL.finditer(text))
        if not found:
            continue
        first = found[0]
        code = ord(first.group())
        name = f"U+{code:04X}" + (f" ({_CONTROL_NAMES[code]})" if code in _CONTROL_NAMES else "")
        where = f" of fname {text!r}" if column == "fname" else ""
        count = f" ({len(found)} control characters in all)" if len(found) > 1 else ""
        errors.append(Problem(record.row, column, f"control character {name} at character {first.start() + 1}"
                                                  f"{where}{count}: only tab and line breaks are allowed"))


def _check_fname(record: Record, first_row: dict[str, int], errors: list[Problem]) -> None:
    if not record.fname:
        errors.append(Problem(record.row, "fname", "empty fname"))
    elif record.fname in first_row:
        errors.append(Problem(record.row, "fname",
                              f"duplicate fname {record.fname!r} (first seen in row {first_row[record.fname]})"))
    else:
        first_row[record.fname] = record.row


def _check_dialogue(record: Record, errors: list[Problem], warnings: list[Problem]) -> None:
    if not record.dialogue:
        errors.append(Problem(record.row, "dialogue", "empty text"))
        return
    turns = split_turns(record.dialogue)
    untagged = [i for i, turn in enumerate(turns, 1) if turn_speaker(turn) is None]
    if untagged:
        listed = ", ".join(str(i) for i in untagged[:_LISTED_TURNS])
        more = f" and {len(untagged) - _LISTED_TURNS} more" if len(untagged) > _LISTED_TURNS else ""
        example = turns[untagged[0] - 1][:40]
        noun, verb = ("turn", "does") if len(untagged) == 1 else ("turns", "do")
        errors.append(Problem(
            record.row, "dialogue",
            f"{noun} {listed}{more} of {len(turns)} {verb} not start with a speaker tag like '#Person1#:' "
            f"(turn {untagged[0]}: {example!r})"))
    chars = len(record.dialogue)
    if chars > MAX_DIALOGUE_CHARS or len(turns) > MAX_DIALOGUE_TURNS:
        warnings.append(Problem(
            record.row, "dialogue",
            f"long dialogue: {chars:,} characters, {len(turns)} turns "
            f"(above {MAX_DIALOGUE_CHARS:,} characters or {MAX_DIALOGUE_TURNS} turns; "
            f"training truncates it to max_source_length tokens)"))
    if len(turns) < MIN_DIALOGUE_TURNS:
        warnings.append(Problem(record.row, "dialogue",
                                f"very short dialogue: {len(turns)} turn (fewer than {MIN_DIALOGUE_TURNS})"))
    odd = unusual_tags(record.dialogue)
    if odd:
        warnings.append(Problem(record.row, "dialogue", _unusual_message(odd)))


def _check_references(record: Record, errors: list[Problem], warnings: list[Problem]) -> None:
    for column, text in record.references:
        if not text:
            errors.append(Problem(record.row, column, "empty summary"))
            continue
        if record.dialogue and len(text) > len(record.dialogue):
            warnings.append(Problem(
                record.row, column,
                f"summary ({len(text):,} characters) is longer than its dialogue ({len(record.dialogue):,})"))
        odd = unusual_tags(text)
        if odd:
            warnings.append(Problem(record.row, column, _unusual_message(odd)))


def _unusual_message(tags: list[str]) -> str:
    return (f"unusual tag{'s' if len(tags) > 1 else ''} {', '.join(tags)} "
            f"(neither a speaker tag #Person1#..#Person7# nor a competition mask)")


def check_splits(dialogues: Mapping[str, Mapping[str, str]]) -> tuple[list[str], list[str]]:
    """(errors, notes) about fnames shared between the ``train``, ``dev`` and ``test`` splits
    (``dialogues``: split -> fname -> dialogue).

    A test fname in train is an error (a leak, or two dialogues under one name in the
    submission's eyes). train/dev and dev/test sharing fnames is a note: every lookup is by
    (split, fname), so each split keeps its own dialogue, but dev scores on dialogues the
    models trained on are not held-out scores.
    """
    errors, notes = [], []
    for first, second in (("train", "test"), ("train", "dev"), ("dev", "test")):
        a, b = dialogues.get(first, {}), dialogues.get(second, {})
        shared = [f for f in b if f in a]
        if not shared:
            continue
        listed = ", ".join(repr(f) for f in shared[:_LISTED_FNAMES]) + (" ..." if len(shared) > _LISTED_FNAMES else "")
        same = sum(a[f] == b[f] for f in shared)
        message = (f"{len(shared):,} fname(s) are in both {first} and {second} ({listed}); "
                   f"{same:,} of them with the same dialogue")
        if (first, second) == ("train", "test"):
            errors.append(message + ": a test fname must not be a training fname; rename or remove them")
        else:
            held_out = ": dev scores on the same dialogues are not held-out scores" if first == "train" else ""
            notes.append(f"{message} (each split keeps its own dialogue{held_out})")
    return errors, notes


def compute_stats(records: list[Record]) -> dict[str, Any]:
    """Counts and length statistics over the records (empty dialogues left out of lengths)."""
    dialogues = [r.dialogue for r in records if r.dialogue]
    turns = [split_turns(d) for d in dialogues]
    summaries = [text for r in records for _, text in r.references if text]
    topics = Counter(r.topic for r in records if r.topic)
    speakers = [len({s for s in map(turn_speaker, t) if s}) for t in turns]
    return {
        "n": len(records),
        "n_references": max((len(r.references) for r in records), default=0),
        "dialogue_chars": _spread([len(d) for d in dialogues], median=True),
        "dialogue_turns": _spread([len(t) for t in turns], median=True),
        "summary_chars": _spread([len(s) for s in summaries], median=False),
        "speakers": {"min": min(speakers), "max": max(speakers)} if speakers else None,
        "n_topics": len(topics),
        "top_topics": topics.most_common(10),
    }


def _spread(values: list[int], median: bool) -> dict[str, float] | None:
    if not values:
        return None
    out: dict[str, float] = {"min": min(values), "mean": round(statistics.fmean(values), 1)}
    if median:
        out["median"] = statistics.median(values)
    out["max"] = max(values)
    return out


def format_check(check: DataCheck, path) -> Any:
    """A rich renderable: counts, length statistics and every error and warning."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    stats = check.stats
    parts: list[Any] = [Text(str(path), style="bold")]
    if stats:
        line = f"{stats['n']:,} dialogues, {stats['n_references']} reference(s) each, {stats['n_topics']:,} topics"
        if check.format:
            line = f"{check.format.upper()}: " + line
        parts.append(Text(line))
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for name in ("", "min", "mean", "median", "max"):
            table.add_column(name, justify="left" if not name else "right")
        for label, key in (("dialogue characters", "dialogue_chars"), ("dialogue turns", "dialogue_turns"),
                           ("summary characters", "summary_chars"), ("speakers", "speakers")):
            spread = stats.get(key)
            if spread:
                table.add_row(label, *(_cell(spread.get(k)) for k in ("min", "mean", "median", "max")))
        parts.append(table)
    for title, problems, style in (("error", check.errors, "red"), ("warning", check.warnings, "yellow")):
        if problems:
            parts.append(Text(f"{len(problems)} {title}{'s' if len(problems) > 1 else ''}:", style=f"bold {style}"))
            parts.extend(Text(f"  {p}", style=style) for p in problems)
    verdict = "data check passed" if check.ok else f"data check failed: {len(check.errors)} error(s)"
    parts.append(Text(verdict, style="bold green" if check.ok else "bold red"))
    return Group(*parts)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"


def print_check(check: DataCheck, path, console=None) -> None:
    """Print ``format_check(check, path)`` to ``console`` (a new rich Console when None)."""
    if console is None:
        from rich.console import Console

        console = Console()
    console.print(format_check(check, path))
