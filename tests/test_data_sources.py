"""Data through HF `datasets`: Parquet files, save_to_disk folders and hf:// Hub datasets,
mapped onto raysum's splits (data_split_map) and columns (data_columns), with the same
checks and messages as CSV, and one clear error for a Hub dataset that is not cached while
downloads are off."""

from __future__ import annotations

import glob
import os
import shutil

import datasets
import pandas as pd
import pytest

from raysum.cli import main
from raysum.config.resolve import resolve
from raysum.data import (
    bundled_data, check_dataset, load_dataset, offline_problem, parse_columns, parse_split_map,
)
from raysum.errors import ConfigError, DataError
from raysum.experiment import Experiment
from raysum.pipeline._experiment import load_experiment_data
from raysum.pipeline._resume import check_resume, input_settings
from raysum.pipeline.validate import validate

D1 = "#Person1#: 안녕하세요, 오늘 날씨 어때요?\n#Person2#: 맑고 따뜻해요."
D2 = "#Person1#: 내일 회의는 몇 시죠?\n#Person2#: 오후 3시입니다.\n#Person3#: 저도 갈게요."


def _dialogsum_like(n: int, offset: int = 0, refs: int = 1) -> dict[str, list]:
    """Rows named like the Hub's DialogSum: id, dialogue, summary or summary1..N, topic."""
    rows = {"id": [f"d_{offset + i}" for i in range(n)], "dialogue": [D1 if i % 2 else D2 for i in range(n)]}
    if refs == 1:
        rows["summary"] = [f"요약 {offset + i}" for i in range(n)]
    for r in range(1, refs + 1) if refs > 1 else ():
        rows[f"summary{r}"] = [f"요약 {offset + i}-{r}" for i in range(n)]
    rows["topic"] = ["날씨"] * n
    return rows


@pytest.fixture
def saved_dict(tmp_path) -> str:
    """A DatasetDict saved with save_to_disk: train, validation (three references), test."""
    path = tmp_path / "dialogsum_saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(_dialogsum_like(12)),
        "validation": datasets.Dataset.from_dict(_dialogsum_like(4, offset=100, refs=3)),
        "test": datasets.Dataset.from_dict({k: v for k, v in _dialogsum_like(3, offset=200).items() if k != "summary"}),
    }).save_to_disk(str(path))
    return str(path)


# ---------------------------------------------------------------- Parquet
def test_parquet_reads_like_the_csv_it_was_written_from(tmp_path):
    csv = bundled_data("dev")
    parquet = tmp_path / "dev.parquet"
    pd.read_csv(csv).to_parquet(parquet)
    from_csv, from_parquet = load_dataset(csv), load_dataset(parquet)
    pd.testing.assert_frame_equal(from_parquet, from_csv)
    assert check_dataset(parquet).format == "parquet"


def test_parquet_gets_the_csv_checks_with_row_numbers(tmp_path):
    frame = pd.DataFrame({"fname": ["a", "b", "a\x00x", "b"], "dialogue": [D1, D2, D1, ""],
                          "summary": ["s", "s", "s", "s"]})
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError) as caught:
        load_dataset(tmp_path / "bad.parquet")
    message = str(caught.value)
    assert "row 3 (fname): control character U+0000 (NUL) at character 2" in message
    assert "row 4 (fname): duplicate fname 'b' (first seen in row 2)" in message
    assert "row 4 (dialogue): empty text" in message


def test_damaged_parquet_is_one_error_not_a_traceback(tmp_path):
    path = tmp_path / "damaged.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    check = check_dataset(path)
    assert [str(p) for p in check.errors] == [check.errors[0].message]
    assert check.errors[0].message.startswith("not a readable Parquet file")
    assert main(["data", "check", str(path)]) == 2


# ---------------------------------------------------------------- save_to_disk
def test_saved_datasetdict_split_and_column_mapping(saved_dict):
    columns, problems = parse_columns(["fname=id", "summary=summary1,summary2,summary3"])
    assert problems == []
    dev = load_dataset(saved_dict, require_references=True, split="validation", columns=columns)
    assert dev["fname"].tolist() == ["d_100", "d_101", "d_102", "d_103"]
    assert dev.loc[0, "references"] == ["요약 100-1", "요약 100-2", "요약 100-3"]
    assert dev.loc[0, "topic"] == "날씨"
    # The test split has none of the mapped summary columns: no references, not an error.
    test = load_dataset(saved_dict, split="test", columns=columns)
    assert test["references"].tolist() == [[], [], []]
    # Without the mapping the same split has no fname column: the usual message.
    with pytest.raises(DataError, match="fname: required column is missing"):
        load_dataset(saved_dict, split="validation")


