"""`raysum data check` and `raysum score` on the bundled data and on broken files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from raysum.cli import main
from raysum.data import bundled_data


def _write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


def test_data_check_bundled_files(capsys):
    for split, n in (("train", 1600), ("dev", 220), ("test", 220)):
        assert main(["data", "check", str(bundled_data(split))]) == 0
        out = capsys.readouterr().out
        assert f"{n:,} dialogues" in out and "data check passed" in out


@pytest.mark.parametrize("content, message", [
    ("fname,summary\na,요약\n", "missing"),
    ("fname,dialogue,summary\n,#Person1#: 안녕,요약\n", "empty"),
    ("fname,dialogue,summary\na,#Person1#: 안녕,요약\na,#Person1#: 네,요약\n", "duplicate fname"),
    ("fname,dialogue,summary\na,,요약\n", "empty"),
    ("fname,dialogue,summary\na,#Person1#: 안녕,\n", "empty summary"),
    ("fname,dialogue,summary\na,안녕하세요,요약\n", "speaker tag"),
    (b"fname,dialogue,summary\na,#Person1#: \xff\xfe,x\n", "UTF-8"),
])
def test_data_check_reports_each_error_kind(tmp_path, capsys, content, message):
    path = _write(tmp_path / "bad.csv", content)
    assert main(["data", "check", path]) == 2
    captured = capsys.readouterr()
    assert message in captured.out + captured.err


def _predictions(tmp_path, refs: pd.DataFrame, column: str) -> str:
    path = tmp_path / "pred.csv"
    pd.DataFrame({"fname": refs["fname"], "summary": refs[column]}).to_csv(path, index=False)
    return str(path)


def test_score_json_on_bundled_test(tmp_path, capsys):
    test_file = bundled_data("test")
    refs = pd.read_csv(test_file)
    pred = _predictions(tmp_path, refs, "summary1")
    assert main(["score", "--predictions", pred, "--references", str(test_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score", "n"} <= set(result)
    assert result["n"] == len(refs)
    # summary1 is one of the three references: better than chance, below a perfect score
    assert 0.5 < result["rouge1"] < 1.0
    assert result["rouge_sum"] == pytest.approx(result["rouge1"] + result["rouge2"] + result["rougeL"])
    assert result["competition_score"] == pytest.approx(result["rouge_sum"] / 3 * 100)
    assert main(["score", "--predictions", pred, "--references", str(test_file), "--json",
                 "--tokenizer", "whitespace"]) == 0
    ws = json.loads(capsys.readouterr().out)
    assert ws["rouge1"] != result["rouge1"]


def test_score_missing_and_extra_fnames(tmp_path, capsys):
    test_file = bundled_data("dev")
    refs = pd.read_csv(test_file)
    pred = tmp_path / "pred.csv"
    df = pd.DataFrame({"fname": list(refs["fname"][1:]) + ["ghost_1"], "summary": list(refs["summary"][1:]) + ["x"]})
    df.to_csv(pred, index=False)
    assert main(["score", "--predictions", str(pred), "--references", str(test_file)]) == 2
    err = capsys.readouterr().err
    assert "have no prediction" in err and refs["fname"][0] in err and "ghost_1" in err


def test_score_bad_prediction_file(tmp_path, capsys):
    pred = _write(tmp_path / "pred.csv", "name,text\na,b\n")
    assert main(["score", "--predictions", pred, "--references", str(bundled_data("dev"))]) == 2
    assert "missing column 'fname'" in capsys.readouterr().err
