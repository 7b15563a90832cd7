"""Extra decoding settings per unit: validation, the `decoding` column, d0-only scores,
and the decoding search on cached candidates (Ray Tune) read back by `raysum analyze`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysum.cli import main
from raysum.data import bundled_data

MODELS = ["tiny-bart", "tiny-llama"]
EXTRA = ["{num_beams: 1}", "{num_beams: 3, length_penalty: 1.6, no_repeat_ngram_size: 2}"]
# d0 (2 beams, lp 1.0, 3-gram blocking, 20 tokens) and d1 (1 beam) lie inside; d2 (3 beams) does not.
SPACE = """space: decoding
parameters:
  num_beams: {kind: choice, values: [1, 2]}
  length_penalty: {kind: uniform, low: 0.5, high: 2.0}
  max_length: {kind: int, low: 10, high: 40}
"""
ENSEMBLE_SPACE = """space: ensemble
parameters:
  strategy: {kind: choice, values: [voting, weighted_avg]}
  weights: {each_model: {kind: uniform, low: 0.0, high: 1.0}}
"""


# --------------------------------------------------------------------------- settings


def test_too_many_settings_and_unknown_keys_are_one_error_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["train", "--mode", "full", "--models", *MODELS, "--k_folds", "2", "--output_dir", str(out),
               "--decoding_settings", "{num_beams: 1}", "{beams: 2}", "{max_length: 0}", "{length_penalty: 1.2}",
               "{no_repeat_ngram_size: 2}"])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "decoding_settings has 5 settings; at most 3" in err
    assert "unknown key(s) ['beams']" in err and "max_length must be an integer >= 1, got 0" in err
    assert main(["config", "show", "--models", "tiny-bart", "--decoding_settings", "{num_beams: 4}"]) == 2
    assert "d1 repeats d0" in capsys.readouterr().err  # tiny-bart's own num_beams is 4
    assert main(["config", "show", "--models", "tiny-bart", "--decoding_trials", "2"]) == 2
    assert "--decoding_trials needs --decoding_space" in capsys.readouterr().err


def test_sampling_is_a_decoding_setting_checked_like_the_others(capsys):
    import dataclasses

    from raysum.config import load_preset
    from raysum.generation.decodings import decoding_problems, decoding_table, sampling_seed, with_decoding

    sampled = {"num_beams": 1, "do_sample": True, "temperature": 0.7, "top_p": 0.9}
    settings = dataclasses.replace(load_preset("tiny-llama"), decoding_settings=[sampled, sampled, {"num_beams": 1}])
    assert decoding_problems(settings) == []  # a sampled setting given twice: two labels, two seeds
    table = decoding_table(settings)
    assert table["d0"] == {"num_beams": 4, "length_penalty": 1.0, "no_repeat_ngram_size": 3, "max_length": 60}
    assert table["d1"] == table["d2"] == {**table["d0"], **sampled}
    assert sampling_seed(42, "d1") != sampling_seed(42, "d2") and sampling_seed(42, "d1") == sampling_seed(42, "d1")
    chosen = with_decoding(settings, table["d1"])
    assert (chosen.do_sample, chosen.temperature, chosen.top_p, chosen.num_beams) == (True, 0.7, 0.9, 1)
    assert with_decoding(chosen, table["d3"]).do_sample is False  # a decoding without sampling keys does not sample

    bad = dataclasses.replace(settings, decoding_settings=[
        {"do_sample": True}, {"temperature": 0.0, "top_p": 1.5, "do_sample": "yes"}, {"temperature": 0.5}])
    problems = decoding_problems(bad)
    assert "decoding_settings[1]: temperature must be a number in (0, 10], got 0.0" in problems
    assert "decoding_settings[1]: top_p must be a number in (0, 1], got 1.5" in problems
    assert "decoding_settings[1]: do_sample must be true or false, got 'yes'" in problems
    bad = dataclasses.replace(settings, decoding_settings=[{"do_sample": True}, {"temperature": 0.5}])
    problems = decoding_problems(bad)
    assert any("d1: do_sample samples with num_beams 1, got num_beams 4" in p for p in problems)
    assert any("d2: temperature only act(s) with do_sample: true" in p for p in problems)
    assert main(["config", "show", "--models", "tiny-bart", "--decoding_settings", "{do_sample: true, num_beams: 1}",
                 "{do_sample: true, num_beams: 1, top_p: 0}"]) == 2
    assert "top_p must be a number in (0, 1], got 0" in capsys.readouterr().err


def test_decoding_space_draws_seeded_settings_inside_the_space(capsys):
    from raysum.tune.space import admitted, load_space

    space_file = Path(__file__).resolve().parents[1] / "search_spaces" / "decoding.yaml"
    args = ["config", "show", "--json", "--mode", "full", "--models", *MODELS, "--seed", "5",
            "--decoding_space", str(space_file), "--decoding_trials", "3"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == first  # seeded
    space = load_space(space_file)
    for model in MODELS:
        leaf = first["models"][model]["decoding_settings"]
        assert leaf["source"] == f"decoding_space:{space_file}" and len(leaf["value"]) == 3
        assert all(admitted(space, model, s) and set(s) == set(space.parameters) for s in leaf["value"])
    assert main([*args[:-1], "4"]) == 2
    assert "--decoding_trials must be 1..3" in capsys.readouterr().err


def test_subset_reuses_pairwise_rouge_exactly():
    from raysum.ensemble import prepare, subset

    rng = np.random.default_rng(0)
    words = "가 나 다 라 마 바 사 아".split()
    rows = [{"split": split, "fname": f"{split}{i}", "model": model, "fold": 0, "tta": "none", "decoding": d,
             "text": " ".join(rng.choice(words, 6))}
            for split in ("oof", "dev") for i in range(4) for model in MODELS for d in ("d0", "d1", "d2")]
    candidates = pd.DataFrame(rows)
    dialogues = {f: "#Person1#: " + " ".join(words) for f in candidates["fname"]}
    full = prepare(candidates, dialogues, tokenizer="whitespace")
    keep = ((full.candidates["model"] == "tiny-bart") & (full.candidates["decoding"] == "d2")) | (
        (full.candidates["model"] == "tiny-llama") & (full.candidates["decoding"] == "d0"))
    part = subset(full, keep.to_numpy())
    direct = prepare(full.candidates[keep].drop(columns="pool"), dialogues, tokenizer="whitespace")
    assert part.candidates.drop(columns="pool").equals(direct.candidates.drop(columns="pool"))
    assert np.allclose(part.consensus, direct.consensus)
    assert all(np.allclose(a, b) for a, b in zip(part.pairwise, direct.pairwise))
    assert part.tokens == direct.tokens


# --------------------------------------------------------------------------- one experiment


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, ray_session) -> Path:
    """tiny-bart + tiny-llama x 2 folds, each unit generating OOF, dev and test with d0, d1, d2."""
    root = tmp_path_factory.mktemp("decoding")
    data = {}
    for split in ("dev", "test"):
        data[split] = root / f"{split}.csv"
        pd.read_csv(bundled_data(split)).head(12).to_csv(data[split], index=False)
    out = root / "out"
    with ray_session():
        assert main(["train", "--mode", "full", "--models", *MODELS, "--k_folds", "2", "--max_train_samples", "60",
                     "--epochs", "1", "--num_beams", "2", "--max_length", "20", "--dev_data", str(data["dev"]),
                     "--test_data", str(data["test"]), "--seed", "3", "--num_cpus", "4", "--output_dir", str(out),
                     "--decoding_settings", *EXTRA]) == 0
    (path,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return path


@pytest.mark.slow
def test_units_generate_oof_and_dev_once_per_decoding(experiment):
    cand = pd.read_parquet(experiment / "candidates.parquet")
    assert list(cand.columns) == ["split", "fname", "model", "fold", "tta", "decoding", "text", "n_tokens", "logprob"]
    key = ["split", "fname", "model", "fold", "decoding"]
    assert not cand.duplicated(key).any()
    # test too (decoding_for_test, on by default), so finalize applies any setting without generating
    for split, labels in (("oof", {"d0", "d1", "d2"}), ("dev", {"d0", "d1", "d2"}), ("test", {"d0", "d1", "d2"})):
        rows = cand[cand["split"] == split]
        assert set(rows["decoding"]) == labels, split
        per_setting = rows.groupby(["model", "fold", "decoding"]).size()
        assert per_setting.nunique() == 1  # every setting generated the same dialogues
    wide = cand[cand["split"] != "test"].pivot_table(index=["split", "fname", "model", "fold"], columns="decoding",
                                                     values="text", aggfunc="first")
    assert (wide["d0"] != wide["d1"]).any() and (wide["d0"] != wide["d2"]).any()  # the settings matter
    unit = json.loads((experiment / "units" / "tiny-llama" / "fold0" / "unit.json").read_text())
    assert unit["decodings"]["d0"] == {"num_beams": 2, "length_penalty": 1.0, "no_repeat_ngram_size": 3,
                                       "max_length": 20}
    assert unit["decodings"]["d2"] == {"num_beams": 3, "length_penalty": 1.6, "no_repeat_ngram_size": 2,
                                       "max_length": 20}
    for key in ("decodings_generate_s", "decodings_test_generate_s"):  # OOF + dev, and test, per extra setting
        assert set(unit[key]) == {"d1", "d2"} and all(s > 0 for s in unit[key].values())


@pytest.mark.slow
def test_scores_and_submission_use_the_models_own_decoding(experiment):
    from raysum.ensemble import evaluate, prepare
    from raysum.experiment import Experiment
    from raysum.generation.decodings import default_decoding

    def _dialogues(path): return Experiment(path).dialogues()

    def _references(path): return Experiment(path).references()

    cand = pd.read_parquet(experiment / "candidates.parquet")
    scores = json.loads((experiment / "scores.json").read_text())
    for name, unit in scores["units"].items():
        assert set(unit["decodings"]) == {"d0", "d1", "d2"}
        assert unit["decodings"]["d0"]["oof"] == unit["oof"] and unit["decodings"]["d0"]["dev"] == unit["dev"]
        assert unit["oof"]["n"] == 30 and unit["dev"]["n"] == 12
    own = default_decoding(cand)
    refs = _references(experiment)
    voting = evaluate(prepare(own, _dialogues(experiment)), "voting",
                      references_by_split={"oof": refs["oof"], "dev": refs["dev"]}, seed=3)
    assert voting["dev"] == scores["ensembles"]["voting"]["dev"]
    submission = pd.read_csv(experiment / "submission.csv", keep_default_na=False)
    test = cand[cand["split"] == "test"]
    assert list(submission.columns) == ["fname", "summary"] and len(submission) == 12
    assert all(s in set(test.loc[test["fname"] == f, "text"]) for f, s in zip(submission["fname"], submission["summary"]))
    # a table from before the column existed reads as all d0
    assert default_decoding(own.drop(columns="decoding")).equals(own.drop(columns="decoding"))


def _hashes(path: Path) -> dict[str, str]:
    """The experiment's own files: not the searches' (tune/, analysis/), nor the report, which
    a search rewrites to show itself."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.relative_to(path).parts[0] not in (
                "tune", "analysis", "report.md", "report.html")}