def test_saved_datasetdict_unknown_split_lists_the_splits(saved_dict):
    with pytest.raises(DataError) as caught:
        load_dataset(saved_dict, split="dev", columns={"fname": ["id"]})
    assert "has no split 'dev' (splits: train, validation, test)" in str(caught.value)
    assert "--data_split_map dev=validation" in str(caught.value)


def test_saved_dataset_checks_name_rows_and_mapped_columns(tmp_path):
    path = tmp_path / "one"
    datasets.Dataset.from_dict({"id": ["x", "y", "x"], "dialogue": [D1, D2, D1], "summary1": ["a", "b", "c"],
                                "summary2": ["a", "", "c"]}).save_to_disk(str(path))
    columns = {"fname": ["id"], "summary": ["summary1", "summary2", "summary3"]}
    with pytest.raises(DataError) as caught:
        load_dataset(path, require_references=True, columns=columns)
    message = str(caught.value)
    assert "summary3" not in message  # a mapped column this split lacks: a warning
    assert "row 2 (summary2): empty summary" in message
    assert "row 3 (fname): duplicate fname 'x' (first seen in row 1)" in message
    warnings = [str(p) for p in check_dataset(path, columns=columns).warnings]
    assert "summary: column(s) summary3 of data_columns summary=summary1,summary2,summary3 are not here; " \
           "using summary1, summary2" in warnings
    with pytest.raises(DataError, match="summary: none of the columns data_columns maps to summary"):
        load_dataset(path, require_references=True, columns={"fname": ["id"], "summary": ["abstract"]})
    # A mapped fname column that is missing: one problem, not one per row.
    with pytest.raises(DataError) as caught:
        load_dataset(path, columns={"fname": ["key"]})
    assert caught.value.problems == ["fname: required column is missing (data_columns fname=key; columns: id, "
                                     "dialogue, summary1, summary2)", "row 2 (summary2): empty summary"]


