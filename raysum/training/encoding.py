"""Tokenized training examples, cached: encoding the same rows with the same tokenizer and
the same encoding settings a second time reads the Arrow file the first one wrote.

The cache is a folder shared by the units of an experiment (``<output_dir>/.encoded``):
a resumed unit, a unit trained again, and every trial of a training search on one fold
reuse the encoding instead of tokenizing again. Each entry is one `datasets.Dataset.map`
result whose fingerprint hashes the rows, the tokenizer (its whole pipeline, special
tokens and chat template) and the model settings
that shape an encoding (``ENCODING_SETTINGS``); the file is named after it. `datasets`
writes the file beside its final name and renames it, so units that encode the same rows
at once never read half of one.

The units of one model share more than that: the driver writes every distinct row any unit
of the experiment trains or evaluates on into one table (``inputs/encoding_rows.parquet``),
a unit encodes that whole table (:func:`encode_from_table`) and takes its own rows from the
encoding, in its own order. The first unit of a model tokenizes the table; the model's other
units, whose folds differ but whose tokenizer and settings do not, read the same entry.
"""

from __future__ import annotations

from pathlib import Path

from raysum.models import ENCODING_SETTINGS, encode_examples

_COLUMNS = ("dialogue", "summary")


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what a tokenizer does, equal for a tokenizer just trained and the same one
    loaded back from a folder (hashing the object itself is not: its Python state differs)."""
    import json

    from datasets.fingerprint import Hasher

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # The whole pipeline (normalizer, pre-tokenizer, model, post-processor, added tokens),
        # less the truncation and padding that a call leaves set on it.
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
    else:
        state = {"vocab": sorted(tokenizer.get_vocab().items())}
    return Hasher.hash([type(tokenizer).__name__, state, tokenizer.special_tokens_map,
                        getattr(tokenizer, "chat_template", None), tokenizer.padding_side, tokenizer.truncation_side])


def encoding_fingerprint(tokenizer, settings, dialogues: list[str], summaries: list[str]) -> str:
    """What names a cache entry: the rows, the tokenizer and the encoding settings."""
    from datasets.fingerprint import Hasher

    shaping = {name: getattr(settings, name) for name in ENCODING_SETTINGS}
    return Hasher.hash([tokenizer_fingerprint(tokenizer), shaping, list(dialogues), list(summaries)])


def encode_cached(tokenizer, settings, dialogues: list[str], summaries: list[str],
                  cache_dir: str | Path | None) -> list[dict]:
    """``encode_examples`` of the rows, read from ``cache_dir`` when they were encoded before
    (``cache_dir`` None: no cache)."""
    if cache_dir is None or not dialogues:
        return encode_examples(tokenizer, settings, dialogues, summaries)
    return _encoded(tokenizer, settings, dialogues, summaries, cache_dir).to_list()


def encode_from_table(tokenizer, settings, table: tuple[list[str], list[str]],
                      parts: list[tuple[list[str], list[str]]], cache_dir: str | Path) -> list[list[dict]] | None:
    """Each part's ``encode_examples``, taken from the cached encoding of ``table`` (dialogues,
    summaries): every row of every part, by its (dialogue, summary), in the part's order (a
    row twice in a part is taken twice). None when a row of a part is not in the table (the
    caller encodes its rows itself)."""
    position: dict[tuple[str, str], int] = {}
    for index, row in enumerate(zip(*table)):
        position.setdefault(row, index)
    wanted = [[position.get(row) for row in zip(dialogues, summaries)] for dialogues, summaries in parts]
    if not table[0] or any(index is None for positions in wanted for index in positions):
        return None
    encoded = _encoded(tokenizer, settings, list(table[0]), list(table[1]), cache_dir)
    return [encoded.select(positions).to_list() if positions else [] for positions in wanted]


def _encoded(tokenizer, settings, dialogues: list[str], summaries: list[str], cache_dir: str | Path):
    """The rows' encoding as a `datasets.Dataset` backed by its cache file in ``cache_dir``
    (computed and written there unless a file of the same fingerprint is there already)."""
    import datasets

    fingerprint = encoding_fingerprint(tokenizer, settings, dialogues, summaries)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    rows = datasets.Dataset.from_dict({"dialogue": list(dialogues), "summary": list(summaries)})

    def encode(batch: dict) -> dict:
        examples = encode_examples(tokenizer, settings, batch["dialogue"], batch["summary"])
        return {key: [example[key] for example in examples] for key in examples[0]}

    return rows.map(encode, batched=True, batch_size=1000, remove_columns=list(_COLUMNS),
                    new_fingerprint=fingerprint, cache_file_name=str(cache / f"encoded-{fingerprint}.arrow"),
                    load_from_cache_file=True, desc="encoding")
