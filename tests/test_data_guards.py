"""Bad data refused or flagged before any work: control characters, fnames shared between
splits, k_folds above the training rows, and `raysum score` on odd prediction files."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from raysum.cli import main
from raysum.config.resolve import resolve
from raysum.data import assign_folds, bundled_data, check_dataset, check_splits, load_dataset
from raysum.errors import ConfigError, DataError, RaysumError
from raysum.experiment import Experiment
from raysum.metrics import tokenize_many

D1 = "#Person1#: 안녕하세요, 오늘 날씨 어때요?\n#Person2#: 맑고 따뜻해요."
D2 = "#Person1#: 내일 회의는 몇 시죠?\n#Person2#: 오후 3시입니다.\n#Person3#: 저도 갈게요."
S1 = "두 사람이 날씨 이야기를 한다."


def write_csv(path, rows, columns=("fname", "dialogue", "summary")) -> str:
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return str(path)


def data_files(tmp_path, train, dev, test) -> dict[str, str]:
    """CSV files from lists of (fname, dialogue) pairs; train and dev get a summary each."""
    paths = {}
    for split, pairs in (("train", train), ("dev", dev), ("test", test)):
        rows = [(f, d, S1) for f, d in pairs] if split != "test" else list(pairs)
        columns = ("fname", "dialogue", "summary") if split != "test" else ("fname", "dialogue")
        paths[split] = write_csv(tmp_path / f"{split}.csv", rows, columns)
    return paths


def train_args(out, paths: dict[str, str], *extra: str) -> list[str]:
    return ["train", "--models", "tiny-bart", "--train_data", paths["train"], "--dev_data", paths["dev"],
            "--test_data", paths["test"], "--output_dir", str(out), *extra]


# ---- control characters --------------------------------------------------------------------

def test_control_characters_are_refused_with_row_and_column(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [
        ("ok_0", "#Person1#: 탭은\t괜찮아요.\n#Person2#: 네.", S1),  # tab and newline are allowed
        ("a\x00b", D1, S1),
        ("ok_2", "#Person1#: 안녕\x1b[0m\n#Person2#: 네\x7f", S1),
        ("ok_3", D1, "요약\x9f입니다"),
    ])
    errors = [str(p) for p in check_dataset(path).errors]
    assert len(errors) == 3, errors
    assert errors[0].startswith("row 2 (fname): control character U+0000 (NUL)") and "'a\\x00b'" in errors[0]
    assert errors[1].startswith("row 3 (dialogue): control character U+001B (ESC)")
    assert "2 control characters in all" in errors[1]
    assert errors[2].startswith("row 4 (summary): control character U+009F at character 3")
    with pytest.raises(DataError, match=r"row 2 \(fname\): control character U\+0000"):
        load_dataset(path)


def test_escaped_control_characters_in_jsonl_are_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [{"fname": "a\u0000", "dialogue": D1, "summary": ["좋은 요약", "나쁜\u0085요약"]},
            {"fname": "b", "dialogue": "#Person1#: 안녕\u000c하세요\n#Person2#: 네", "summary": [S1]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    errors = [str(p) for p in check_dataset(path).errors]
    assert any(e.startswith("row 1 (fname): control character U+0000 (NUL)") for e in errors), errors
    assert any(e.startswith("row 1 (summary[2]): control character U+0085 (NEL)") for e in errors), errors
    assert any(e.startswith("row 2 (dialogue): control character U+000C at character 14") for e in errors), errors


def test_data_check_names_a_nul_fname(tmp_path, capsys):
    path = write_csv(tmp_path / "test.csv", [("t\x00", D1)], columns=("fname", "dialogue"))
    assert main(["data", "check", path]) != 0
    out = capsys.readouterr().out
    assert "row 1 (fname): control character U+0000 (NUL)" in out and "data check failed" in out


def test_a_nul_fname_in_the_test_file_stops_a_run_before_anything_is_written(tmp_path, capsys):
    paths = data_files(tmp_path, train=[("t0", D1), ("t1", D2)], dev=[("d0", D1)], test=[("x\x00", D1)])
    out = tmp_path / "out"
    assert main(train_args(out, paths)) == 2
    err = capsys.readouterr().err
    assert "test.csv" in err and "row 1 (fname): control character U+0000 (NUL)" in err
    assert not out.exists()


# ---- fnames shared between splits ----------------------------------------------------------

def test_train_and_test_sharing_fnames_is_an_error_before_any_work(tmp_path, capsys):
    shared = [f"s{i}" for i in range(7)]
    paths = data_files(tmp_path, train=[(f, D1) for f in ["t0", *shared]], dev=[("d0", D1)],
                       test=[(f, D2) for f in [*shared, "x0"]])
    out = tmp_path / "out"
    assert main(train_args(out, paths)) == 2
    err = capsys.readouterr().err
    assert "7 fname(s) are in both train and test ('s0', 's1', 's2', 's3', 's4' ...)" in err
    assert "0 of them with the same dialogue" in err and "'s6'" not in err
    assert not out.exists()


def test_train_and_dev_sharing_fnames_is_a_note(tmp_path):
    dialogues = {"train": {"x": D1, "y": D1, "t": D1}, "dev": {"x": D2, "y": D1}, "test": {"x": D1}}
    errors, notes = check_splits({"train": dialogues["train"], "dev": dialogues["dev"]})
    assert errors == []
    assert notes == ["2 fname(s) are in both train and dev ('x', 'y'); 1 of them with the same dialogue (each "
                     "split keeps its own dialogue: dev scores on the same dialogues are not held-out scores)"]
    errors, notes = check_splits(dialogues)
    assert len(errors) == 1 and errors[0].startswith("1 fname(s) are in both train and test ('x')")
    assert any(n.startswith("1 fname(s) are in both dev and test ('x')") for n in notes)


def test_a_run_prints_the_shared_fname_note_and_goes_on(tmp_path, capsys, monkeypatch):
    paths = data_files(tmp_path, train=[("x", D1), ("t1", D2)], dev=[("x", D2)], test=[("y", D1)])
    cfg = resolve({"models": ["tiny-bart"], "train_data": paths["train"], "dev_data": paths["dev"],
                   "test_data": paths["test"], "output_dir": str(tmp_path / "out")})
    from raysum.pipeline import _experiment, _run

    data = _experiment.load_experiment_data(cfg)
    assert data.dev["dialogue"].tolist() == [D2] and "x" in data.train["fname"].tolist()

    class Stop(RaysumError):
        pass

    def no_ray(*args, **kwargs):
        raise Stop("stopped where Ray would start")

    monkeypatch.setattr(_run, "init_ray", no_ray)
    assert main(train_args(tmp_path / "out", paths)) == 1
    captured = capsys.readouterr()
    assert "note: 1 fname(s) are in both train and dev ('x')" in captured.out
    assert "stopped where Ray would start" in captured.err


# ---- per-dialogue lookups by (split, fname) ------------------------------------------------

def _experiment_with_shared_fname(tmp_path) -> Experiment:
    exp = Experiment(tmp_path / "exp")
    test_dialogue = "#Person1#: 셋째 대화입니다.\n#Person2#: 그렇군요."
    for split, dialogue in (("train", D1), ("dev", D2), ("test", test_dialogue)):
        exp.write_input(split, pd.DataFrame({"fname": ["x"], "dialogue": [dialogue],
                                             "references": pd.Series([[S1]], dtype=object)}))
    return exp


def test_stacking_features_use_each_splits_own_dialogue(tmp_path):
    from raysum.ensemble import candidate_features, prepare

    exp = _experiment_with_shared_fname(tmp_path)
    dialogues = exp.dialogues()
    assert dialogues["oof"] == {"x": D1} and dialogues["dev"] == {"x": D2}
    text = "#Person3#가 회의는 오후 3시입니다 라고 말한다."  # words of the dev dialogue only
    candidates = pd.DataFrame({"split": ["oof", "oof", "dev", "dev", "test"], "fname": ["x"] * 5,
                               "model": ["a", "b", "a", "b", "a"], "fold": [0, 0, 0, 1, 0],
                               "tta": ["none"] * 5, "text": [text, S1, text, S1, text]})
    prepared = prepare(candidates, dialogues, tokenizer="whitespace")
    features = candidate_features(prepared)
    split = prepared.candidates["split"]
    mine = prepared.candidates["text"] == text
    # #Person3# speaks in the dev dialogue only
    assert features.loc[mine & (split == "dev"), "speaker_tags"].tolist() == [1.0]
    assert features.loc[mine & (split == "oof"), "speaker_tags"].tolist() == [0.0]
    n_text = len(tokenize_many([text], "whitespace")[0])
    for name, dialogue in (("oof", D1), ("dev", D2)):
        expected = n_text / len(tokenize_many([dialogue], "whitespace")[0])
        assert features.loc[mine & (split == name), "length_to_dialogue"].tolist() == [pytest.approx(expected)]
    assert (prepared.dialogue_rouge[(mine & (split == "oof")).to_numpy()] == 0).all()
    assert (prepared.dialogue_rouge[(mine & (split == "dev")).to_numpy(), 0] > 0).all()  # ROUGE-1


def test_prepare_names_the_split_of_a_missing_dialogue():
    from raysum.ensemble import prepare

    candidates = pd.DataFrame({"split": ["oof", "dev"], "fname": ["x", "x"], "model": ["a", "a"], "text": [S1, S1]})
    with pytest.raises(ValueError, match=r"no dialogue for 1 fname.*'dev/x'"):
        prepare(candidates, {"oof": {"x": D1}, "dev": {}}, tokenizer="whitespace")


def test_tta_label_maps_are_kept_per_split(tmp_path):
    from raysum.pipeline import map_back_labels
    from raysum.pipeline._variants import write_tta_inputs
    from raysum.tta import map_back

    exp = _experiment_with_shared_fname(tmp_path)
    cfg = SimpleNamespace(experiment=SimpleNamespace(use_tta=True, tta_strategies=["reorder"], tta_num_aug=1, seed=3))
    other = "#Person2#: 내일 봬요.\n#Person3#: 네, 내일 봬요."  # no #Person1#: another swap
    frames = {"train": pd.DataFrame({"fname": ["x"], "dialogue": [D1]}),
              "dev": pd.DataFrame({"fname": ["x"], "dialogue": [other]})}
    write_tta_inputs(exp, cfg, frames)
    maps = exp.label_maps()
    assert sorted(maps["split"]) == ["dev", "oof"]
    by_split = {s: json.loads(m) for s, m in zip(maps["split"], maps["label_map"])}
    assert by_split["oof"] != by_split["dev"]
    text = "#Person1#와 #Person2#와 #Person3#가 이야기한다."
    candidates = pd.DataFrame({"split": ["oof", "dev"], "fname": ["x", "x"], "tta": ["reorder_1"] * 2,
                               "text": [text, text]})
    mapped = map_back_labels(candidates, maps)
    assert mapped["text"].tolist() == [map_back(text, by_split["oof"]), map_back(text, by_split["dev"])]


# ---- k_folds above the training rows -------------------------------------------------------

def test_k_folds_above_the_sampled_training_rows_is_a_config_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"k_folds=4 is more than the 3 training dialogue"):
        assign_folds(pd.DataFrame({"fname": ["a", "b", "c"]}), k=4, seed=0)
    out = tmp_path / "out"
    rc = main(["train", "--mode", "kfold", "--models", "tiny-bart", "--max_train_samples", "3", "--k_folds", "5",
               "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "k_folds=5 is more than the 3 training dialogue(s)" in err and "Traceback" not in err
    assert not out.exists()


# ---- raysum score --------------------------------------------------------------------------

def _dev_predictions(tmp_path, edit=None) -> str:
    refs = pd.read_csv(bundled_data("dev"))
    preds = pd.DataFrame({"fname": refs["fname"], "summary": refs["summary"]})
    if edit:
        preds = edit(preds)
    path = tmp_path / "pred.csv"
    preds.to_csv(path, index=False)
    return str(path)


def _score(pred: str, *extra: str) -> list[str]:
    return ["score", "--predictions", pred, "--references", str(bundled_data("dev")), "--tokenizer", "whitespace",
            *extra]


def test_score_warns_about_empty_predictions(tmp_path, capsys):
    def blank(preds):
        preds.loc[[0, 3], "summary"] = ["", "   "]
        return preds

    assert main(_score(_dev_predictions(tmp_path, blank), "--json")) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["n_empty"] == 2
    assert "warning: 2 of 220 predictions are empty (each scores 0): dev_0, dev_3" in captured.err
    assert main(_score(_dev_predictions(tmp_path), "--json")) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n_empty"] == 0 and "empty" not in captured.err


def test_score_strips_prediction_fnames_and_header(tmp_path, capsys):
    def pad(preds):
        preds["fname"] = " " + preds["fname"] + "  "
        return preds.rename(columns={"summary": " summary"})

    assert main(_score(_dev_predictions(tmp_path, pad), "--json")) == 0
    padded = json.loads(capsys.readouterr().out)
    assert main(_score(_dev_predictions(tmp_path), "--json")) == 0
    assert padded == json.loads(capsys.readouterr().out)


def test_score_reports_a_missing_column_once_and_exits_2(tmp_path, capsys):
    pred = _dev_predictions(tmp_path, lambda p: p.rename(columns={"summary": "text"}))
    assert main(_score(pred)) == 2
    err = capsys.readouterr().err
    assert err.count("missing column 'summary'") == 1 and "columns found: fname, text" in err
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert main(_score(str(empty))) == 2
    assert "empty file" in capsys.readouterr().err
