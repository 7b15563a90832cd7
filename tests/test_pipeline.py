"""The pipeline end to end through the real CLI and Ray: artifacts, concurrency, the
in-process path, resume, predict, and the refusals that happen before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from raysum.cli import main

pytestmark = pytest.mark.slow
MODELS = ["tiny-bart", "tiny-llama"]


def _train_args(out: Path, data: dict, *extra: str) -> list[str]:
    return ["train", "--mode", "full", "--models", *MODELS, "--k_folds", "2", "--fold_seed", "7",
            "--max_train_samples", "120", "--epochs", "1", "--num_beams", "2", "--max_length", "24",
            "--dev_data", data["dev"], "--test_data", data["test"], "--experiment_name", "e2e", "--seed", "3",
            "--num_cpus", "4", "--save_visualizations", "--output_dir", str(out), *extra]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, small_data, ray_session) -> Path:
    out = tmp_path_factory.mktemp("out")
    with ray_session():
        assert main(_train_args(out, small_data)) == 0
    (path,) = [p for p in out.iterdir() if not p.name.startswith(".")]  # .tokenizers: shared cache
    return path


def test_full_run_writes_every_artifact(experiment, small_data):
    assert experiment.name.endswith("_e2e") and len(experiment.name.split("_")[0]) == 8
    for name in ("config.yaml", "config.json", "folds.csv", "candidates.parquet", "scores.json", "submission.csv"):
        assert (experiment / name).is_file(), name
    folds = pd.read_csv(experiment / "folds.csv")
    assert list(folds.columns) == ["fname", "fold"] and len(folds) == 120 and set(folds["fold"]) == {0, 1}
    config = json.loads((experiment / "config.json").read_text())
    assert config["models"]["tiny-bart"]["epochs"] == {"value": 1.0, "source": "cli"}
    assert "# cli" in (experiment / "config.yaml").read_text()

    units = [(m, f) for m in MODELS for f in (0, 1)]
    # Each unit's training and held-out rows went through the shared encoding cache.
    assert len(list((experiment.parent / ".encoded").glob("encoded-*.arrow"))) >= len(units)
    for model, fold in units:
        unit_dir = experiment / "units" / model / f"fold{fold}"
        assert (unit_dir / "checkpoint" / "model.safetensors").is_file()
        assert (unit_dir / "metrics.jsonl").is_file() and (unit_dir / "predictions.parquet").is_file()
        assert json.loads((unit_dir / "unit.json").read_text())["status"] == "done"
    pickled = [p for p in experiment.rglob("*") if p.name.startswith("pytorch_model") or p.suffix in (".pt", ".pth")
               or (p.suffix == ".bin" and "checkpoint" in p.parts)]
    assert pickled == []

    cand = pd.read_parquet(experiment / "candidates.parquet")
    assert list(cand.columns) == ["split", "fname", "model", "fold", "tta", "decoding", "text", "n_tokens", "logprob"]
    assert (cand["decoding"] == "d0").all()  # no extra decoding settings asked for
    oof = cand[cand["split"] == "oof"]
    for model in MODELS:  # every training dialogue once per model, by the unit that did not train on it
        rows = oof[oof["model"] == model].merge(folds, on="fname", suffixes=("", "_assigned"))
        assert sorted(rows["fname"]) == sorted(folds["fname"]) and (rows["fold"] == rows["fold_assigned"]).all()
    test_fnames = pd.read_csv(small_data["test"])["fname"].tolist()
    test_rows = cand[cand["split"] == "test"]
    assert len(test_rows) == len(test_fnames) * len(units)
    assert test_rows.groupby(["model", "fold"]).size().eq(len(test_fnames)).all()
    assert (cand["tta"] == "none").all() and cand["n_tokens"].gt(0).all()

    scores = json.loads((experiment / "scores.json").read_text())
    assert set(scores["units"]) == {f"{m}/fold{f}" for m, f in units}
    for unit in scores["units"].values():
        for split in ("oof", "dev"):
            assert set(unit[split]) == {"rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score", "n"}
    for model in MODELS:
        assert scores["models"][model]["oof"]["n"] == 120
        assert "dev_untrained" in scores["models"][model]
    submission = pd.read_csv(experiment / "submission.csv", keep_default_na=False)
    assert list(submission.columns) == ["fname", "summary"] and submission["fname"].tolist() == test_fnames
    assert scores["submission"]["strategy"] == scores["ensemble_strategy"] == "auto"  # the fold modes' default
    assert set(scores["ensembles"]) == {"voting", "weighted_avg", "stacking", "auto"}
    auto = scores["ensembles"]["auto"]["auto"]
    assert auto["chosen"] == scores["submission"]["chosen"] and auto["unit"] in scores["units"]
    assert auto["reason"] in scores["submission"]["reason"] and "`auto` compares" in (
        experiment / "report.md").read_text(encoding="utf-8")
    for result in scores["ensembles"].values():
        assert {"oof", "dev", "best_single"} <= set(result) and result["best_single"]["unit"] in scores["units"]
    pools = test_rows.groupby("fname")["text"].apply(set)
    assert all(summary in pools[fname] for fname, summary in zip(submission["fname"], submission["summary"]))


def test_report_plots_and_tensorboard_events_per_unit(experiment):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raysum.report import CHECKS, PLOTS

    report = (experiment / "report.md").read_text(encoding="utf-8")
    scores = json.loads((experiment / "scores.json").read_text())
    for name, unit in scores["units"].items():  # the report's numbers are scores.json's
        dev = unit["dev"]
        (row,) = [line for line in report.splitlines() if line.startswith(f"| {name} | dev | ")]
        assert row.endswith(f"| {dev['rouge1']:.4f} | {dev['rouge2']:.4f} | {dev['rougeL']:.4f} | "
                            f"{dev['rouge_sum']:.4f} | {dev['competition_score']:.2f} | {dev['n']} |"), row
    assert all(f"({name})" in report for name in CHECKS)
    plots = {p.name for p in (experiment / "plots").glob("*.png")}
    assert plots == set(PLOTS)  # k-fold run with evaluation: every plot has data
    assert all(f"](plots/{name})" in report for name in plots)
    for model in MODELS:
        for fold in (0, 1):
            events = experiment / "tensorboard" / f"{model}_fold{fold}"
            assert list(events.glob("events.out.tfevents.*"))
            acc = EventAccumulator(str(events))
            acc.Reload()
            tags = set(acc.Tags()["scalars"])
            assert {"train/loss", "train/learning_rate", "train/grad_norm", "eval/loss", "dev/competition_score"} <= tags
            metrics = [json.loads(line) for line in (experiment / "units" / model / f"fold{fold}" / "metrics.jsonl")
                       .read_text().splitlines()]
            losses = [m["loss"] for m in metrics if "loss" in m]
            assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(losses, rel=1e-6)
            dev = scores["units"][f"{model}/fold{fold}"]["dev"]["competition_score"]
            assert acc.Scalars("dev/competition_score")[-1].value == pytest.approx(dev, rel=1e-6)


def test_units_ran_concurrently(experiment):
    spans = []
    for info in experiment.glob("units/*/fold*/unit.json"):
        meta = json.loads(info.read_text())
        spans.append((meta["started_at"], meta["finished_at"]))
    spans.sort()
    overlaps = [a[1] > b[0] for a, b in zip(spans, spans[1:])]
    assert any(overlaps), spans  # with num_cpus=4 at least two units were training at once


def test_in_process_unit_gives_the_same_artifacts(experiment, tmp_path):
    """The unit function without Ray, same config: identical predictions."""
    import torch

    from raysum.experiment import Experiment
    from raysum.experiment.layout import ATTEMPTS_JSONL as ATTEMPTS_FILE
    from raysum.pipeline import plan_units, unit_config
    from raysum.training import run_unit

    def load_resolved(path): return Experiment(path).resolved()

    cfg = load_resolved(experiment)
    unit = plan_units(cfg)[0]
    config = unit_config(experiment, cfg, unit, baseline=False)
    config["unit_dir"] = str(tmp_path / "unit")
    config["tracking_dir"] = str(tmp_path / "tensorboard")  # leave the experiment's event files alone
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a 1-CPU Ray worker
    try:
        run_unit(config)
    finally:
        torch.set_num_threads(threads)
    ours = pd.read_parquet(tmp_path / "unit" / "predictions.parquet")
    ray_side = pd.read_parquet(experiment / "units" / unit.model / unit.fold_label / "predictions.parquet")
    assert ours[["split", "fname", "text", "n_tokens"]].equals(ray_side[["split", "fname", "text", "n_tokens"]])
    assert sorted(p.name for p in (tmp_path / "unit").iterdir()) == sorted(
        p.name for p in (experiment / "units" / unit.model / unit.fold_label).iterdir()
        if p.name not in ("baseline.parquet", ATTEMPTS_FILE))  # attempts: where Ray started the unit


def test_resume_reuses_finished_units(experiment, capsys, ray_shutdown):
    redo = experiment / "units" / "tiny-llama" / "fold1"
    keep = experiment / "units" / "tiny-bart" / "fold0"
    kept_before = json.loads((keep / "unit.json").read_text())["finished_at"]
    (redo / "unit.json").unlink()
    (redo / "predictions.parquet").unlink()
    (experiment / "submission.csv").unlink()
    assert main(["train", "--resume", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert "reusing 3 finished unit(s)" in out
    assert json.loads((keep / "unit.json").read_text())["finished_at"] == kept_before
    assert json.loads((redo / "unit.json").read_text())["status"] == "done"
    assert (experiment / "submission.csv").is_file()


def test_resume_refuses_new_settings(experiment, capsys):
    assert main(["train", "--resume", str(experiment), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err


def test_predict_writes_a_submission_for_a_new_file(experiment, small_data, tmp_path, ray_shutdown):
    new = tmp_path / "new.csv"
    pd.read_csv(small_data["test"]).head(5).drop(columns=["summary1", "summary2", "summary3"]).to_csv(new, index=False)
    target = tmp_path / "sub.csv"
    assert main(["predict", "--experiment", str(experiment), "--test_data", str(new), "--output", str(target)]) == 0
    submission = pd.read_csv(target, keep_default_na=False)
    assert submission["fname"].tolist() == pd.read_csv(new)["fname"].tolist()
    # same units, same candidates, same ensemble: the experiment's own choice for these dialogues
    full = pd.read_csv(experiment / "submission.csv", keep_default_na=False).set_index("fname")["summary"]
    assert all(full[f] == s for f, s in zip(submission["fname"], submission["summary"]))


def test_ensemble_command_prints_strategy_and_best_single(experiment, capsys):
    assert main(["ensemble", "--experiment", str(experiment), "--strategy", "rouge_weighted",
                 "--ensemble_weights", "3", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "weighted_avg" and result["weights"] == {"tiny-bart": 3.0, "tiny-llama": 1.0}
    for key in ("oof", "dev"):
        assert {"rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score"} <= set(result[key])
    assert result["best_single"]["unit"] and "dev" in result["best_single"]
    scores = json.loads((experiment / "scores.json").read_text())
    assert scores["ensembles"]["weighted_avg"]["dev"] == result["dev"]
    assert scores["ensemble_strategy"] == "auto"  # the submission's strategy (the fold modes' default) is unchanged
    assert main(["ensemble", "--experiment", str(experiment), "--strategy", "voting", "--ensemble_weights", "1"]) == 2
    assert "--ensemble_weights has 1 values for 2 models" in capsys.readouterr().err


def test_gpu_preset_on_a_cpu_cluster_is_refused(tmp_path, small_data, capsys, ray_shutdown):
    out = tmp_path / "out"
    rc = main(_train_args(out, small_data, "--set", "models.tiny-bart.resources.use_gpu=true"))
    assert rc == 2
    assert "the cluster has no GPU" in capsys.readouterr().err
    assert not out.exists()


def test_real_presets_offline_without_weights_fail_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "out"
    rc = main(["train", "--mode", "full", "--models", "kobart", "llama-3.2-korean-3b", "qwen3-4b", "--epochs", "2",
               "--k_folds", "2", "--allow_sample_data", "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    for checkpoint in ("digit82/kobart-summarization", "beomi/Llama-3.2-Korean-3B-Instruct",
                       "Qwen/Qwen3-4B-Instruct-2507"):
        assert checkpoint in err
    assert "HF_HOME" in err and not out.exists()


def test_broken_data_is_refused_before_anything_is_written(tmp_path, capsys):
    bad = tmp_path / "train.csv"
    bad.write_text("fname,dialogue,summary\na,no tag here,요약\na,#Person1#: 네,\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["train", "--models", "tiny-bart", "--train_data", str(bad), "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "speaker tag" in err and "duplicate fname" in err and "empty summary" in err
    assert not out.exists()


@pytest.mark.parametrize("mode, models, expected", [
    ("single", ["tiny-bart"], ["tiny-bart/full"]),
    ("kfold", ["tiny-bart"], ["tiny-bart/fold0", "tiny-bart/fold1", "tiny-bart/fold2"]),
    ("multi_model", ["tiny-bart", "tiny-llama"], ["tiny-bart/full", "tiny-llama/full"]),
    ("full", ["tiny-bart", "tiny-llama"], ["tiny-bart/fold0", "tiny-bart/fold1", "tiny-bart/fold2",
                                          "tiny-llama/fold0", "tiny-llama/fold1", "tiny-llama/fold2"]),
])
def test_units_per_mode(mode, models, expected):
    from raysum.config.resolve import resolve
    from raysum.pipeline import plan_units, validate

    cfg = validate(resolve({"mode": mode, "models": models, "k_folds": 3}))
    assert [u.name for u in plan_units(cfg)] == expected


def test_single_mode_trains_on_everything_and_picks_by_dev(tmp_path, small_data, capsys, monkeypatch, ray_shutdown):
    monkeypatch.chdir(tmp_path)  # a relative --output_dir, as in `make demo`
    out = tmp_path / "out"
    rc = main(["train", "--mode", "single", "--models", "tiny-llama", "--max_train_samples", "60",
               "--epochs", "1", "--num_beams", "1", "--max_length", "16", "--dev_data", small_data["dev"],
               "--test_data", small_data["test"], "--output_dir", "out"])
    assert rc == 0
    (path,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert not (path / "folds.csv").exists()
    scores = json.loads((path / "scores.json").read_text())
    assert list(scores["units"]) == ["tiny-llama/full"] and "oof" not in scores["units"]["tiny-llama/full"]
    assert scores["submission"]["strategy"] == "voting" and "stacking" not in scores["ensembles"]
    cand = pd.read_parquet(path / "candidates.parquet")
    assert set(cand["split"]) == {"dev", "test"} and cand["fold"].isna().all()
    assert json.loads((path / "units" / "tiny-llama" / "full" / "unit.json").read_text())["train_samples"] == 60


def test_resource_check_refuses_what_no_node_can_hold():
    from raysum.config import load_preset
    from raysum.errors import ConfigError
    from raysum.launch import check_resources

    nodes = [{"CPU": 4.0}, {"CPU": 2.0, "GPU": 1.0}]
    check_resources({"kobart": load_preset("kobart"), "tiny-bart": load_preset("tiny-bart")}, nodes)
    big = load_preset("tiny-bart")
    big.resources.cpus_per_worker = 8
    with pytest.raises(ConfigError, match="no node offers 8 CPU"):
        check_resources({"tiny-bart": big}, nodes)
    wide = load_preset("kobart")
    wide.resources.num_workers = 2
    with pytest.raises(ConfigError, match="for each of 2 worker"):
        check_resources({"kobart": wide}, nodes)
    with pytest.raises(ConfigError, match="the cluster has no GPU"):
        check_resources({"kobart": load_preset("kobart")}, [{"CPU": 16.0}])


def test_tta_augmentation_and_stacking_end_to_end(tmp_path, small_data, ray_shutdown):
    out = tmp_path / "out"
    rc = main(["train", "--mode", "full", "--models", "tiny-llama", "--k_folds", "2", "--max_train_samples", "80",
               "--epochs", "1", "--num_beams", "1", "--max_length", "16", "--dev_data", small_data["dev"],
               "--test_data", small_data["test"], "--use_tta", "--tta_strategies", "reorder", "--tta_num_aug", "1",
               "--use_augmentation", "--augmentation_methods", "speaker_swap", "--augmentation_ratio", "0.5",
               "--ensemble_strategy", "stacking", "--output_dir", str(out)])
    assert rc == 0
    (path,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    folds = pd.read_csv(path / "folds.csv")
    augmentation = json.loads((path / "inputs" / "augmentation.json").read_text())
    for fold in (0, 1):
        train_part = pd.read_parquet(path / "inputs" / f"fold{fold}_train.parquet")
        heldout = set(folds.loc[folds["fold"] == fold, "fname"])
        sources = {f.split("#aug")[0] for f in train_part["fname"]}
        assert not sources & heldout  # no augmented copy of a held-out dialogue reaches training
        info = augmentation[f"fold{fold}"]
        assert info["augmented_rows"] == round(0.5 * info["source_rows"]) == len(train_part) - info["source_rows"]
        unit = json.loads((path / "units" / "tiny-llama" / f"fold{fold}" / "unit.json").read_text())
        assert unit["train_samples"] == len(train_part)
    cand = pd.read_parquet(path / "candidates.parquet")
    assert set(cand["tta"]) == {"none", "reorder_1"}
    assert set(cand.loc[cand["tta"] == "reorder_1", "split"]) == {"oof", "dev", "test"}
    # summaries of speaker-swapped inputs are mapped back to the original labels
    from raysum.pipeline import map_back_labels

    raw = pd.concat([pd.read_parquet(p) for p in path.glob("units/*/fold*/predictions.parquet")], ignore_index=True)
    maps = pd.read_parquet(path / "inputs" / "tta_label_maps.parquet")
    assert (maps["label_map"] != "{}").all()  # reorder permutes speakers in every variant
    mapped = map_back_labels(raw, maps)
    key = ["split", "fname", "fold", "tta"]
    merged = cand.merge(mapped, on=key, suffixes=("", "_expected"))
    assert len(merged) == len(cand) and (merged["text"] == merged["text_expected"]).all()
    scores = json.loads((path / "scores.json").read_text())
    assert scores["submission"]["strategy"] == "stacking" and "augmentation" in scores["units"]["tiny-llama/fold0"]
    assert "cv_oof" in scores["ensembles"]["stacking"]["stacking"]


def test_resume_refuses_a_config_edited_since_the_units_trained(experiment, capsys):
    config_file = experiment / "config.json"
    original = config_file.read_text()
    before = {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file() and p.name != ".raysum.lock"}
    tree = json.loads(original)
    tree["models"]["tiny-bart"]["epochs"]["value"] = 5.0
    config_file.write_text(json.dumps(tree))
    try:
        assert main(["train", "--resume", str(experiment)]) == 2
        err = capsys.readouterr().err
        for fold in (0, 1):
            assert f"unit tiny-bart/fold{fold} was trained with other settings" in err
        assert "epochs: 1.0 -> 5.0" in err and "tiny-llama" not in err and "--retrain_changed" in err
        after = {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file() and p.name != ".raysum.lock"}
        assert after.keys() - {config_file} == before.keys() - {config_file}
        assert all(after[p] == before[p] for p in before if p != config_file)
        assert not (experiment / ".raysum.lock").exists()
    finally:
        config_file.write_text(original)
