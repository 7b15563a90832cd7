"""The encoding cache: the same rows, tokenizer and encoding settings are tokenized once;
a second encode (another unit of the model on that fold, a resumed unit, a search trial)
reads the Arrow file of the first. The units of one model encode the experiment's table of
rows once and take their own rows from it."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import raysum.training.encoding as encoding
from raysum.config import load_preset
from raysum.config.resolve import resolve
from raysum.data import bundled_data
from raysum.experiment import Experiment, layout
from raysum.models import encode_examples, load_model_and_tokenizer
from raysum.pipeline import validate
from raysum.pipeline._experiment import (
    Unit, create_experiment_dir, encoding_rows, load_experiment_data, unit_config, write_experiment_files,
)
from raysum.training.encoding import encode_cached, tokenizer_fingerprint
from raysum.training.unit import encode_sets


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


def _folds(rows: pd.DataFrame, k: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """k (training part, held-out part) pairs as an experiment makes them: each training part
    shuffled, with augmented rows of its own (one of them twice)."""
    parts = []
    for fold in range(k):
        heldout = rows.iloc[fold::k].reset_index(drop=True)
        train = rows.drop(rows.index[fold::k]).sample(frac=1, random_state=fold)
        augmented = train.head(3).assign(fname=lambda f: f["fname"] + "_aug",
                                         dialogue=lambda f: f["dialogue"] + f" (fold {fold})")
        parts.append((pd.concat([train, augmented, augmented.head(1)], ignore_index=True), heldout))
    return parts


def _directly(tokenizer, settings, frame: pd.DataFrame) -> list[dict]:
    return encode_examples(tokenizer, settings, frame["dialogue"].tolist(), frame["summary"].tolist())


@pytest.mark.parametrize("preset", ["tiny-bart", "tiny-llama"])
def test_the_units_of_a_model_encode_the_experiments_rows_once(preset, rows, calls, tmp_path):
    parts = _folds(rows, 3)
    table = encoding_rows([frame for part in parts for frame in part])
    cache = tmp_path / "encoded"
    for train, heldout in parts:
        # Each unit loads the model's tokenizer again, from the same folder.
        settings, tokenizer = _tokenizer(preset, rows, tmp_path / "tokenizers")
        train_set, eval_set = encode_sets(tokenizer, settings, train, heldout, cache, shared=table)
        assert train_set == _directly(tokenizer, settings, train)
        assert eval_set == sorted(_directly(tokenizer, settings, heldout), key=lambda e: len(e["input_ids"]))
    assert calls == [len(table)]  # the table, by the first unit; the others read its file
    assert len(list(cache.glob("encoded-*.arrow"))) == 1


def test_rows_not_in_the_table_are_encoded_from_the_units_own_rows(rows, calls, tmp_path):
    settings, tokenizer = _tokenizer("tiny-bart", rows, tmp_path / "tok")
    train, heldout = rows.head(30), rows.tail(10)
    train_set, eval_set = encode_sets(tokenizer, settings, train, heldout, tmp_path / "encoded",
                                      shared=encoding_rows([train]))
    assert calls == [30, 10]
    assert train_set == _directly(tokenizer, settings, train) and len(eval_set) == 10


def test_the_table_holds_the_distinct_rows_of_every_units_parts(tmp_path):
    cfg = validate(resolve({"mode": "full", "models": ["tiny-bart", "kobart"], "k_folds": 3, "max_train_samples": 40,
                            "allow_sample_data": True, "output_dir": str(tmp_path / "out"),
                            "use_augmentation": True, "augmentation_methods": ["speaker_swap", "turn_shuffle"],
                            "augmentation_ratio": 0.5}))
    path = create_experiment_dir(cfg)
    write_experiment_files(path, cfg, load_experiment_data(cfg), ["test"])
    exp = Experiment(path)
    parts = [pd.read_parquet(exp.fold_input(fold, part)) for fold in range(3) for part in ("train", "heldout")]
    assert sum(len(p) for p in parts[::2]) > 2 * 40  # augmented rows in the training parts
    rows = {(d, s) for p in parts for d, s in zip(p["dialogue"], p["summary"])}
    table = pd.read_parquet(exp.input_file(layout.ENCODING_ROWS))
    assert list(table.columns) == ["dialogue", "summary"]
    assert len(table) == len(rows) and set(zip(table["dialogue"], table["summary"])) == rows

    # A pretrained model's units encode it; a tiny preset's (a tokenizer per fold) their own rows.
    configs = {model: [unit_config(path, cfg, Unit(model, fold), False) for fold in range(3)]
               for model in cfg.models}
    assert {c.get("encoding_rows") for c in configs["kobart"]} == {str(exp.input_file(layout.ENCODING_ROWS))}
    assert all("encoding_rows" not in c for c in configs["tiny-bart"])


def test_a_unit_given_the_table_encodes_it_and_trains_on_its_own_rows(rows, calls, tmp_path):
    from dataclasses import asdict

    from raysum.experiment import write_parquet
    from raysum.training.unit import UnitConfig, setup

    (train, heldout), *others = _folds(rows, 2)
    table = encoding_rows([train, heldout, *others[0]])
    for name, frame in {"train": train, "heldout": heldout, "rows": table}.items():
        write_parquet(tmp_path / f"{name}.parquet", frame)
    unit = UnitConfig.from_dict({
        "unit_dir": str(tmp_path / "unit"), "model": asdict(load_preset("tiny-bart")), "fold": 0,
        "train_path": str(tmp_path / "train.parquet"), "eval_path": str(tmp_path / "heldout.parquet"),
        "tokenizer_cache": str(tmp_path / "tok"), "encoding_cache": str(tmp_path / "encoded"),
        "encoding_rows": str(tmp_path / "rows.parquet")})
    run = setup(unit)
    assert calls == [len(table)] and len(table) > len(train) + len(heldout) - 1
    assert list(run.trainer.train_dataset) == _directly(run.tokenizer, unit.model, train)
