"""Datasets read through HF `datasets`: Parquet files, folders written by `save_to_disk`
and Hub datasets (``hf://ORG/NAME[:CONFIG]``), plus the two settings that map them onto
raysum's splits and columns.

Each becomes the same ``(columns, [(row, values), ...])`` that the CSV and JSONL readers
produce, so one data check (``_check``) covers every format; rows are numbered from 1 in
the order of the table (the split). A Hub dataset missing from the datasets cache while
downloads are off is one error naming the dataset, the split and the cache, found before
anything is loaded.
"""

from __future__ import annotations

import glob
import io
import os
import re
from pathlib import Path
from typing import Any

from raysum.data._check import Problem

HF_SCHEME = "hf://"
# hf://NAME, hf://ORG/NAME, either with :CONFIG.
HF_SOURCE = re.compile(r"hf://((?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*)(?::([\w.-]+))?")
SPLITS = ("train", "dev", "test")
# raysum's columns a dataset's columns can be mapped onto; summary and topic may take several.
FIELDS = ("fname", "dialogue", "summary", "topic")
_MULTI = ("summary", "topic")
_SAVED_MARKERS = ("dataset_dict.json", "dataset_info.json")


# ---------------------------------------------------------------- settings
def is_hub_source(text) -> bool:
    return str(text).startswith(HF_SCHEME)


