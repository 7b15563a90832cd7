"""`raysum finalize DIR`: the final submission from cached candidates. The fast tests run
the real command line on a fake finished experiment (tests/builders.py) and recompute
every ensemble independently from candidates.parquet, with the ensemble task's body run in
the test's process; the slow one trains tiny units once, lets finalize generate a
decoding setting test lacks with the saved units and runs the ensemble as the Ray task
(tests/test_cluster.py runs it on a multi-node cluster)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from raysum.cli import main
from raysum.experiment import Experiment, layout

from builders import MODELS, finished_experiment, stage2_best_config as _stage2_best_config

EXTRA = [{"num_beams": 1}, {"length_penalty": 1.4}]


@pytest.fixture(autouse=True)
def _ensemble_task_in_this_process(request, monkeypatch):
    """Fast tests: the ensemble task's body (raysum.launch.ensemble_task) runs here, without
    starting Ray (about 10 s a command on 2 cores), with the CPUs asked for (default 1)."""
    if request.node.get_closest_marker("slow") is not None:
        return
    import raysum.launch

    monkeypatch.setattr(raysum.launch, "start_ensemble_ray", lambda address, num_cpus, requested: float(requested or 1))
    monkeypatch.setattr(raysum.launch, "run_ensemble", raysum.launch.ensemble_task)


@pytest.fixture
def exp(tmp_path) -> Path:
    """2 models x 2 folds, decoding settings d0, d1, d2 generated for OOF, dev and test."""
    return finished_experiment(tmp_path / "20260101_000000_done", decoding_settings=EXTRA)


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected_submission(path: Path, strategy: str, weights: dict | None, decodings: dict[str, str]) -> pd.DataFrame:
    """The ensemble recomputed from the files alone: candidates.parquet, the inputs, the seed."""
    from raysum.ensemble import prepare, select

    cand = pd.read_parquet(path / "candidates.parquet")
    keep = pd.Series(False, index=cand.index)
    for model, label in decodings.items():
        keep |= (cand["model"] == model) & (cand["decoding"] == label)
    inputs = {split: pd.read_parquet(path / "inputs" / f"{name}.parquet")
              for split, name in (("oof", "train"), ("dev", "dev"), ("test", "test"))}
    dialogues = {split: dict(zip(f["fname"], f["dialogue"])) for split, f in inputs.items()}
    oof_refs = {f: list(r) for f, r in zip(inputs["oof"]["fname"], inputs["oof"]["references"])}
    picks = select(prepare(cand[keep].reset_index(drop=True), dialogues), strategy, weights=weights,
                   references=oof_refs, seed=7)
    test = picks[picks["split"] == "test"].set_index("fname")["text"]
    fnames = inputs["test"]["fname"].tolist()
    return pd.DataFrame({"fname": fnames, "summary": [test[f] for f in fnames]})


def _submission(path: Path) -> pd.DataFrame:
    return pd.read_csv(path / "submission.csv", keep_default_na=False)


def _hashes(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- flags


def test_strategy_weights_and_decoding_equal_the_ensemble_recomputed_from_candidates(exp, capsys):
    code, out, err = _run(capsys, "finalize", exp, "--strategy", "weighted_avg", "--ensemble_weights", "1", "3",
                          "--decoding", "tiny-bart=d1", "--json")
    assert code == 0, err
    result = json.loads(out)  # stdout is the JSON object alone
    expected = _expected_submission(exp, "weighted_avg", {"tiny-bart": 1.0, "tiny-llama": 3.0},
                                    {"tiny-bart": "d1", "tiny-llama": "d0"})
    pd.testing.assert_frame_equal(_submission(exp), expected)
    # the choice matters: the models' own decodings with voting submit other summaries
    assert not _expected_submission(exp, "voting", None, {m: "d0" for m in MODELS}).equals(expected)

    scores = json.loads((exp / "scores.json").read_text(encoding="utf-8"))
    final = scores["final"]
    assert final["strategy"] == "weighted_avg" and final["weights"] == {"tiny-bart": 1.0, "tiny-llama": 3.0}
    assert final["decodings"]["tiny-bart"] == {"label": "d1", "settings": {
        "num_beams": 1, "length_penalty": 1.0, "no_repeat_ngram_size": 3, "max_length": 60}}
    assert final["decodings"]["tiny-llama"]["label"] == "d0"
    assert final["from"] == {"strategy": "--strategy", "weights": "--ensemble_weights",
                             "decoding.tiny-bart": "--decoding",
                             "decoding.tiny-llama": "the experiment's config (config.json)"}
    assert final["oof"]["n"] == 16 and final["dev"]["n"] == 6 and final["best_single"]["unit"].startswith("tiny-")
    assert scores["submission"]["by"] == "raysum finalize" and "weighted_avg" in scores["submission"]["reason"]
    assert result["strategy"] == "weighted_avg" and result["oof"] == final["oof"] and result["kept"] is None
    report = (exp / "report.md").read_text(encoding="utf-8")
    assert "Submission by `raysum finalize`: ensemble weighted_avg (tiny-bart 1, tiny-llama 3)" in report
    assert "tiny-bart d1" in report and "from --decoding" in report


def test_all_pools_every_decoding_setting_of_a_model(exp, capsys):
    """--decoding MODEL=all: the ensemble chooses among every setting the model generated."""
    from raysum.ensemble import prepare, select

    code, _, err = _run(capsys, "finalize", exp, "--strategy", "voting", "--decoding", "tiny-bart=all",
                        "tiny-llama=all")
    assert code == 0, err
    cand = pd.read_parquet(exp / "candidates.parquet")
    inputs = {split: pd.read_parquet(exp / "inputs" / f"{name}.parquet")
              for split, name in (("oof", "train"), ("dev", "dev"), ("test", "test"))}
    picks = select(prepare(cand, {s: dict(zip(f["fname"], f["dialogue"])) for s, f in inputs.items()}), "voting",
                   seed=7)
    test = picks[picks["split"] == "test"].set_index("fname")["text"]
    expected = pd.DataFrame({"fname": inputs["test"]["fname"], "summary": [test[f] for f in inputs["test"]["fname"]]})
    pd.testing.assert_frame_equal(_submission(exp), expected)
    own = set(cand.loc[(cand["split"] == "test") & (cand["decoding"] == "d0"), "text"])
    assert set(expected["summary"]) - own  # candidates of the other settings won too
    final = json.loads((exp / "scores.json").read_text(encoding="utf-8"))["final"]
    assert final["decodings"]["tiny-bart"]["label"] == "all"
    assert set(final["decodings"]["tiny-bart"]["settings"]) == {"d0", "d1", "d2"}
    code, _, err = _run(capsys, "finalize", exp, "--decoding", "tiny-bart=d7")
    assert code == 2 and "(or all: every one of them)" in err


def test_oof_and_dev_scores_are_the_choices_own(exp, capsys):
    from raysum.ensemble import evaluate, prepare

    assert _run(capsys, "finalize", exp, "--strategy", "stacking", "--decoding", "tiny-llama=d2")[0] == 0
    final = json.loads((exp / "scores.json").read_text(encoding="utf-8"))["final"]
    cand = Experiment(exp).candidates()
    chosen = cand[((cand["model"] == "tiny-bart") & (cand["decoding"] == "d0"))
                  | ((cand["model"] == "tiny-llama") & (cand["decoding"] == "d2"))].reset_index(drop=True)
    refs = Experiment(exp).references()
    result = evaluate(prepare(chosen, Experiment(exp).dialogues()), "stacking",
                      references_by_split={"oof": refs["oof"], "dev": refs["dev"]}, seed=7)
    assert final["oof"] == result["oof"] and final["dev"] == result["dev"]
    assert final["best_single"]["unit"] == result["best_single"]["unit"]


def test_without_a_strategy_finalize_applies_auto_and_records_why(exp, capsys):
    from raysum.ensemble.auto import OPTIONS

    assert Experiment(exp).resolved().experiment.ensemble_strategy == "auto"  # the fold modes' default
    code, out, err = _run(capsys, "finalize", exp, "--json")
    assert code == 0, err
    scores = json.loads((exp / "scores.json").read_text(encoding="utf-8"))
    final = scores["final"]
    auto = final["auto"]
    assert final["strategy"] == "auto" and auto["chosen"] in OPTIONS and auto["unit"] == final["best_single"]["unit"]
    assert set(auto["scores"]) == set(OPTIONS) and set(auto["gains"]) == set(OPTIONS[1:])
    assert scores["submission"]["chosen"] == auto["chosen"] and auto["reason"] in scores["submission"]["reason"]
    pd.testing.assert_frame_equal(_submission(exp), _expected_submission(exp, "auto", None, {m: "d0" for m in MODELS}))
    report = (exp / "report.md").read_text(encoding="utf-8")
    assert "`auto` compares the best single unit and each ensemble" in report and f"Chosen: {auto['chosen']}" in report


# --------------------------------------------------------------------------- --config


JOINT = [{"strategy": "voting", "weights.tiny-bart": 0.5, "weights.tiny-llama": 0.5, "decoding.tiny-bart": "d0",
          "decoding.tiny-llama": "d0", "oof": 50.0, "dev": 50.0},
         {"strategy": "weighted_avg", "weights.tiny-bart": 0.2, "weights.tiny-llama": 0.9, "decoding.tiny-bart": "d2",
          "decoding.tiny-llama": "d1", "oof": 60.0, "dev": 55.0}]


def test_config_of_a_stage2_search_applies_its_best_trial(exp, capsys):
    best = _stage2_best_config(exp, JOINT)
    text = best.read_text(encoding="utf-8")
    assert "# decoding labels: tiny-bart=d2, tiny-llama=d1" in text and f"raysum finalize {exp}" in text
    code, _, err = _run(capsys, "finalize", exp, "--config", best)
    assert code == 0, err
    decodings = {"tiny-bart": "d2", "tiny-llama": "d1"}
    expected = _expected_submission(exp, "weighted_avg", {"tiny-bart": 0.2, "tiny-llama": 0.9}, decodings)
    pd.testing.assert_frame_equal(_submission(exp), expected)
    final = json.loads((exp / "scores.json").read_text(encoding="utf-8"))["final"]
    source = final["from"]["strategy"]
    assert source.startswith(f"--config {best}") and "decoding_20260101_000000" in source
    assert final["from"]["weights"] == source and final["from"]["decoding.tiny-llama"] == source
    assert {m: d["label"] for m, d in final["decodings"].items()} == decodings

    # explicit flags override the file, part by part
    code, _, err = _run(capsys, "finalize", exp, "--config", best, "--strategy", "voting", "--decoding",
                        "tiny-bart=d0")
    assert code == 0, err
    pd.testing.assert_frame_equal(_submission(exp), _expected_submission(
        exp, "voting", None, {"tiny-bart": "d0", "tiny-llama": "d1"}))
    final = json.loads((exp / "scores.json").read_text(encoding="utf-8"))["final"]
    assert final["from"]["strategy"] == "--strategy" and final["from"]["decoding.tiny-bart"] == "--decoding"
    assert final["from"]["decoding.tiny-llama"] == source and final["weights"] is None


def test_config_without_label_header_is_matched_by_settings(exp, capsys):
    best = _stage2_best_config(exp, JOINT)
    lines = [line for line in best.read_text(encoding="utf-8").splitlines() if not line.startswith("# decoding labels")]
    best.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _run(capsys, "finalize", exp, "--config", best)[0] == 0
    final = json.loads((exp / "scores.json").read_text(encoding="utf-8"))["final"]
    assert {m: d["label"] for m, d in final["decodings"].items()} == {"tiny-bart": "d2", "tiny-llama": "d1"}


def _training_best_config(path: Path) -> Path:
    from raysum.storage import write_text_atomic
    from raysum.tune.training_search import training_best_config

    best = {"tiny-bart": {"run": str(path / "tune" / "tiny-bart"), "trial_id": "t1", "eval_loss": 1.0,
                          "params": {"learning_rate": 1.0e-3}}}
    return write_text_atomic(path / "analysis" / "best_config.yaml", training_best_config(path, best, "eval_loss"))


def _other_experiment(tmp_path: Path) -> Path:
    other = finished_experiment(tmp_path / "elsewhere" / "20260202_000000_other", decoding_settings=EXTRA)
    return _stage2_best_config(other, JOINT)


def _edited(exp: Path) -> Path:
    best = _stage2_best_config(exp, JOINT)
    best.write_text(best.read_text(encoding="utf-8").replace("\nk_folds: 2", "\nk_folds: 3"), encoding="utf-8")
    return best


@pytest.mark.parametrize("make, says", [
    (_training_best_config, "is a training search's best config"),
    (lambda exp: _other_experiment(exp.parent), "is the best config of a search on another experiment"),
    (_edited, "k_folds: 2 -> 3"),
    (lambda exp: exp.parent / "plain.yaml", "is not the best config of a stage-2 search"),
], ids=["training search", "another experiment", "edited training setting", "plain config"])
def test_an_incompatible_config_is_exit_2_before_any_work(exp, capsys, make, says):
    (exp.parent / "plain.yaml").write_text("mode: full\nk_folds: 2\n", encoding="utf-8")
    config = make(exp)
    before = _hashes(exp)
    code, out, err = _run(capsys, "finalize", exp, "--config", config)
    assert code == 2 and says in err, err
    assert "Traceback" not in out + err
    assert _hashes(exp) == before and not (exp / "submission.csv").exists()


# --------------------------------------------------------------------------- files


def test_the_previous_submission_is_kept(exp, capsys):
    assert _run(capsys, "finalize", exp)[0] == 0
    first = (exp / "submission.csv").read_bytes()
    assert _run(capsys, "finalize", exp)[0] == 0  # the same choice: nothing to keep
    assert not list(exp.glob("submission.*.csv"))
    code, out, _ = _run(capsys, "finalize", exp, "--decoding", "tiny-bart=d2", "tiny-llama=d2")
    assert code == 0
    (kept,) = exp.glob("submission.*.csv")
    assert kept.read_bytes() == first and (exp / "submission.csv").read_bytes() != first
    assert f"kept as {kept}" in out.replace("\n", "")
    assert _run(capsys, "finalize", exp, "--force")[0] == 0
    assert list(exp.glob("submission.*.csv")) == [kept] and (exp / "submission.csv").read_bytes() == first


def test_report_html_is_rewritten_where_there_is_one(exp, capsys):
    from raysum.report import write_report

    write_report(exp, plots=False, formats=("md", "html"))
    assert _run(capsys, "finalize", exp, "--strategy", "weighted_avg")[0] == 0
    assert "Submission by <code>raysum finalize</code>: ensemble weighted_avg" in (exp / "report.html").read_text(
        encoding="utf-8")
    assert not (exp / layout.LOCK_FILE).exists()


def test_a_decoding_missing_for_test_is_reported_before_any_work(tmp_path, capsys):
    exp = finished_experiment(tmp_path / "20260101_000000_no_test", decoding_settings=EXTRA, test_decodings=False)
    before = _hashes(exp)
    code, out, err = _run(capsys, "finalize", exp, "--decoding", "tiny-bart=d1")
    assert code == 2, err
    for unit in ("tiny-bart/fold0 d1: 4 of 4 test dialogues", "tiny-bart/fold1 d1: 4 of 4 test dialogues"):
        assert unit in err
    assert "no trained weights" in err and "decoding_for_test" in err and "Traceback" not in out + err
    assert _hashes(exp) == before
    assert _run(capsys, "finalize", exp, "--decoding", "tiny-llama=d0")[0] == 0  # what test has works


@pytest.mark.parametrize("args, says", [
    (["--strategy", "weighted_avg", "--ensemble_weights", "1"], "ensemble_weights has 1 values for 2 models"),
    (["--strategy", "voting", "--ensemble_weights", "1", "1"], "--ensemble_weights apply to weighted_avg"),
    (["--strategy", "median"], "strategy 'median' is unknown"),
    (["--decoding", "tiny-bart=d7"], "tiny-bart has decoding settings d0"),
    (["--decoding", "kobart=d1"], "kobart is not a model of this experiment"),
    (["--decoding", "tiny-bart"], "expected MODEL=LABEL"),
])
def test_bad_choices_are_one_clean_error(exp, capsys, args, says):
    before = _hashes(exp)
    code, out, err = _run(capsys, "finalize", exp, *args)
    assert code == 2 and says in err and "Traceback" not in out + err, err
    assert _hashes(exp) == before


def test_the_ensemble_task_gets_its_cpus_and_says_where_it_ran(exp, capsys):
    """--ensemble_cpus reaches the task (whose Kiwi then uses that many threads); scores.json
    records the task; a bad count is a usage error before any work."""
    from raysum.metrics import _tokenize

    assert _run(capsys, "finalize", exp, "--ensemble_cpus", "3")[0] == 0
    task = json.loads((exp / "scores.json").read_text())["final"]["ensemble_task"]
    assert task["cpus"] == 3 and task["seconds"] >= 0 and _tokenize._kiwi_threads == 3
    _tokenize.set_kiwi_threads(None)
    before = _hashes(exp)
    code, _, err = _run(capsys, "finalize", exp, "--ensemble_cpus", "0")
    assert code == 2 and "--ensemble_cpus" in err and _hashes(exp) == before


def test_ensemble_cpus_default_is_sized_to_the_cluster_and_never_infeasible():
    from raysum.launch import ENSEMBLE_CPUS_MAX, ensemble_cpus, ensemble_problems

    head, small, big = {"CPU": 0.0}, {"CPU": 1.0, "node_a": 1.0}, {"CPU": 64.0, "GPU": 8.0}
    assert ensemble_cpus(None, [head, small, small]) == 1  # a 0-CPU head, 1-CPU workers
    assert ensemble_cpus(None, [{"CPU": 2.0}]) == 2  # a local instance on 2 cores
    assert ensemble_cpus(None, [head, big]) == ENSEMBLE_CPUS_MAX
    assert ensemble_cpus(None, [head]) == 1  # no worker yet: an autoscaler adds one
    assert ensemble_cpus(4, [head, big]) == 4
    assert ensemble_problems(None, [head]) == [] and ensemble_problems(64, [head, big]) == []
    (problem,) = ensemble_problems(3, [head, small, small])
    assert "ensemble_cpus 3: no node of the cluster has 3 CPUs" in problem and "1 CPU" in problem


# --------------------------------------------------------------------------- section 4: test per decoding


def test_units_generate_test_per_decoding_unless_turned_off(tmp_path):
    from raysum.config.resolve import resolve
    from raysum.pipeline import Unit, unit_config

    on = resolve({"models": ["tiny-bart"], "mode": "kfold", "k_folds": 2, "decoding_settings": EXTRA})
    off = resolve({"models": ["tiny-bart"], "mode": "kfold", "k_folds": 2, "decoding_settings": EXTRA,
                   "decoding_for_test": False})
    assert unit_config(tmp_path, on, Unit("tiny-bart", 0), baseline=False)["decoding_splits"] == ["oof", "dev", "test"]
    assert unit_config(tmp_path, off, Unit("tiny-bart", 0), baseline=False)["decoding_splits"] == ["oof", "dev"]


@pytest.mark.parametrize("splits", [["oof", "dev", "test"], ["oof", "dev"]])
def test_generate_passes_test_per_extra_decoding_timed_apart(monkeypatch, tmp_path, splits):
    from types import SimpleNamespace

    import raysum.training.unit as unit_module
    from raysum.config.presets import load_preset

    calls = []

    def fake_predict(engine, tokenizer, unit, parts, decoding="d0", settings=None):
        calls.append((decoding, sorted(parts), (settings or unit.model).num_beams))
        return pd.DataFrame({"split": list(parts), "decoding": decoding}), 1.5

    monkeypatch.setattr(unit_module, "_model_for_generation", lambda run: object())
    monkeypatch.setattr(unit_module, "_predict_splits", fake_predict)
    settings = load_preset("tiny-bart")
    settings.decoding_settings = EXTRA
    unit = unit_module.UnitConfig.from_dict({
        "unit_dir": str(tmp_path), "model": settings, "train_path": "x", "decoding_splits": splits,
        "predict": {"oof": "a", "dev": "b", "test": "c", "test|paraphrase_1": "d"}})
    run = SimpleNamespace(unit=unit, tokenizer=None, trainer=SimpleNamespace(is_world_process_zero=lambda: True))
    frame, timing = unit_module.generate(run)
    with_test = "test" in splits
    assert calls[0] == ("d0", ["dev", "oof", "test", "test|paraphrase_1"], settings.num_beams)
    assert ("d1", ["dev", "oof"], 1) in calls and ("d2", ["dev", "oof"], settings.num_beams) in calls
    assert (("d1", ["test"], 1) in calls) == with_test and (("d2", ["test"], settings.num_beams) in calls) == with_test
    assert timing["decodings_s"] == {"d1": 1.5, "d2": 1.5}
    assert timing["decodings_test_s"] == ({"d1": 1.5, "d2": 1.5} if with_test else {})
    assert set(frame.loc[frame["split"] == "test", "decoding"]) == ({"d0", "d1", "d2"} if with_test else {"d0"})


def test_decoding_for_test_is_a_setting_with_a_flag(capsys):
    assert main(["config", "show", "--models", "tiny-bart", "--decoding_for_test", "false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decoding_for_test"] == {"value": False, "source": "cli"}
    assert main(["config", "show", "--models", "tiny-bart", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decoding_for_test"] == {"value": True, "source": "default"}
    assert main(["config", "show", "--models", "tiny-bart", "--decoding_for_test", "perhaps"]) == 2
    assert "expected true or false" in capsys.readouterr().err
    assert main(["config", "show", "--models", "tiny-bart", "--set", "decoding_for_test=false"]) == 0
    assert "decoding_for_test is set but no model has extra decoding settings" in capsys.readouterr().err


# --------------------------------------------------------------------------- slow: generation by the saved units


@pytest.mark.slow
def test_finalize_generates_a_decoding_test_lacks_with_the_saved_units(tmp_path, small_data, capsys, ray_session):
    out = tmp_path / "out"
    with ray_session():
        assert main(["train", "--mode", "kfold", "--models", "tiny-bart", "--k_folds", "2", "--max_train_samples",
                     "30", "--epochs", "1", "--num_beams", "2", "--max_length", "20", "--dev_data", small_data["dev"],
                     "--test_data", small_data["test"], "--seed", "7", "--num_cpus", "2", "--output_dir", str(out),
                     "--decoding_settings", "{num_beams: 1}"]) == 0
    (path,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    exp = Experiment(path)
    cand = exp.candidates()
    test = cand[cand["split"] == "test"]
    assert set(test["decoding"]) == {"d0", "d1"}  # section 4: every setting generated for test
    assert test.groupby(["fold", "decoding"]).size().tolist() == [24] * 4
    for label in ("fold0", "fold1"):
        info = exp.unit("tiny-bart", label).info()
        assert set(info["decodings_test_generate_s"]) == {"d1"} and info["decodings_test_generate_s"]["d1"] > 0
        assert set(info["decodings_generate_s"]) == {"d1"}

    # as an experiment run with decoding_for_test false: test lacks d1
    original = test[test["decoding"] == "d1"].sort_values(["fold", "fname"]).reset_index(drop=True)
    for label in ("fold0", "fold1"):
        files = exp.unit("tiny-bart", label)
        rows = files.predictions()
        files.write_predictions(rows[~((rows["split"] == "test") & (rows["decoding"] == "d1"))])
    exp.write_candidates(cand[~((cand["split"] == "test") & (cand["decoding"] == "d1"))])
    capsys.readouterr()
    with ray_session():
        code = main(["finalize", str(path), "--decoding", "tiny-bart=d1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    said = captured.out.index("test has no candidates for the chosen decoding setting(s): tiny-bart/fold0 d1: 24 of "
                              "24 test dialogues")
    assert said < captured.out.index("generated 48 test candidate(s)")
    again = exp.candidates()
    regenerated = again[(again["split"] == "test") & (again["decoding"] == "d1")]
    regenerated = regenerated.sort_values(["fold", "fname"]).reset_index(drop=True)
    assert regenerated["text"].tolist() == original["text"].tolist()  # what training generated, again
    assert not exp.finalize_dir.exists()
    pd.testing.assert_frame_equal(_submission(path), _expected_from(path, {"tiny-bart": "d1"}, seed=7))
    final = json.loads(exp.scores_file.read_text())["final"]
    # the ensemble ran as a Ray task in a worker process, with the local instance's 2 CPUs
    assert final["ensemble_task"]["node_id"] and final["ensemble_task"]["pid"] != os.getpid()
    assert final["ensemble_task"]["cpus"] == 2
    train_task = json.loads(exp.scores_file.read_text())["ensemble_task"]  # raysum train's ensemble too
    assert train_task["node_id"] and train_task["pid"] != os.getpid()
    assert final["generated"] == [
        "tiny-bart/fold0 d1: 24 of 24 test dialogues", "tiny-bart/fold1 d1: 24 of 24 test dialogues"]


def _expected_from(path: Path, decodings: dict[str, str], seed: int) -> pd.DataFrame:
    from raysum.ensemble import prepare, select

    exp = Experiment(path)
    cand = exp.candidates()
    keep = pd.Series(False, index=cand.index)
    for model, label in decodings.items():
        keep |= (cand["model"] == model) & (cand["decoding"] == label)
    picks = select(prepare(cand[keep].reset_index(drop=True), exp.dialogues()), "auto",  # the fold modes' default
                   references=exp.references()["oof"], seed=seed)
    test = picks[picks["split"] == "test"].set_index("fname")["text"]
    fnames = exp.read_input("test")["fname"].tolist()
    return pd.DataFrame({"fname": fnames, "summary": [test[f] for f in fnames]})
