"""--max_eval_samples: each unit generates for a seeded sample of its fold's out-of-fold part
and of dev (the same dialogues for every unit of a fold), test is complete, a resume refuses
a changed value, stacking refuses a sample below its minimum, and the scores and the report
say the OOF and dev numbers are on a sample."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from raysum.cli import main
from raysum.config.resolve import resolve
from raysum.data import bundled_data
from raysum.errors import ConfigError
from raysum.experiment import Experiment, layout, read_json, write_json
from raysum.pipeline import validate
from raysum.pipeline._collect import run_ensembles
from raysum.pipeline._experiment import (
    Unit, create_experiment_dir, load_experiment_data, unit_config, write_experiment_files,
)
from raysum.pipeline._resume import check_resume

from builders import finished_experiment

MODELS = ["tiny-bart", "tiny-llama"]
ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, **settings):
    base = {"mode": "full", "models": MODELS, "k_folds": 2, "max_train_samples": 60, "seed": 5,
            "output_dir": str(tmp_path / "out"), "use_tta": True, "tta_strategies": ["reorder"]}
    return validate(resolve({**base, **settings}))


def _written(tmp_path: Path, **settings) -> tuple[Path, object]:
    cfg = _cfg(tmp_path, **settings)
    path = create_experiment_dir(cfg)
    write_experiment_files(path, cfg, load_experiment_data(cfg), ["test"])
    return path, cfg


def _fnames(file: str) -> list[str]:
    return pd.read_parquet(file)["fname"].astype(str).tolist()


def test_units_generate_a_seeded_sample_of_oof_and_dev_and_all_of_test(tmp_path):
    path, cfg = _written(tmp_path, max_eval_samples=8)
    exp = Experiment(path)
    folds = exp.folds()
    n_test = len(pd.read_csv(bundled_data("test")))
    for fold in (0, 1):
        configs = [unit_config(path, cfg, Unit(model, fold), baseline=False) for model in MODELS]
        oof = [_fnames(c["predict"]["oof"]) for c in configs]
        assert oof[0] == oof[1] and len(oof[0]) == 8  # every unit of the fold: the same 8 dialogues
        assert set(oof[0]) <= set(folds.loc[folds["fold"] == fold, "fname"])
        assert len(_fnames(configs[0]["eval_path"])) == 30  # the held-out loss: the whole held-out part
        assert len(_fnames(configs[0]["predict"]["oof|reorder_1"])) == 8  # TTA variants of the sample only
        assert set(_fnames(configs[0]["predict"]["oof|reorder_1"])) == set(oof[0])
        dev = _fnames(configs[0]["predict"]["dev"])
        assert len(dev) == 8 and dev == _fnames(configs[1]["predict"]["dev"])
        assert len(_fnames(configs[0]["predict"]["dev|reorder_1"])) == 8
        assert len(_fnames(configs[0]["predict"]["test"])) == n_test  # test is never capped
        assert len(_fnames(configs[0]["predict"]["test|reorder_1"])) == n_test
    assert exp.run_info()["eval_sample"] == {"dev": 8, "fold0": 8, "fold1": 8}
    again, _ = _written(tmp_path, max_eval_samples=8)  # seeded: the same dialogues again
    assert _fnames(unit_config(again, cfg, Unit("tiny-bart", 1), False)["predict"]["oof"]) == \
        _fnames(unit_config(path, cfg, Unit("tiny-bart", 1), False)["predict"]["oof"])
    other, other_cfg = _written(tmp_path, max_eval_samples=8, seed=6)
    assert _fnames(unit_config(other, other_cfg, Unit("tiny-bart", 0), False)["predict"]["dev"]) != \
        _fnames(unit_config(path, cfg, Unit("tiny-bart", 0), False)["predict"]["dev"])


def test_without_a_cap_units_generate_everything(tmp_path):
    path, cfg = _written(tmp_path)
    config = unit_config(path, cfg, Unit("tiny-bart", 0), baseline=False)
    assert config["predict"]["oof"] == config["eval_path"] and len(_fnames(config["predict"]["oof"])) == 30
    assert len(_fnames(config["predict"]["dev"])) == len(pd.read_csv(bundled_data("dev")))
    assert "eval_sample" not in Experiment(path).run_info()


def test_a_resume_refuses_a_changed_cap(tmp_path):
    path, cfg = _written(tmp_path, max_eval_samples=8)
    units = [Unit(m, f) for m in MODELS for f in (0, 1)]
    assert check_resume(path, cfg, units) == []
    for changed in (12, None):
        with pytest.raises(ConfigError, match=rf"max_eval_samples: 8 -> {changed}"):
            check_resume(path, _cfg(tmp_path, max_eval_samples=changed), units)
    older, older_cfg = _written(tmp_path)  # an experiment written before the setting existed
    run = Experiment(older).run_info()
    del run["inputs"]["max_eval_samples"]
    Experiment(older).write_run_info(run)
    assert check_resume(older, older_cfg, units) == []


def test_stacking_below_its_minimum_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="needs at least 50: raise max_eval_samples to 25 or more"):
        load_experiment_data(_cfg(tmp_path, ensemble_strategy="stacking", max_eval_samples=24, max_train_samples=100))
    assert load_experiment_data(_cfg(tmp_path, ensemble_strategy="stacking", max_eval_samples=25,
                                     max_train_samples=100)).eval_fnames["fold0"]
    # a cap that leaves every training dialogue in the sample changes nothing: allowed as without it
    load_experiment_data(_cfg(tmp_path, ensemble_strategy="stacking", max_eval_samples=30, max_train_samples=40))


def test_ensembles_on_a_capped_experiment(tmp_path, capsys):
    path = finished_experiment(tmp_path / "exp")  # 16 training dialogues, 2 folds
    tree = read_json(path / layout.CONFIG_JSON)
    tree["max_eval_samples"] = {"value": 4, "source": "cli"}
    write_json(path / layout.CONFIG_JSON, tree)
    exp = Experiment(path)
    candidates = exp.candidates()  # what a cap of 4 per fold leaves: 8 of the 16 OOF dialogues
    kept = [f"train_{i}" for i in range(8)]
    exp.write_candidates(candidates[(candidates["split"] != "oof") | candidates["fname"].isin(kept)])
    scores: dict = {}
    run_ensembles(path, exp.resolved(), exp.candidates(), scores, on_ray=False)
    assert "stacking" not in scores["ensembles"]  # left out, not failed
    assert {"voting", "weighted_avg"} <= set(scores["ensembles"])
    assert main(["ensemble", "--experiment", str(path), "--strategy", "stacking"]) == 2
    assert "stacking needs at least 50 out-of-fold dialogues; max_eval_samples=4 left 8" in capsys.readouterr().err
    for command in (["finalize", str(path), "--strategy", "stacking"],
                    ["tune", "--space", str(ROOT / "search_spaces" / "ensemble.yaml"), "--experiment", str(path)]):
        assert main(command) == 2
        assert "stacking needs at least 50 out-of-fold dialogues" in capsys.readouterr().err


@pytest.mark.slow
def test_a_capped_run_scores_and_reports_the_sample(tmp_path, small_data, ray_session, capsys):
    out = tmp_path / "out"
    with ray_session():
        assert main(["train", "--mode", "full", "--models", "tiny-bart", "--k_folds", "2", "--max_train_samples", "40",
                     "--epochs", "1", "--num_beams", "1", "--max_length", "16", "--dev_data", small_data["dev"],
                     "--test_data", small_data["test"], "--max_eval_samples", "6", "--num_cpus", "4",
                     "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "every unit generates and is scored on 6 of 24 dev dialogues" in printed
    assert "model tiny-bart: effective batch" in printed and "epochs 1 (cli; preset" in printed
    assert "OOF and dev scores are on a seeded sample" in printed  # under the scores table
    (path,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    exp = Experiment(path)
    candidates = exp.candidates()
    counts = candidates.groupby(["split", "fold"])["fname"].nunique()
    assert counts[("oof", 0)] == 6 and counts[("oof", 1)] == 6 and counts[("dev", 0)] == 6
    assert counts[("test", 0)] == 24  # every test dialogue
    scores = exp.scores()
    assert scores["eval_sample"] == {"max_eval_samples": 6, "seed": 42, "oof_dialogues": 12, "dev_dialogues": 6}
    assert scores["units"]["tiny-bart/fold0"]["oof"]["n"] == 6 and scores["units"]["tiny-bart/fold0"]["dev"]["n"] == 6
    report = exp.report_file.read_text(encoding="utf-8")
    assert "OOF and dev scores are on a seeded sample of at most 6 dialogues per unit" in report
    assert len(pd.read_csv(exp.submission_file)) == 24