@pytest.mark.slow
def test_decoding_search_then_analyze(experiment, tmp_path, local_ray, capsys):
    space = tmp_path / "decoding.yaml"
    space.write_text(SPACE, encoding="utf-8")
    before = _hashes(experiment)
    assert main(["tune", "--space", str(space), "--experiment", str(experiment), "--trials", "6", "--seed", "1",
                 "--tokenizer", "whitespace", "--json"]) == 0
    capsys.readouterr()
    assert _hashes(experiment) == before, "the search changed the experiment's own files"
    if (experiment / "report.md").is_file():  # a report that existed shows the search now
        assert "(decoding search)" in (experiment / "report.md").read_text(encoding="utf-8")
    best = json.loads((experiment / "tune" / "decoding_best.json").read_text(encoding="utf-8"))
    assert best["trials"] == 6 and best["errors"] == 0
    assert {m: sorted(labels) for m, labels in best["eligible"].items()} == {m: ["d0", "d1"] for m in MODELS}
    assert best["best"]["strategy"] == "auto"  # the experiment's own (the fold modes' default)
    chosen = {m: d["label"] for m, d in best["best"]["decodings"].items()}
    assert set(chosen) == set(MODELS) and set(chosen.values()) <= {"d0", "d1"}
    assert best["oof"]["n"] == 60 and best["dev"]["n"] == 12
    assert best["oof"]["competition_score"] >= best["own_decoding"]["oof"]["competition_score"] - 1e-9

    assert main(["analyze", str(experiment)]) == 0
    trials = pd.read_csv(experiment / "analysis" / "trials.csv")
    assert len(trials) == 6 and {f"param/decoding.{m}" for m in MODELS} <= set(trials.columns)
    assert trials["oof_competition_score"].max() == pytest.approx(best["oof"]["competition_score"])
    capsys.readouterr()
    assert main(["config", "show", "--json", "--config", str(experiment / "analysis" / "best_config.yaml")]) == 0
    shown = json.loads(capsys.readouterr().out)
    top = trials.loc[trials["oof_competition_score"].idxmax()]
    for model in MODELS:
        settings = best["eligible"][model][top[f"param/decoding.{model}"]]
        node = shown["models"][model]
        assert {k: node[k]["value"] for k in settings} == settings
        assert node["num_beams"]["source"].startswith("experiment:") and node["decoding_settings"]["value"] == []

    ensemble = tmp_path / "ensemble.yaml"
    ensemble.write_text(ENSEMBLE_SPACE, encoding="utf-8")
    assert main(["tune", "--space", str(space), "--ensemble_space", str(ensemble), "--experiment", str(experiment),
                 "--trials", "6", "--seed", "2", "--tokenizer", "whitespace", "--json"]) == 0
    joint = json.loads((experiment / "tune" / "decoding_best.json").read_text(encoding="utf-8"))
    assert joint["best"]["strategy"] in ("voting", "weighted_avg") and set(joint["best"]["config"]) >= {
        "strategy", "weights.tiny-bart", "decoding.tiny-llama"}
    assert _hashes(experiment) == before