def test_a_plain_directory_is_still_refused(tmp_path):
    with pytest.raises(DataError, match="is a directory, not a dataset file"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------- settings
def test_split_and_column_settings_are_parsed_and_refused_with_reasons():
    assert parse_split_map(["dev=validation"]) == ({"train": "train", "dev": "validation", "test": "test"}, [])
    assert parse_split_map(["validation=dev", "train", "dev=a", "dev=b"])[1] == [
        "data_split_map 'validation=dev': 'validation' is not a raysum split; choose train, dev, test",
        "data_split_map 'train': expected SPLIT=NAME, e.g. dev=validation",
        "data_split_map names dev twice"]
    problems = parse_columns(["fname=id,key", "title=x", "summary=a,,b", "summary=s1,s1"])[1]
    assert problems[0].endswith("fname takes one column (summary and topic take several)")
    assert "'title' is not a raysum column" in problems[1]
    assert "expected FIELD=COLUMN" in problems[2]
    assert "a column is listed twice" in problems[3]


def test_data_settings_go_through_the_config_with_sources(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("data_columns:\n  - fname=id\n  - summary=summary1,summary2\n")
    cfg = validate(resolve({"data_split_map": ["dev=validation"]}, config_file=config))
    assert cfg.experiment.data_split_map == ["dev=validation"]
    assert cfg.experiment.data_columns == ["fname=id", "summary=summary1,summary2"]
    assert cfg.sources["data_split_map"] == "cli"
    assert cfg.sources["data_columns"].startswith("experiment:")
    with pytest.raises(ConfigError) as caught:
        validate(resolve({"data_split_map": ["validation=dev"], "data_columns": ["title=x"],
                          "train_data": "hf://a/b/c"}))
    message = str(caught.value)
    assert "'validation' is not a raysum split" in message and "'title' is not a raysum column" in message
    assert "train_data 'hf://a/b/c': a Hub dataset is hf://ORG/NAME or hf://ORG/NAME:CONFIG" in message


def test_experiment_data_from_a_saved_datasetdict(saved_dict):
    cfg = validate(resolve({"train_data": saved_dict, "dev_data": saved_dict, "test_data": saved_dict,
                            "data_split_map": ["dev=validation"],
                            "data_columns": ["fname=id", "summary=summary,summary1,summary2,summary3"]}))
    data = load_experiment_data(cfg)
    assert len(data.train) == 12 and data.train.loc[0, "references"] == ["요약 0"]
    assert len(data.dev) == 4 and data.dev.loc[0, "references"] == ["요약 100-1", "요약 100-2", "요약 100-3"]
    assert data.test["fname"].tolist() == ["d_200", "d_201", "d_202"]


def test_resume_refuses_a_changed_column_map_and_accepts_older_records(tmp_path):
    cfg = validate(resolve({"data_columns": ["fname=id"]}))
    exp = Experiment(tmp_path)
    exp.write_config(cfg)
    recorded = input_settings(cfg)
    exp.write_run_info({"inputs": recorded})
    changed = validate(resolve({"data_columns": ["fname=key"]}))
    with pytest.raises(ConfigError, match=r"data_columns: \['fname=id'\] -> \['fname=key'\]"):
        check_resume(tmp_path, changed, [])
    # An experiment recorded before these settings existed ran with their defaults.
    older = {k: v for k, v in input_settings(validate(resolve({}))).items()
             if k not in ("data_split_map", "data_columns")}
    exp.write_run_info({"inputs": older})
    assert check_resume(tmp_path, validate(resolve({})), []) == []


# ---------------------------------------------------------------- hf:// and the datasets cache
def _cache_hub_dataset(cache, tmp_path, name: str = "dsum") -> None:
    """What loading ``org/<name>`` once on a connected machine leaves in the datasets cache
    (prepared Arrow files under org___<name>/<config>/<version>/<hash>/)."""
    parquet = {}
    for split, rows in (("train", _dialogsum_like(6)), ("validation", _dialogsum_like(3, offset=50))):
        parquet[split] = str(tmp_path / f"{split}.parquet")
        pd.DataFrame(rows).to_parquet(parquet[split])
    build = tmp_path / "build"
    datasets.load_dataset("parquet", data_files=parquet, cache_dir=str(build))
    prepared = next(p for p in glob.glob(str(build / "parquet" / "*" / "*" / "*")) if os.path.isdir(p))
    target = cache / f"org___{name}" / "default" / "0.0.0" / os.path.basename(prepared)
    shutil.copytree(prepared, target)
    for arrow in target.glob("parquet-*.arrow"):
        arrow.rename(target / arrow.name.replace("parquet-", f"{name}-"))


def test_hub_dataset_from_the_cache_with_split_and_column_maps(tmp_path, monkeypatch):
    cache = tmp_path / "hf_datasets"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _cache_hub_dataset(cache, tmp_path)
    assert offline_problem("hf://org/dsum", "validation") is None
    dev = load_dataset("hf://org/dsum", require_references=True, split="validation", columns={"fname": ["id"]})
    assert dev["fname"].tolist() == ["d_50", "d_51", "d_52"] and dev.loc[0, "references"] == ["요약 50"]
    assert check_dataset("hf://org/dsum", split="train", columns={"fname": ["id"]}).stats["n"] == 6
    with pytest.raises(DataError, match="has no split 'test' \\(splits: train, validation\\)"):
        load_dataset("hf://org/dsum", split="test", columns={"fname": ["id"]})


def test_hub_dataset_missing_offline_names_dataset_split_and_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf_datasets"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _cache_hub_dataset(cache, tmp_path)
    with pytest.raises(DataError) as caught:
        load_dataset("hf://org/absent:dialogues", split="validation")
    message = str(caught.value)
    assert "dataset 'org/absent' (config 'dialogues'), split 'validation', is not in the datasets cache" in message
    assert str(cache) in message and f"HF_HOME={tmp_path / 'hf_home'}" in message
    assert "save_to_disk" in message and "HF_HUB_OFFLINE=1" in message
    # A config that was never loaded is missing too, though the dataset has another one cached.
    assert offline_problem("hf://org/dsum:other", "train") is not None


def test_train_on_an_uncached_hub_dataset_stops_before_ray_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    code = main(["train", "--models", "tiny-bart", "--output_dir", str(out), "--train_data", "hf://org/absent",
                 "--dev_data", "hf://org/absent", "--data_split_map", "dev=validation"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'org/absent', split 'train', is not in the datasets cache" in " ".join(err.split())
    assert "Traceback" not in err
    assert not out.exists()
