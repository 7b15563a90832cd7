"""raysum.data: loading, the data check, sampling and folds, on small files built per test."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest
from rich.console import Console

from raysum.data import (
    MASK_TAGS,
    SPEAKER_TAGS,
    TAG_PATTERN,
    DataCheck,
    Problem,
    assign_folds,
    bundled_data,
    check_dataset,
    fold_split,
    format_check,
    load_dataset,
    print_check,
    sample_rows,
)
from raysum.errors import ConfigError, DataError

D1 = "#Person1#: 안녕하세요, 오늘 날씨 어때요?\n#Person2#: 맑고 따뜻해요."
D2 = "#Person1#: 내일 회의는 몇 시죠?\n#Person2#:오후 3시입니다.\n#Person1#: 알겠습니다."
S1 = "두 사람이 날씨 이야기를 한다."
S2 = "#Person2#가 회의 시간을 알려준다."


def write_csv(path, header, rows, *, bom=False, newline="\n"):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    if newline == "\r\n":  # also inside quoted dialogue text, as Windows tools write it
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def write_jsonl(path, objects):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects), encoding="utf-8")
    return path


def messages(problems):
    return [str(p) for p in problems]


# ---- loading -------------------------------------------------------------------------------

def test_csv_load(tmp_path):
    path = write_csv(tmp_path / "train.csv", ["fname", "dialogue", "summary", "topic"],
                     [["train_0", D1, S1, "날씨"], ["train_1", D2, S2, ""]])
    df = load_dataset(path)
    assert list(df.columns) == ["fname", "dialogue", "references", "topic"]
    assert df["fname"].tolist() == ["train_0", "train_1"]
    assert df.loc[1, "dialogue"] == D2  # embedded newlines survive quoting
    assert df["references"].tolist() == [[S1], [S2]]
    assert df.loc[0, "topic"] == "날씨" and df.loc[1, "topic"] is None


def test_jsonl_load(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [
        {"fname": "a", "dialogue": D1, "summary": S1, "topic": "날씨"},
        {"fname": "b", "dialogue": D2, "summary": S2, "topic": "회의"},
    ])
    df = load_dataset(path, require_references=True)
    assert df["references"].tolist() == [[S1], [S2]]
    assert df["topic"].tolist() == ["날씨", "회의"]


def test_bom_and_crlf(tmp_path):
    path = write_csv(tmp_path / "win.csv", ["fname", "dialogue", "summary", "topic"],
                     [["t0", D1, S1, "x"], ["t1", D2, S2, "y"]], bom=True, newline="\r\n")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n#Person2#" in raw
    df = load_dataset(path)
    assert df["fname"].tolist() == ["t0", "t1"]  # the BOM is not glued to the first column name
    assert df["dialogue"].tolist() == [D1, D2]
    assert "\r" not in "".join(df["dialogue"]) + "".join(df["topic"])


def test_crlf_jsonl_with_escaped_crlf(tmp_path):
    path = tmp_path / "win.jsonl"
    line = json.dumps({"fname": "a", "dialogue": D1.replace("\n", "\r\n"), "summary": S1})
    path.write_bytes(b"\xef\xbb\xbf" + (line + "\r\n").encode())
    assert load_dataset(path).loc[0, "dialogue"] == D1


def test_multi_reference_csv(tmp_path):
    path = write_csv(tmp_path / "dev.csv", ["fname", "dialogue", "summary1", "summary2", "summary3", "topic"],
                     [["dev_0", D1, "요약 하나", "요약 둘", "요약 셋", "날씨"]])
    df = load_dataset(path, require_references=True)
    assert df.loc[0, "references"] == ["요약 하나", "요약 둘", "요약 셋"]
    assert check_dataset(path).stats["n_references"] == 3


def test_dialogsum_jsonl_with_numbered_topics(tmp_path):
    path = write_jsonl(tmp_path / "dialogsum.test.jsonl", [
        {"fname": "test_0_1", "dialogue": D1, "summary1": "s1", "summary2": "s2", "summary3": "s3",
         "topic1": "weather", "topic2": "chat", "topic3": "small talk"},
        {"fname": "test_1_1", "dialogue": D2, "summary1": "t1", "summary2": "t2", "summary3": "t3",
         "topic1": "", "topic2": "meeting", "topic3": "work"},
    ])
    check = check_dataset(path)
    assert check.ok and not check.warnings, messages(check.warnings)
    df = load_dataset(path)
    assert df["references"].tolist() == [["s1", "s2", "s3"], ["t1", "t2", "t3"]]
    assert df["topic"].tolist() == ["weather", "meeting"]  # first non-empty topic


def test_test_file_without_summary(tmp_path):
    path = write_csv(tmp_path / "test.csv", ["fname", "dialogue"], [["test_0", D1], ["test_1", D2]])
    df = load_dataset(path)
    assert df["references"].tolist() == [[], []]
    assert df["topic"].tolist() == [None, None]
    check = check_dataset(path)
    assert check.ok and check.stats["n_references"] == 0 and check.stats["summary_chars"] is None
    with pytest.raises(DataError, match="no summary column"):
        load_dataset(path, require_references=True)


# ---- errors --------------------------------------------------------------------------------

def test_file_level_errors(tmp_path):
    assert "file not found" in str(check_dataset(tmp_path / "nope.csv").errors[0])
    assert "unknown file extension '.txt'" in str(check_dataset(_touch(tmp_path / "data.txt")).errors[0])
    assert "directory" in str(check_dataset(tmp_path).errors[0])
    assert "empty file" in str(check_dataset(_touch(tmp_path / "empty.csv")).errors[0])
    missing = write_csv(tmp_path / "cols.csv", ["name", "text"], [["a", D1]])
    errors = messages(check_dataset(missing).errors)
    assert any(e.startswith("fname: required column is missing") for e in errors)
    assert any(e.startswith("dialogue: required column is missing") for e in errors)


def _touch(path):
    path.write_bytes(b"")
    return path


def test_undecodable_bytes_say_where(tmp_path):
    path = tmp_path / "cp949.csv"
    good = "fname,dialogue\na,\"#Person1#: hi\n#Person2#: yo\"\n".encode()
    path.write_bytes(good + "b,\"#Person1#: 안녕\"\n".encode("cp949"))
    check = check_dataset(path)
    assert not check.ok
    message = str(check.errors[0])
    assert "not valid UTF-8" in message and "line 4" in message and f"byte offset {len(good) + 14}" in message
    assert "CP949" in message
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_dataset(path)


def test_every_row_error_with_record_numbers(tmp_path):
    rows = [
        ["ok_0", D1, S1, "t"],                     # record 1 spans two lines
        ["", D1, S1, "t"],                         # 2: empty fname
        ["ok_0", D2, S2, "t"],                     # 3: duplicate of record 1
        ["ok_3", "   ", S1, "t"],                  # 4: empty dialogue
        ["ok_4", D1, "", "t"],                     # 5: empty summary
        ["ok_5", D1 + "\n그냥 한 줄\n#Person1#: 네", S1, "t"],  # 6: turn 3 untagged
        ["ok_6", D2, S2, "t"],                     # 7: fine
    ]
    path = write_csv(tmp_path / "bad.csv", ["fname", "dialogue", "summary", "topic"], rows)
    check = check_dataset(path)
    found = {(p.row, p.column) for p in check.errors}
    assert found == {(2, "fname"), (3, "fname"), (4, "dialogue"), (5, "summary"), (6, "dialogue")}
    text = messages(check.errors)
    assert "row 2 (fname): empty fname" in text
    assert "row 4 (dialogue): empty text" in text
    assert "row 5 (summary): empty summary" in text
    assert any(t.startswith("row 3 (fname): duplicate fname 'ok_0' (first seen in row 1)") for t in text)
    assert any(t.startswith("row 6 (dialogue): turn 3 of 4 does not start with a speaker tag") for t in text)

    with pytest.raises(DataError) as raised:
        load_dataset(path)
    assert raised.value.problems == text  # every error at once, not just the first
    assert "invalid data in" in str(raised.value) and len(raised.value.problems) == 5


def test_jsonl_errors_use_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([
        json.dumps({"fname": "a", "dialogue": D1, "summary": S1}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"fname": "d", "dialogue": "no tag here", "summary": S1}),
        json.dumps({"fname": "e", "dialogue": D1, "summary": ["", S2]}),
    ]) + "\n", encoding="utf-8")
    check = check_dataset(path)
    found = {(p.row, p.column) for p in check.errors}
    assert found == {(2, None), (3, None), (4, "dialogue"), (5, "summary[1]")}


def test_csv_structure_errors(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text(f'fname,dialogue\na,"{D1}"\nb,#Person1#: 하나, 둘\n', encoding="utf-8")
    assert [(p.row, "fields where the header has 2" in p.message) for p in check_dataset(path).errors] == [(2, True)]
    path.write_text(f'fname,dialogue\na,"{D1}"\nb,"#Person1#: 끝나지 않은 따옴표\n', encoding="utf-8")
    errors = check_dataset(path).errors
    assert errors[0].row == 2 and "cannot parse CSV" in errors[0].message


def test_speaker_tag_whitespace_optional(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"fname": "a", "dialogue": "#Person1#:붙여 씀\n#Person2#:\t탭\n  #Person1#:   공백"}])
    assert check_dataset(path).ok


# ---- warnings ------------------------------------------------------------------------------

def test_warnings_do_not_raise(tmp_path):
    long_dialogue = "\n".join(f"#Person{1 + i % 2}#: 말 {i}" for i in range(61))
    path = write_csv(tmp_path / "warn.csv", ["fname", "dialogue", "summary", "extra"], [
        ["long", long_dialogue, S1, ""],
        ["wide", "#Person1#: " + "가" * 2001 + "\n#Person2#: 네", S1, ""],
        ["short", "#Person1#: 안녕", "인사", ""],
        ["wordy", "#Person1#: 네\n#Person2#: 응", "한 사람이 네라고 하고 다른 사람이 응이라고 한다.", ""],
        ["odd", "#Person1#: #Person8# 씨와 #Foo# 얘기\n#Person2#: 그래", "#Bar# 요약", ""],
    ])
    check = check_dataset(path)
    assert check.ok
    got = {(p.row, p.column, p.message.split(":")[0].split(" (")[0]) for p in check.warnings}
    assert got == {
        (None, None, "ignored column(s)"),
        (1, "dialogue", "long dialogue"),
        (2, "dialogue", "long dialogue"),
        (3, "dialogue", "very short dialogue"),
        (4, "summary", "summary"),
        (5, "dialogue", "unusual tags #Person8#, #Foo#"),
        (5, "summary", "unusual tag #Bar#"),
    }
    assert "longer than its dialogue" in next(str(p) for p in check.warnings if p.row == 4)
    assert len(load_dataset(path)) == 5


def test_mask_tags_accepted(tmp_path):
    dialogue = "\n".join(f"#Person{i % 3 + 1}#: 제 정보는 {tag}입니다." for i, tag in enumerate(MASK_TAGS))
    path = write_jsonl(tmp_path / "masks.jsonl", [{"fname": "m", "dialogue": dialogue,
                                                    "summary": "#Person1#의 #PhoneNumber#와 #Email#"}])
    check = check_dataset(path)
    assert check.ok and check.warnings == [], messages(check.warnings)
    assert check.stats["speakers"] == {"min": 3, "max": 3}


def test_tag_constants():
    assert SPEAKER_TAGS == tuple(f"#Person{i}#" for i in range(1, 8))
    assert "#PhoneNumber#" in MASK_TAGS and "#CarNumber#" in MASK_TAGS and len(MASK_TAGS) == 8
    assert TAG_PATTERN.findall("#Person1#: C# 말고 #Email# 와 #X9# #1# ##") == ["#Person1#", "#Email#", "#X9#"]


def test_stats(tmp_path):
    path = write_csv(tmp_path / "s.csv", ["fname", "dialogue", "summary", "topic"],
                     [["a", D1, S1, "날씨"], ["b", D2, S2, "회의"], ["c", D2, S2, "회의"]])
    stats = check_dataset(path).stats
    assert stats["n"] == 3 and stats["n_references"] == 1 and stats["n_topics"] == 2
    assert stats["top_topics"][0] == ("회의", 2)
    assert stats["dialogue_chars"] == {"min": len(D1), "mean": round((len(D1) + 2 * len(D2)) / 3, 1),
                                       "median": len(D2), "max": len(D2)}
    assert stats["dialogue_turns"]["min"] == 2 and stats["dialogue_turns"]["max"] == 3
    assert stats["summary_chars"]["min"] == min(len(S1), len(S2))
    assert stats["speakers"] == {"min": 2, "max": 2}


def test_problem_str_and_print_check(tmp_path):
    assert str(Problem(12, "dialogue", "empty text")) == "row 12 (dialogue): empty text"
    assert str(Problem(None, "fname", "missing")) == "fname: missing"
    assert str(Problem(None, None, "file not found")) == "file not found"
    assert DataCheck().ok and not DataCheck(errors=[Problem(1, None, "x")]).ok

    path = write_csv(tmp_path / "p.csv", ["fname", "dialogue", "summary"],
                     [["a", D1, S1], ["a", D1 + "\n[bold]태그 없음[/bold]", S1]])
    check = check_dataset(path)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_check(check, path, console)
    out = console.file.getvalue()
    assert "2 dialogues" in out and "dialogue characters" in out and "median" in out
    assert "row 2 (fname): duplicate fname 'a'" in out
    assert "'[bold]태그 없음[/bold]'" in out  # file text is printed as is, never as rich markup
    assert "data check failed: 2 error(s)" in out
    assert format_check(DataCheck(), "x.csv") is not None


# ---- sampling and folds --------------------------------------------------------------------

def frame(n):
    return pd.DataFrame({"fname": [f"f{i}" for i in range(n)], "dialogue": [D1] * n,
                         "references": [[S1]] * n, "topic": [None] * n})


def test_sample_rows_seeded():
    df = frame(100)
    a, note = sample_rows(df, 10, seed=1)
    b, _ = sample_rows(df, 10, seed=1)
    c, _ = sample_rows(df, 10, seed=2)
    assert note is None and len(a) == 10
    assert a["fname"].tolist() == b["fname"].tolist()
    assert a["fname"].tolist() != c["fname"].tolist()
    assert a["fname"].tolist() != df["fname"].head(10).tolist()  # random, not the first N
    positions = [int(f[1:]) for f in a["fname"]]
    assert positions == sorted(positions)  # original order kept
    assert a.index.tolist() == list(range(10))


def test_sample_rows_all_rows_and_invalid():
    df = frame(1600)
    all_rows, note = sample_rows(df, 5000, seed=0)
    assert len(all_rows) == 1600
    assert note == "max_train_samples=5,000 is above the 1,600 rows: using all rows"
    assert sample_rows(df, None, seed=0) [1] is None and len(sample_rows(df, None, seed=0)[0]) == 1600
    assert "equals" in sample_rows(df, 1600, seed=0)[1]
    for n in (0, -3):
        with pytest.raises(ValueError, match="positive"):
            sample_rows(df, n, seed=0)


def test_assign_folds():
    df = frame(23)
    folds = assign_folds(df, k=5, seed=42)
    assert list(folds.columns) == ["fname", "fold"]
    assert folds["fname"].tolist() == df["fname"].tolist()  # every fname exactly once
    sizes = folds["fold"].value_counts().sort_index().tolist()
    assert len(sizes) == 5 and max(sizes) - min(sizes) <= 1 and sum(sizes) == 23
    assert assign_folds(df, 5, 42).equals(folds)
    assert not assign_folds(df, 5, 7)["fold"].equals(folds["fold"])
    for k in (1, 0):
        with pytest.raises(ValueError, match="k-fold"):
            assign_folds(df, k, 42)
    with pytest.raises(ConfigError, match="k_folds=24 is more than the 23 training dialogue"):
        assign_folds(df, 24, 42)
    with pytest.raises(ValueError, match="unique"):
        assign_folds(pd.concat([df, df.head(1)]), 5, 42)


def test_fold_split():
    df = frame(20)
    folds = assign_folds(df, k=4, seed=0)
    heldout_all = []
    for fold in range(4):
        train_df, heldout_df = fold_split(df, folds, fold)
        assert len(train_df) + len(heldout_df) == 20
        assert not set(train_df["fname"]) & set(heldout_df["fname"])
        assert set(folds.loc[folds["fold"] == fold, "fname"]) == set(heldout_df["fname"])
        heldout_all += heldout_df["fname"].tolist()
    assert sorted(heldout_all) == sorted(df["fname"])  # each dialogue held out exactly once
    with pytest.raises(ValueError, match="fold must be"):
        fold_split(df, folds, 4)
    with pytest.raises(ValueError, match="no fold"):
        fold_split(frame(21), folds, 0)


# ---- bundled data --------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_bundled_data_loads(split):
    path = bundled_data(split)
    assert path.name == f"{split}.csv" and path.parent.name == "data"
    if not path.exists():
        pytest.skip(f"bundled {split}.csv not generated yet")
    check = check_dataset(path)
    assert check.ok, messages(check.errors)
    df = load_dataset(path, require_references=split != "test")
    assert len(df) == check.stats["n"] > 0


def test_bundled_data_rejects_unknown_split():
    with pytest.raises(ValueError, match="train, dev, test"):
        bundled_data("validation")
