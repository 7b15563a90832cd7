"""The encoding cache: the same rows, tokenizer and encoding settings are tokenized once;
a second encode (another unit of the model on that fold, a resumed unit, a search trial)
reads the Arrow file of the first."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import raysum.training.encoding as encoding
from raysum.config import load_preset
from raysum.data import bundled_data
from raysum.models import encode_examples, load_model_and_tokenizer
from raysum.training.encoding import encode_cached, tokenizer_fingerprint


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return pd.read_csv(bundled_data("dev")).head(40)


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """How many rows each call of the encode function tokenized."""
    seen: list[int] = []

    def counting(tokenizer, settings, dialogues, summaries):
        seen.append(len(dialogues))
        return encode_examples(tokenizer, settings, dialogues, summaries)

    monkeypatch.setattr(encoding, "encode_examples", counting)
    return seen


def _tokenizer(preset: str, rows: pd.DataFrame, cache):
    settings = load_preset(preset)
    texts = rows["dialogue"].tolist() + rows["summary"].tolist()
    return settings, load_model_and_tokenizer(settings, train_texts=texts, cache_dir=cache, device="cpu")[1]


@pytest.mark.parametrize("preset", ["tiny-bart", "tiny-llama"])
def test_second_encode_of_the_same_rows_is_a_cache_hit(preset, rows, calls, tmp_path):
    settings, tokenizer = _tokenizer(preset, rows, tmp_path / "tokenizers")
    dialogues, summaries = rows["dialogue"].tolist(), rows["summary"].tolist()
    cache = tmp_path / "encoded"

    first = encode_cached(tokenizer, settings, dialogues, summaries, cache)
    assert calls == [40]
    assert first == encode_examples(tokenizer, settings, dialogues, summaries)
    assert len(list(cache.glob("encoded-*.arrow"))) == 1

    # Another unit of the model: its tokenizer loaded back from the tokenizer cache.
    _, again_tokenizer = _tokenizer(preset, rows, tmp_path / "tokenizers")
    assert tokenizer_fingerprint(again_tokenizer) == tokenizer_fingerprint(tokenizer)
    second = encode_cached(again_tokenizer, settings, dialogues, summaries, cache)
    assert calls == [40] and second == first

    # Other rows, or a setting that shapes the encoding: encoded anew, in a new entry.
    encode_cached(tokenizer, settings, dialogues[:10], summaries[:10], cache)
    shorter = dataclasses.replace(settings, max_source_length=16)
    truncated = encode_cached(tokenizer, shorter, dialogues, summaries, cache)
    assert calls == [40, 10, 40]
    assert max(len(e["input_ids"]) for e in truncated) < max(len(e["input_ids"]) for e in first)
    assert len(list(cache.glob("encoded-*.arrow"))) == 3
    # A setting that does not shape the encoding reuses the entry.
    encode_cached(tokenizer, dataclasses.replace(settings, learning_rate=1.0), dialogues, summaries, cache)
    assert calls == [40, 10, 40]


def test_another_tokenizer_is_another_entry(rows, calls, tmp_path):
    settings, tokenizer = _tokenizer("tiny-bart", rows, tmp_path / "tok")
    _, other = _tokenizer("tiny-bart", rows.head(20), tmp_path / "tok")
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    dialogues, summaries = rows["dialogue"].tolist(), rows["summary"].tolist()
    encode_cached(tokenizer, settings, dialogues, summaries, tmp_path / "encoded")
    encode_cached(other, settings, dialogues, summaries, tmp_path / "encoded")
    assert calls == [40, 40]


def test_no_cache_folder_encodes_directly(rows, calls, tmp_path):
    settings, tokenizer = _tokenizer("tiny-bart", rows, tmp_path / "tok")
    dialogues, summaries = rows["dialogue"].tolist(), rows["summary"].tolist()
    assert encode_cached(tokenizer, settings, dialogues, summaries, None) == \
        encode_examples(tokenizer, settings, dialogues, summaries)
    assert calls == [40] and not (tmp_path / "encoded").exists()
