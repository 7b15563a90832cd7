"""Scoring files: a submission-style CSV (fname, summary) against a dataset's references."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from raysum.errors import DataError


_LISTED = 10


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A `fname,summary` CSV; every problem listed at once, a missing column once. Column
    names and fnames are stripped of outer whitespace, as the references' are."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", str(path))
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError("empty file: expected a header line fname,summary", str(path)) from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read as UTF-8 CSV: {exc}", str(path)) from None
    df.columns = [str(c).strip() for c in df.columns]
    problems = [f"missing column {c!r}" for c in ("fname", "summary") if c not in df.columns]
    if problems:
        raise DataError(problems + [f"columns found: {', '.join(df.columns)}"], str(path))
    df["fname"] = df["fname"].str.strip()
    dup = df["fname"][df["fname"].duplicated()].tolist()
    if dup:
        problems.append(f"duplicate fname: {', '.join(dup[:10])}{' ...' if len(dup) > 10 else ''}")
    if problems:
        raise DataError(problems, str(path))
    return df


def score_files(predictions: str | Path, references: str | Path, tokenizer: str = "kiwi") -> dict:
    """Korean ROUGE of a prediction CSV against a dataset file; fnames must match (after
    stripping outer whitespace). ``n_empty`` counts empty predictions and ``warnings``
    says which (they score 0 but are not an error)."""
    from raysum.data import load_dataset
    from raysum.metrics import score

    preds = read_predictions(predictions)
    refs = load_dataset(references, require_references=True)
    pred_names, ref_names = set(preds["fname"]), set(refs["fname"])
    problems = []
    missing = [f for f in refs["fname"] if f not in pred_names]
    extra = [f for f in preds["fname"] if f not in ref_names]
    if missing:
        problems.append(f"{len(missing)} fname(s) of the references have no prediction: "
                        f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if extra:
        problems.append(f"{len(extra)} predicted fname(s) are not in the references: "
                        f"{', '.join(extra[:10])}{' ...' if len(extra) > 10 else ''}")
    if problems:
        raise DataError(problems, str(predictions))
    by_name = dict(zip(preds["fname"], preds["summary"]))
    result = score([by_name[f] for f in refs["fname"]], list(refs["references"]), tokenizer=tokenizer)
    result["tokenizer"] = tokenizer
    empty = preds.loc[preds["summary"].str.strip() == "", "fname"].tolist()
    result["n_empty"] = len(empty)
    result["warnings"] = [f"{len(empty):,} of {len(preds):,} predictions are empty (each scores 0): "
                          f"{', '.join(empty[:_LISTED])}{' ...' if len(empty) > _LISTED else ''}"] if empty else []
    return result