@pytest.mark.slow
def test_decoding_search_refuses_what_it_cannot_search(experiment, tmp_path, capsys):
    space = tmp_path / "decoding.yaml"
    space.write_text(SPACE.replace("low: 10, high: 40", "low: 60, high: 140"), encoding="utf-8")
    assert main(["tune", "--space", str(space), "--experiment", str(experiment)]) != 0
    assert "none of its generated decoding settings lies inside" in capsys.readouterr().err

    old = tmp_path / "old"  # the same experiment as it would have been before the column
    old.mkdir()
    for name in ("config.json", "inputs"):
        (shutil.copytree if (experiment / name).is_dir() else shutil.copy)(experiment / name, old / name)
    cand = pd.read_parquet(experiment / "candidates.parquet")
    cand[cand["decoding"] == "d0"].drop(columns="decoding").to_parquet(old / "candidates.parquet", index=False)
    space.write_text(SPACE, encoding="utf-8")
    assert main(["tune", "--space", str(space), "--experiment", str(old)]) != 0
    err = capsys.readouterr().err
    assert "decoding candidates are not available" in err and "--decoding_settings" in err
    assert not (old / "tune").exists()


@pytest.mark.slow
def test_predict_uses_the_models_own_decoding(experiment, tmp_path, ray_shutdown):
    new = tmp_path / "new.csv"
    pd.read_csv(bundled_data("test")).head(3).drop(columns=["summary1", "summary2", "summary3"]).to_csv(new, index=False)
    target = tmp_path / "sub.csv"
    assert main(["predict", "--experiment", str(experiment), "--test_data", str(new), "--output", str(target)]) == 0
    full = pd.read_csv(experiment / "submission.csv", keep_default_na=False).set_index("fname")["summary"]
    submission = pd.read_csv(target, keep_default_na=False)
    assert all(full[f] == s for f, s in zip(submission["fname"], submission["summary"]))