def hub_source(text: str) -> tuple[str, str | None]:
    """``(name, config)`` of ``hf://ORG/NAME[:CONFIG]``; ValueError for another spelling."""
    match = HF_SOURCE.fullmatch(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a Hub dataset: expected hf://ORG/NAME or hf://ORG/NAME:CONFIG")
    return match.group(1), match.group(2)


def parse_split_map(items: list[str] | None) -> tuple[dict[str, str], list[str]]:
    """``data_split_map`` items ``SPLIT=NAME`` as {raysum split: dataset split}, every raysum
    split present (unnamed ones read the split of their own name), and the problems found."""
    mapping, problems = {split: split for split in SPLITS}, []
    seen: set[str] = set()
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            problems.append(f"data_split_map {item!r}: expected SPLIT=NAME, e.g. dev=validation")
        elif key not in SPLITS:
            problems.append(f"data_split_map {item!r}: {key!r} is not a raysum split; choose {', '.join(SPLITS)}")
        elif key in seen:
            problems.append(f"data_split_map names {key} twice")
        else:
            seen.add(key)
            mapping[key] = value
    return mapping, problems


def parse_columns(items: list[str] | None) -> tuple[dict[str, list[str]], list[str]]:
    """``data_columns`` items ``FIELD=COLUMN[,COLUMN...]`` as {field: [dataset columns]} and
    the problems found; fname and dialogue take one column, summary and topic several."""
    mapping: dict[str, list[str]] = {}
    problems = []
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        names = [name.strip() for name in value.split(",")]
        if not sep or not all(names):
            problems.append(f"data_columns {item!r}: expected FIELD=COLUMN, e.g. fname=id or "
                            f"summary=summary1,summary2,summary3")
        elif key not in FIELDS:
            problems.append(f"data_columns {item!r}: {key!r} is not a raysum column; choose {', '.join(FIELDS)}")
        elif key in mapping:
            problems.append(f"data_columns names {key} twice")
        elif len(names) > 1 and key not in _MULTI:
            problems.append(f"data_columns {item!r}: {key} takes one column (summary and topic take several)")
        elif len(set(names)) < len(names):
            problems.append(f"data_columns {item!r}: a column is listed twice")
        else:
            mapping[key] = names
    return mapping, problems


def config_problems(cfg) -> list[str]:
    """The data settings of a resolved config: hf:// spellings, split and column maps."""
    exp = cfg.experiment
    problems = []
    for key in ("train_data", "dev_data", "test_data"):
        value = getattr(exp, key)
        if value and is_hub_source(value) and not HF_SOURCE.fullmatch(value):
            problems.append(f"{key} {value!r}: a Hub dataset is hf://ORG/NAME or hf://ORG/NAME:CONFIG")
    problems += parse_split_map(exp.data_split_map)[1]
    problems += parse_columns(exp.data_columns)[1]
    return problems


# ---------------------------------------------------------------- caches and offline
def datasets_cache_dir() -> Path:
    """Where `datasets` keeps Hub datasets, read at call time (datasets freezes it at import)."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "datasets"


def _offline() -> bool:
    return any(os.environ.get(name, "0").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _cached(name: str, config: str | None) -> bool:
    """Whether a prepared copy of ``name`` (and ``config``) is in the datasets cache."""
    from datasets.naming import camelcase_to_snakecase

    parts = name.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = datasets_cache_dir() / "___".join(parts)
    return any(Path(p).is_dir() for p in glob.glob(str(root / (config or "*") / "*" / "*")))


def offline_problem(source: str, split: str | None) -> str | None:
    """The error for a Hub dataset that cannot be loaded because downloads are off and the
    datasets cache lacks it (None when it is cached or downloads are on)."""
    name, config = hub_source(source)
    if not _offline() or _cached(name, config):
        return None
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface (HF_HOME unset)")
    what = f"dataset {name!r}" + (f" (config {config!r})" if config else "") + (f", split {split!r}," if split else "")
    return (f"{what} is not in the datasets cache {datasets_cache_dir()} and downloads are off (HF_HUB_OFFLINE=1). "
            f"Provide it either by saving it on a connected machine (`datasets.load_dataset({name!r}"
            f"{', ' + repr(config) if config else ''}).save_to_disk(DIR)`) and giving DIR instead of {source}, or by "
            f"loading it once on a connected machine and pointing HF_HOME (or HF_DATASETS_CACHE) at that cache "
            f"(HF_HOME={hf_home})")


# ---------------------------------------------------------------- readers
def is_saved_dataset(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and any((path / marker).is_file() for marker in _SAVED_MARKERS)


def read_hub(source: str, split: str | None, errors: list[Problem]) -> tuple[list[str], list] | None:
    problem = offline_problem(source, split)
    if problem:
        errors.append(Problem(None, None, problem))
        return None
    import datasets

    name, config = hub_source(source)
    try:
        loaded = datasets.load_dataset(name, config, cache_dir=str(datasets_cache_dir()))
    except Exception as exc:  # the Hub, the cache or the builder: one message, not a traceback
        errors.append(Problem(None, None, f"cannot load dataset {name!r}"
                                          + (f" (config {config!r})" if config else "") + f": {_first_line(exc)}"))
        return None
    return _split_rows(loaded, split, source, errors)


def read_saved(path: Path, split: str | None, errors: list[Problem]) -> tuple[list[str], list] | None:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # a damaged or foreign folder
        errors.append(Problem(None, None, f"cannot read the dataset saved in {path}: {_first_line(exc)}"))
        return None
    return _split_rows(loaded, split, str(path), errors)


def file_bytes(path, shown, errors: list[Problem]) -> bytes | None:
    """A file's bytes (a local path, a file:// URI or a remote URI read through pyarrow.fs);
    None with the problem added to ``errors`` when it cannot be read."""
    from raysum.storage import read_bytes

    try:
        return read_bytes(path)
    except FileNotFoundError:
        errors.append(Problem(None, None, f"file not found: {shown}"))
    except OSError as exc:
        errors.append(Problem(None, None, f"cannot read {shown}: {exc.strerror or exc}"))
    return None


def read_parquet(path, shown, errors: list[Problem]) -> tuple[list[str], list] | None:
    """A Parquet file (a path or URI) as a `datasets.Dataset`'s rows."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = file_bytes(path, shown, errors)
    if data is None:
        return None
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        errors.append(Problem(None, None, f"not a readable Parquet file: {_first_line(exc)}"))
        return None
    duplicates = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if duplicates:
        errors.append(Problem(None, None, f"duplicate column name(s): {', '.join(duplicates)}"))
        return None
    return _rows(datasets.Dataset(table), errors)


def _split_rows(loaded, split: str | None, source: str, errors: list[Problem]) -> tuple[list[str], list] | None:
    """The rows of ``split`` of a DatasetDict (a lone Dataset is its own split)."""
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            asked = f"has no split {split!r}" if split else "has several splits"
            errors.append(Problem(None, None, f"{source} {asked} (splits: {', '.join(names)}); choose one with "
                                              f"data_split_map, e.g. --data_split_map dev=validation "
                                              f"(raysum data check: --split NAME)"))
            return None
        loaded = loaded[split]
    return _rows(loaded, errors)


def _rows(dataset, errors: list[Problem]) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    columns = list(dataset.column_names)
    rows = [(i, values) for i, values in enumerate(dataset.to_list(), 1)]
    if not rows:
        errors.append(Problem(None, None, "empty dataset: no rows"))
    return columns, rows


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
