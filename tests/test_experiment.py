"""The experiment directory package: the candidates schema checked on read, atomic writes,
damaged files named in the error, a torn metrics line left out."""

from __future__ import annotations

import pandas as pd
import pytest

from raysum.errors import RaysumError
from raysum.experiment import CANDIDATE_COLUMNS, Experiment, UnitFiles, layout
from raysum.storage import write_atomic


def _candidates(**drop) -> pd.DataFrame:
    row = {"split": "dev", "fname": "dev_0", "model": "tiny-bart", "fold": 0, "tta": "none", "decoding": "d0",
           "text": "요약", "n_tokens": 2, "logprob": -0.5}
    return pd.DataFrame([{k: v for k, v in row.items() if k not in drop}])


def test_candidates_round_trip_in_schema_order(tmp_path):
    exp = Experiment(tmp_path)
    frame = _candidates()[list(reversed(CANDIDATE_COLUMNS))]
    exp.write_candidates(frame)
    back = exp.candidates()
    assert list(back.columns) == list(CANDIDATE_COLUMNS) and str(back["fold"].dtype) == "Int64"
    assert (tmp_path / layout.CANDIDATES).is_file() and not list(tmp_path.glob(".*tmp"))


def test_a_table_from_before_the_decoding_column_reads_as_d0(tmp_path):
    exp = Experiment(tmp_path)
    exp.write_candidates(_candidates(decoding=None))
    assert exp.candidates()["decoding"].tolist() == ["d0"]


def test_a_missing_column_is_an_error_naming_the_file(tmp_path):
    exp = Experiment(tmp_path)
    exp.write_candidates(_candidates(logprob=None))
    with pytest.raises(RaysumError, match=r"candidates\.parquet.*missing column\(s\) logprob"):
        exp.candidates()


def test_a_damaged_table_or_json_is_an_error_naming_the_file(tmp_path):
    exp = Experiment(tmp_path)
    (tmp_path / layout.CANDIDATES).write_bytes(b"PAR1 not really")
    with pytest.raises(RaysumError, match="candidates.parquet: cannot be read"):
        exp.candidates()
    (tmp_path / layout.SCORES).write_text('{"units": ', encoding="utf-8")
    with pytest.raises(RaysumError, match=r"scores\.json is damaged"):
        exp.scores()
    with pytest.raises(RaysumError, match="not a raysum experiment directory"):
        exp.resolved()


def test_an_interrupted_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "scores.json"
    target.write_text("old", encoding="utf-8")

    def fail_halfway(temp):
        temp.write_text("half", encoding="utf-8")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, fail_halfway)
    assert target.read_text(encoding="utf-8") == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_unit_files_skip_a_torn_metrics_line_and_know_when_done(tmp_path):
    unit = Experiment(tmp_path).unit("tiny-bart", 1)
    assert unit.path == tmp_path / layout.UNITS_DIR / "tiny-bart" / "fold1" and not unit.done()
    unit.path.mkdir(parents=True)
    unit.metrics_file.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo', encoding="utf-8")
    assert unit.metrics() == [{"step": 1, "loss": 2.0}]
    unit.info_file.write_text("{", encoding="utf-8")
    assert not unit.done()  # a damaged summary: the unit runs again
    unit.write_info({"status": "done"})
    assert unit.done() and UnitFiles(unit.path).info() == {"status": "done"}
    assert Experiment(tmp_path).unit("tiny-bart", None).path.name == layout.FULL_FOLD
