"""Files raysum reads back and writes, hardened: a damaged file read back is an error naming
it and what to do (or a note, where raysum can do without it or makes it again); every
artifact is written to a temporary file and renamed; a replaced submission is kept.

No Ray: fake experiment directories from tests/builders.py, the stages called directly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from rich.console import Console

from raysum.config.resolve import resolve
from raysum.errors import RaysumError
from raysum.experiment import Experiment, layout

from builders import write_experiment

ROOT = Path(__file__).resolve().parents[1]


def _inputs() -> dict[str, pd.DataFrame]:
    return {split: pd.DataFrame({"fname": [f"{split}_{i}" for i in range(3)],
                                 "dialogue": [f"#Person1#: 대화 {i}" for i in range(3)],
                                 "references": [[f"요약 {i}"] for i in range(3)]})
            for split in layout.DATA_SPLITS}


def _experiment(path: Path, *, mode: str = "single", **files) -> Experiment:
    cli = {"mode": mode, "models": ["tiny-bart"], **({"k_folds": 2} if mode == "kfold" else {})}
    write_experiment(path, config_tree=resolve(cli).tree(), inputs=_inputs(), **files)
    return Experiment(path)


def _names(path: Path):
    return re.escape(str(path))


def _truncate(path: Path, keep: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:keep])


# --------------------------------------------------------------------------- A. read back


@pytest.mark.parametrize("damage", ["list", "empty", "plain_leaf", "unknown_setting", "unknown_model_setting", "torn"])
def test_a_config_json_of_another_shape_names_the_file(tmp_path, damage):
    exp = _experiment(tmp_path)
    file = tmp_path / layout.CONFIG_JSON
    tree = json.loads(file.read_text(encoding="utf-8"))
    if damage == "list":
        text = json.dumps([tree])
    elif damage == "empty":
        text = "{}"
    elif damage == "plain_leaf":
        text = json.dumps({**tree, "epochs": 3})
    elif damage == "unknown_setting":
        text = json.dumps({**tree, "warp_speed": {"value": 9, "source": "cli"}})
    elif damage == "unknown_model_setting":
        tree["models"]["tiny-bart"]["warp_speed"] = {"value": 9, "source": "cli"}
        text = json.dumps(tree)
    else:
        text = json.dumps(tree)[:200]
    file.write_text(text, encoding="utf-8")
    for read in (exp.resolved, exp.config_tree):
        with pytest.raises(RaysumError, match=_names(file) + r" is damaged .*restore it from a copy or start a new"):
            read()


def test_the_report_command_names_a_damaged_config_without_a_traceback(tmp_path, capsys):
    from raysum.cli import main

    _experiment(tmp_path)
    (tmp_path / layout.CONFIG_JSON).write_text('[{"mode": "single"}]', encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / layout.CONFIG_JSON) in err.replace("\n", "") and "Traceback" not in err


def test_scores_or_candidates_of_another_shape_say_how_to_rebuild_them(tmp_path):
    exp = _experiment(tmp_path, scores={"units": {}})
    exp.scores_file.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(RaysumError, match=_names(exp.scores_file) + r" is damaged \(a list .*raysum train --resume"):
        exp.scores()
    exp.write_candidates(pd.DataFrame({"split": ["dev"], "fname": ["dev_0"]}))
    _truncate(exp.candidates_file)
    with pytest.raises(RaysumError, match=_names(exp.candidates_file) + r": cannot be read .*raysum train --resume"):
        exp.candidates()


def test_damaged_inputs_folds_and_label_maps_are_errors_naming_the_file(tmp_path):
    exp = _experiment(tmp_path, folds=pd.DataFrame({"fname": ["train_0"], "fold": [0]}))
    train = exp.input_file("train")
    _truncate(train)
    with pytest.raises(RaysumError, match=_names(train) + r" is damaged \(not a readable Parquet file"):
        exp.references()
    exp.write_input("train", _inputs()["train"])
    exp.write_input("dev", pd.DataFrame({"name": ["dev_0"]}))  # another version's columns
    with pytest.raises(RaysumError, match=_names(exp.input_file("dev")) + r" is damaged \(missing column\(s\) fname"):
        exp.dialogues()
    folds = tmp_path / layout.FOLDS_CSV
    folds.write_text("name,k\nx,1\n", encoding="utf-8")
    with pytest.raises(RaysumError, match=_names(folds) + r" is damaged \(missing column\(s\) fname, fold"):
        exp.folds()
    maps = exp.label_maps_file()
    pd.DataFrame({"fname": ["dev_0"], "tta": ["reorder_1"], "label_map": ["{torn"]}).to_parquet(maps)
    with pytest.raises(RaysumError, match=_names(maps) + r" is damaged \(a label_map is not a JSON mapping"):
        exp.label_maps()


def test_descriptive_files_are_left_out_with_a_note(tmp_path):
    exp = _experiment(tmp_path, run={"command_line": ["raysum"]}, augmentation={"fold0": {}})
    (tmp_path / layout.RUN_JSON).write_text('{"command_line": ["rays', encoding="utf-8")
    (exp.inputs_dir / layout.AUGMENTATION_JSON).write_text("[]", encoding="utf-8")
    assert exp.run_info() == {} and exp.augmentation() == {}
    assert any(str(tmp_path / layout.RUN_JSON) in n and "left out" in n for n in exp.notes), exp.notes
    assert any(str(exp.inputs_dir / layout.AUGMENTATION_JSON) in n for n in exp.notes), exp.notes


def test_a_damaged_unit_json_trains_the_unit_again_and_says_so(tmp_path, monkeypatch):
    """The resume loop launches the unit again and prints why."""
    from raysum.pipeline import _run

    exp = _experiment(tmp_path)
    unit = exp.unit("tiny-bart", None)
    unit.path.mkdir(parents=True)
    unit.info_file.write_text('{"status": "do', encoding="utf-8")
    launched = []
    monkeypatch.setattr(_run, "launch_unit", lambda name, *a, **k: launched.append(name) or name)
    monkeypatch.setattr(_run, "watch_units", lambda runs, names, path, console, queue=None: {})
    monkeypatch.setattr(_run, "_finish", lambda *a, **k: None)
    console = Console(record=True, width=400)
    _run._run_units(tmp_path, exp.resolved(), console, None)
    out = console.export_text()
    assert launched == ["tiny-bart/full"]
    assert str(unit.info_file) in out and "trains again" in out, out


def test_a_torn_metrics_line_is_left_out_with_a_note_in_the_report(tmp_path):
    from raysum.report import load_experiment, write_report

    info = {"status": "done", "model": "tiny-bart", "fold": None, "train_s": 1.0, "epochs": 1.0, "train_samples": 3}
    rows = [{"step": 1, "epoch": 0.5, "loss": 2.0, "effective_batch_size": 4}]
    exp = _experiment(tmp_path, units={("tiny-bart", layout.FULL_FOLD): (info, rows)}, scores={})
    metrics = exp.unit("tiny-bart", None).metrics_file
    with metrics.open("a", encoding="utf-8") as out:
        out.write('{"step": 2, "epoch": 1.0, "lo')
    record = load_experiment(tmp_path)
    assert len(record.units[0].metrics) == 1
    assert any(str(metrics) in n and "last line was cut short" in n for n in record.notes), record.notes
    (report,) = write_report(tmp_path, plots=False)
    assert f"file left out: {metrics}" in report.read_text(encoding="utf-8")


def test_resume_drops_a_torn_metrics_line_and_says_so(tmp_path, capsys):
    from raysum.training.unit import _drop_metrics_after

    metrics = tmp_path / layout.METRICS_JSONL
    metrics.write_text('{"step": 1, "loss": 2.0}\n{"step": 3, "loss": 1.0}\n[1]\n{"step": 4, "lo', encoding="utf-8")
    _drop_metrics_after(metrics, 2)
    assert metrics.read_text(encoding="utf-8") == '{"step": 1, "loss": 2.0}\n'
    assert str(metrics) in capsys.readouterr().out


def test_a_damaged_baseline_is_left_out_of_scores_and_generated_again(tmp_path, monkeypatch):
    from raysum.config import load_preset
    from raysum.training import unit as unit_module
    from raysum.training.unit import UnitConfig, generate_baseline

    exp = _experiment(tmp_path)
    files = exp.unit("tiny-bart", None)
    frame = pd.DataFrame({"split": ["dev"], "fname": ["dev_0"], "text": ["요약 0"]})
    files.write_baseline(frame)
    _truncate(files.baseline_file)
    assert files.baseline() is None
    assert any(str(files.baseline_file) in n for n in exp.notes), exp.notes

    # A unit that trains again makes it again (before: the damaged file counted as done).
    monkeypatch.setattr(unit_module, "_predict_splits", lambda *a, **k: (frame, 0.0))
    model = SimpleNamespace(config=SimpleNamespace(use_cache=False), eval=lambda: None, train=lambda: None)
    unit = UnitConfig(unit_dir=files.path, model=load_preset("tiny-bart"), train_path="", baseline_splits=["dev"],
                      predict={"dev": str(exp.input_file("dev"))})
    run = SimpleNamespace(unit=unit, tokenizer=None,
                          trainer=SimpleNamespace(model=model, is_world_process_zero=lambda: True))
    generate_baseline(run)
    pd.testing.assert_frame_equal(files.baseline(), frame)


def test_damaged_tune_state_names_the_file(tmp_path):
    from raysum.tune.analysis import analyze
    from raysum.tune.training_search import ended_trials, read_request

    exp = _experiment(tmp_path)
    request = exp.tune_dir / layout.TRAINING_SEARCH_JSON
    request.parent.mkdir()
    request.write_text('["space", "trials"]', encoding="utf-8")
    for read in (lambda: read_request(tmp_path), lambda: analyze(tmp_path, Console(quiet=True))):
        with pytest.raises(RaysumError, match=_names(request) + r" is damaged .*can be neither resumed nor analysed"):
            read()
    request.write_text(json.dumps({"space": "s.yaml", "trials": 2, "scheduler": "asha", "seed": 1}), encoding="utf-8")
    with pytest.raises(RaysumError, match=_names(request) + r" is damaged \(no metric, runs"):
        read_request(tmp_path)
    run = exp.tune_dir / "training_tiny-bart"
    run.mkdir()
    state = run / "experiment_state-2025-01-01_00-00-00.json"
    state.write_text('{"trial_data": [["{\\"status\\": \\"TERMINATED\\"}", "{}"]], "runner', encoding="utf-8")
    with pytest.raises(RaysumError, match=_names(state) + r" is damaged .*move .* away"):
        ended_trials(run)
    state.write_text(json.dumps({"trial_data": 3}), encoding="utf-8")
    with pytest.raises(RaysumError, match=_names(state) + r" is damaged \(not a Ray Tune experiment state"):
        ended_trials(run)


# --------------------------------------------------------------------------- B. written atomically

# Calls that write a file where they are; each must hand its path over from write_atomic
# (raysum.storage) on the same line, or be listed below with why it writes in place.
DIRECT_WRITE = re.compile(
    r"""\.write_text\(|\.write_bytes\(|savefig\(|json\.dump\(|\bos\.open\("""
    r"""|\.to_(?:parquet|csv|json|pickle|excel|feather)\((?!\s*\)|\s*\w+\s*=)"""  # a path as first argument
    r"""|\bopen\((?:[^)]*,\s*)?(?:mode\s*=\s*)?["'][rbt]*[wax+][rwabxt+]*["']""")  # a mode that writes
IN_PLACE = {
    ("raysum/training/callbacks.py", 'self.path.open("a"'):
        "metrics.jsonl: one line appended per logging step while the unit trains; a torn last line is left out",
    ("raysum/experiment/directory.py", 'self.attempts_file.open("a"'):
        "attempts.jsonl: one line appended per start of a unit's workers, also while it runs",
    ("raysum/experiment/lock.py", "os.open(self.file, os.O_CREAT | os.O_EXCL"):
        "the experiment lock: created exclusively (O_EXCL) so that two commands cannot both hold it",
    ("raysum/experiment/lock.py", 'os.fdopen(fd, "w"'): "the holder written into the lock file just created",
    ("raysum/cluster/local.py", 'log.open("w")'): "a node's log, streamed by the Ray process while it runs",
}


def direct_writes(root: Path) -> list[str]:
    """``path:line: code`` of every direct write under ``root/raysum`` not allowed above."""
    found = []
    for path in sorted((root / "raysum").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "raysum/storage.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not DIRECT_WRITE.search(line) or "write_atomic(" in line:
                continue
            if not any(rel == file and snippet in line for file, snippet in IN_PLACE):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_no_artifact_is_written_in_place(tmp_path):
    planted = tmp_path / "raysum" / "report" / "_planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text('def f(frame, out):\n    frame.to_parquet(out / "x.parquet")\n    frame.to_csv(index=False)\n'
                       '    open(out, "w").write("x")\n    write_atomic(out, lambda temp: frame.to_csv(temp))\n'
                       '    open(out, "rb").read()\n    out.open(mode="r+")\n',
                       encoding="utf-8")
    assert [line.split(": ", 1)[0] for line in direct_writes(tmp_path)] == [
        "raysum/report/_planted.py:2", "raysum/report/_planted.py:4", "raysum/report/_planted.py:7"]
    offenders = direct_writes(ROOT)
    assert not offenders, "write these through raysum.storage.write_atomic:\n" + "\n".join(offenders)


class _FailingFrame(pd.DataFrame):
    """A table whose Parquet write stops halfway (a full disk, a kill)."""

    def to_parquet(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 half")
        raise OSError(28, "No space left on device")


class _FailingFigure:
    """A figure whose PNG stops halfway."""

    def tight_layout(self):
        pass

    def savefig(self, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")


def test_a_write_that_fails_midway_keeps_the_previous_file(tmp_path):
    from raysum.augment._frame import _write
    from raysum.tune.analysis import _save

    exp = _experiment(tmp_path)
    exp.write_candidates(pd.DataFrame({"split": ["dev"]}))
    cache = tmp_path / "cache" / "augment-x.parquet"
    _write(pd.DataFrame({"fname": ["a"]}), cache)
    plot = exp.analysis_dir / "objective_over_trials.png"
    plot.parent.mkdir()
    plot.write_bytes(b"\x89PNG whole")
    for target, write in ((exp.candidates_file, lambda: exp.write_candidates(_FailingFrame({"split": ["test"]}))),
                          (cache, lambda: _write(_FailingFrame({"fname": ["b"]}), cache)),
                          (plot, lambda: _save(_FailingFigure(), plot))):
        before = target.read_bytes()
        with pytest.raises(OSError, match="No space left"):
            write()
        assert target.read_bytes() == before
        assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".")) == [], target


# --------------------------------------------------------------------------- B. nothing overwritten


def _submission(text: str) -> pd.DataFrame:
    return pd.DataFrame({"fname": ["test_0"], "summary": [text]})


def test_a_replaced_submission_is_kept_beside_it_unless_forced(tmp_path):
    import os
    import time

    written = time.mktime((2026, 12, 3, 10, 15, 0, 0, 0, -1))
    exp = Experiment(tmp_path)
    assert exp.write_submission(_submission("첫 요약")) is None
    os.utime(exp.submission_file, (written, written))
    first = exp.submission_file.read_bytes()
    assert exp.write_submission(_submission("첫 요약")) is None  # the same content: nothing to keep
    kept = exp.write_submission(_submission("둘째 요약"))
    assert kept == tmp_path / "submission.20261203-101500.csv"  # named after when it was written
    assert kept.read_bytes() == first and "둘째 요약" in exp.submission_file.read_text(encoding="utf-8")
    os.utime(exp.submission_file, (written, written))
    again = exp.write_submission(_submission("셋째 요약"))
    assert again == tmp_path / "submission.20261203-101500-2.csv"  # written in the same second
    assert exp.write_submission(_submission("넷째 요약"), force=True) is None
    assert len(list(tmp_path.glob("submission*.csv"))) == 3
    assert "넷째 요약" in exp.submission_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("mode,chosen", [("single", "dev score"), ("kfold", "OOF score")])
def test_a_resumed_run_keeps_its_previous_submission_and_says_how_the_best_unit_was_chosen(
        tmp_path, monkeypatch, mode, chosen):
    from raysum.ensemble import chosen_by
    from raysum.pipeline import _collect

    exp = _experiment(tmp_path, mode=mode)
    has_oof = mode == "kfold"
    best = {"unit": "tiny-bart/fold0" if has_oof else "tiny-bart/full",
            "oof": {"competition_score": 20.0} if has_oof else None, "dev": {"competition_score": 25.0}}
    best["chosen_by"] = chosen_by(best)
    texts = iter(["첫 요약", "둘째 요약"])

    def ensembles(path, cfg, candidates, scores):
        scores.update(ensemble_strategy="voting",
                      ensembles={"voting": {"dev": {"competition_score": 30.0}, "best_single": best}})
        text = next(texts)
        return pd.DataFrame({"split": "test", "fname": [f"test_{i}" for i in range(3)], "text": text})

    monkeypatch.setattr(_collect, "run_ensembles", ensembles)
    why, kept = _collect.write_submission(tmp_path, exp.resolved(), pd.DataFrame(), {})
    assert kept is None and f"(chosen by {chosen})" in why
    why, kept = _collect.write_submission(tmp_path, exp.resolved(), pd.DataFrame(), {})
    assert kept is not None and "첫 요약" in kept.read_text(encoding="utf-8")
    assert "둘째 요약" in exp.submission_file.read_text(encoding="utf-8")


def test_evaluate_says_how_the_best_single_unit_was_chosen():
    from raysum import ensemble

    rows = [(split, f"{split}0", model, 0, "none", text, len(text), -1.0)
            for split in ("oof", "dev") for model, text in (("a", "가 나 다"), ("b", "가 나 라"))]
    candidates = pd.DataFrame(rows, columns=["split", "fname", "model", "fold", "tta", "text", "n_tokens", "logprob"])
    refs = {"oof": {"oof0": ["가 나 다"]}, "dev": {"dev0": ["가 나 라"]}}
    dev_only = candidates[candidates["split"] == "dev"]
    for table, by in ((candidates, "oof"), (dev_only, "dev")):
        prepared = ensemble.prepare(table, {"oof0": "대화", "dev0": "대화"}, tokenizer="whitespace")
        result = ensemble.evaluate(prepared, "voting", references_by_split=refs)
        assert result["best_single"]["chosen_by"] == by
        assert result["best_single"]["unit"] == ("a/fold0" if by == "oof" else "b/fold0")


def test_predict_and_resume_take_force(tmp_path, monkeypatch, capsys):
    import raysum.pipeline
    from raysum.cli import main

    calls = {}
    monkeypatch.setattr(raysum.pipeline, "predict_experiment", lambda *a, **k: calls.update(predict=k))
    monkeypatch.setattr(raysum.pipeline, "resume_experiment", lambda *a, **k: calls.update(resume=k))
    _experiment(tmp_path)
    assert main(["predict", "--experiment", str(tmp_path), "--test_data", "new.csv", "--force"]) == 0
    assert main(["train", "--resume", str(tmp_path), "--force"]) == 0
    assert calls["predict"]["force"] is True and calls["resume"]["force"] is True
    assert main(["train", "--force"]) == 2
    assert "--force applies to --resume" in capsys.readouterr().err
