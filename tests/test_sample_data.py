"""The bundled Korean sample data: format, content and reproducibility of the generator."""

from __future__ import annotations

import csv
import importlib.resources
import re
import runpy
from itertools import combinations
from pathlib import Path

import pytest

GENERATOR = Path(__file__).resolve().parents[1] / "scripts" / "make_sample_data.py"
SPLITS = {"train": 1500, "dev": 200, "test": 200}
MASK_TAG = re.compile(r"#(?:PhoneNumber|Address|Email|CardNumber|CarNumber|DateOfBirth)#")
TURN = re.compile(r"^(#Person[1-3]#): \S")


def data_dir():
    return importlib.resources.files("raysum") / "resources" / "data"


def read_split(split: str) -> list[dict[str, str]]:
    with (data_dir() / f"{split}.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[dict[str, str]]]:
    return {split: read_split(split) for split in SPLITS}


@pytest.fixture(scope="module")
def generator() -> dict:
    return runpy.run_path(str(GENERATOR), run_name="make_sample_data")


def summaries_of(row: dict[str, str]) -> list[str]:
    return [row[k] for k in ("summary", "summary1", "summary2", "summary3") if k in row]


def test_split_sizes_columns_and_fnames(shipped):
    for split, minimum in SPLITS.items():
        rows = shipped[split]
        assert len(rows) >= minimum, split
        assert [row["fname"] for row in rows] == [f"{split}_{i}" for i in range(len(rows))]
    assert list(shipped["train"][0]) == ["fname", "dialogue", "summary", "topic"]
    assert list(shipped["dev"][0]) == ["fname", "dialogue", "summary", "topic"]
    assert list(shipped["test"][0]) == ["fname", "dialogue", "summary1", "summary2", "summary3", "topic"]
    for rows in shipped.values():
        assert all(value.strip() for row in rows for value in row.values())


def test_topics_cover_everyday_situations(shipped):
    train_topics = {row["topic"] for row in shipped["train"]}
    assert len(train_topics) >= 12
    assert {row["topic"] for row in shipped["test"]} <= train_topics


def test_dialogues_are_turns_of_two_or_three_speakers(shipped):
    three_speakers = 0
    for rows in shipped.values():
        for row in rows:
            lines = row["dialogue"].split("\n")
            assert 4 <= len(lines) <= 20, row["fname"]
            speakers = set()
            for line in lines:
                match = TURN.match(line)
                assert match, (row["fname"], line)
                speakers.add(match.group(1))
            assert {"#Person1#", "#Person2#"} <= speakers <= {"#Person1#", "#Person2#", "#Person3#"}
            three_speakers += len(speakers) == 3
    assert three_speakers > 0


def test_lengths_suit_tiny_models(shipped):
    dialogues = [row["dialogue"] for rows in shipped.values() for row in rows]
    summaries = [s for rows in shipped.values() for row in rows for s in summaries_of(row)]
    assert 150 <= sum(map(len, dialogues)) / len(dialogues) <= 350
    assert max(map(len, dialogues)) <= 900
    assert 30 <= sum(map(len, summaries)) / len(summaries) <= 120
    assert min(map(len, summaries)) >= 20


def test_summaries_are_grounded_reports_not_copies(shipped):
    with_speaker_tags = total = 0
    for rows in shipped.values():
        for row in rows:
            dialogue = row["dialogue"]
            for summary in summaries_of(row):
                assert summary not in dialogue
                assert summary.endswith("다."), summary  # report style: -한다 / -했다 / -이다
                total += 1
                with_speaker_tags += "#Person" in summary
                # every number and masked detail the summary reports is said in the dialogue
                for number in re.findall(r"\d+(?:\.\d+)?", summary):
                    assert number in dialogue, (row["fname"], number, summary)
                for tag in MASK_TAG.findall(summary):
                    assert tag in dialogue, (row["fname"], tag)
    assert with_speaker_tags / total >= 0.7


def test_some_dialogues_mention_masked_details(shipped):
    rows = shipped["train"]
    masked = [row for row in rows if MASK_TAG.search(row["dialogue"])]
    assert 0.05 <= len(masked) / len(rows) <= 0.10
    assert any(MASK_TAG.search(row["summary"]) for row in masked)


def _morphemes(kiwi, text: str) -> list[str]:
    # a #Tag# stays one token: letters only, so Kiwi reads it as one foreign word
    text = re.sub(r"#(\w+)#", lambda m: "QQ" + m.group(1).translate(str.maketrans("0123456789", "abcdefghij")), text)
    return [token.form for token in kiwi.tokenize(text)]


def test_test_references_differ_in_wording(shipped):
    from kiwipiepy import Kiwi
    from rouge_score.rouge_scorer import _score_lcs

    kiwi = Kiwi()
    scores = []
    for row in shipped["test"]:
        refs = summaries_of(row)
        assert len(set(refs)) == 3, row["fname"]
        tokens = [_morphemes(kiwi, ref) for ref in refs]
        scores += [_score_lcs(a, b).fmeasure for a, b in combinations(tokens, 2)]
    mean = sum(scores) / len(scores)
    assert 0.4 <= mean <= 0.9, mean


def test_generator_reproduces_shipped_files(generator, tmp_path, capsys):
    assert generator["main"](["--seed", "42", "--out", str(tmp_path)]) == 0
    assert "ROUGE-L" in capsys.readouterr().out
    for split in SPLITS:
        assert (tmp_path / f"{split}.csv").read_bytes() == (data_dir() / f"{split}.csv").read_bytes(), split


def test_another_seed_gives_other_data(generator):
    first, other = generator["generate"](42), generator["generate"](7)
    assert [ex.dialogue for ex in first["train"]] != [ex.dialogue for ex in other["train"]]
    overlap = {ex.dialogue for ex in first["train"]} & {ex.dialogue for ex in other["train"]}
    assert len(overlap) < 10


def test_dialogues_are_not_repeated(shipped):
    dialogues = [row["dialogue"] for rows in shipped.values() for row in rows]
    assert len(set(dialogues)) == len(dialogues)


def test_references_leave_details_out_and_word_facts_their_own_way(shipped):
    """Not every reference copies every fact of the dialogue: some are brief gists, some skip
    the aside, some write a head count or a time their own way (what keeps the candidate that
    copies most of the dialogue from always being the best one)."""
    numbers = re.compile(r"\d+")
    rows = shipped["test"]
    incomplete = sum(
        any(set(numbers.findall(ref)) < set().union(*(numbers.findall(r) for r in summaries_of(row)))
            for ref in summaries_of(row))
        for row in rows)
    assert incomplete / len(rows) >= 0.3
    native = re.compile(r"(?:^|\s)(?:한|두|세|네|다섯|여섯|일곱|여덟|아홉|열|열한|열두) 명")
    worded = [row for split in ("train", "dev", "test") for row in shipped[split]
              for ref in summaries_of(row) if native.search(ref) and not native.search(row["dialogue"])]
    assert worded
    masked = [row for row in shipped["train"] if MASK_TAG.search(row["dialogue"])]
    unreported = [row for row in masked if not MASK_TAG.search(row["summary"])]
    assert 0.1 <= len(unreported) / len(masked) <= 0.5
