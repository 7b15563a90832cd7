"""The experiment report without Ray: crafted experiment directories (small synthetic files
in the pipeline's layout) read back into report.md, report.html, plots and checks.

Scores use whitespace tokens (no Kiwi start-up); every number the tests compare is parsed
back out of report.md.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysum.cli import main
from raysum.config.resolve import resolve
from raysum.report import CHECKS, PLOTS, load_experiment, run_checks, write_report

from builders import write_experiment

MODELS = ("tiny-bart", "tiny-llama")
FOLDS = (0, 1)
UNITS = [f"{m}/fold{f}" for m in MODELS for f in FOLDS]
ARGV = ["raysum", "train", "--mode", "full", "--models", *MODELS, "--k_folds", "2", "--batch_size", "4",
        "--gradient_accumulation_steps", "1", "--use_tta", "--tta_strategies", "reorder"]
EXPECTED_PLOTS = {"loss.png", "learning_rate.png", "grad_norm.png", "dev_scores.png", "fold_spread.png",
                  "time_per_unit.png", "samples_per_s.png"}
# Whitespace-token summaries: a candidate is its reference with the first two words swapped,
# so ROUGE-1 = 1 and ROUGE-L < 1 (never equal).
PEOPLE = ["민수", "지현", "준호", "서연", "하늘", "도윤", "유진", "태오", "수아", "현우", "지아", "은호",
          "다인", "시우", "나래", "건우", "소율", "재민"]
PLACES = ["도서관", "시장", "병원", "공항", "카페", "학교"]


def reference(i: int) -> str:
    return f"{PEOPLE[i % len(PEOPLE)]} 는 내일 {PLACES[i % len(PLACES)]} 에서 친구 를 만난다"


def swapped(text: str) -> str:
    words = text.split()
    return " ".join([words[1], words[0], *words[2:]])


def in_order_prefix(text: str) -> str:
    return " ".join(text.split()[:4])  # a subsequence in order: LCS = overlap, R1 = RL


def scores(base: float, n: int) -> dict:
    """A scores.json entry with long decimals (the report must round them, not retype them)."""
    r1, r2, rl = base + 0.0123456, base / 2 + 0.0011111, base * 0.9 + 0.0004444
    total = r1 + r2 + rl
    return {"rouge1": r1, "rouge2": r2, "rougeL": rl, "rouge_sum": total, "competition_score": total / 3 * 100, "n": n}


def build_experiment(root: Path, problem: str | None = None) -> Path:
    """An experiment directory as the pipeline writes it: 2 models x 2 folds, 8 training
    dialogues, 6 dev, 4 test, TTA on. `problem` (a check's name) plants that problem."""
    path = root / f"20250101_120000_{problem or 'healthy'}"
    cli = {"mode": "full", "models": list(MODELS), "k_folds": 2, "batch_size": 4, "gradient_accumulation_steps": 1,
           "use_tta": True, "tta_strategies": ["reorder"]}
    tree = resolve(cli).tree()
    if problem == "cli_value_not_applied":  # the seed's bug: a preset value beat the command line
        tree["models"]["tiny-llama"]["gradient_accumulation_steps"] = {"value": 4, "source": "preset:tiny-llama.yaml"}
    created = 1_700_000_000.0
    run = {"command_line": ARGV, "created": created, "data": {"train": "train.csv", "dev": "dev.csv", "test": "test.csv"},
           "notes": [], "warnings": [], "unit_phases": [{"start": created + 2, "end": created + 100}],
           "finish_phase": {"start": created + 100, "end": created + 110}}

    frames = {"train": range(8), "dev": range(8, 14), "test": range(14, 18)}
    inputs = {split: pd.DataFrame({"fname": [f"{split}_{i}" for i in ids],
                                   "dialogue": [f"#Person1#: {reference(i)} 대화" for i in ids],
                                   "references": [[reference(i)] * (3 if split == "test" else 1) for i in ids],
                                   "topic": ["일상"] * len(ids)})
              for split, ids in frames.items()}
    folds = pd.DataFrame({"fname": [f"train_{i}" for i in range(8)], "fold": [i % 2 for i in range(8)]})
    augmentation = {f"fold{f}": {"source_rows": 4, "augmented_rows": 0} for f in FOLDS}

    candidates, unit_scores, units = [], {}, {}
    for m_index, model in enumerate(MODELS):
        for fold in FOLDS:
            name = f"{model}/fold{fold}"
            units[(model, f"fold{fold}")] = _unit(model, fold, problem, created + 5 + 20 * fold)
            rows = [("oof", i) for i in range(8) if i % 2 == fold] + [("dev", i) for i in frames["dev"]] \
                + [("test", i) for i in frames["test"]]
            for split, i in rows:
                text = swapped(reference(i))
                if name == "tiny-bart/fold0" and problem == "rouge1_equals_rougeL":
                    text = in_order_prefix(reference(i))
                if name == "tiny-bart/fold0" and problem == "degenerate_summaries" and split == "dev":
                    text = swapped(reference(8))
                candidates.append((split, f"{'train' if split == 'oof' else split}_{i}", model, fold, "none", text))
                if split == "dev":
                    candidates.append((split, f"dev_{i}", model, fold, "reorder_1", " ".join(text.split()[:5])))
            unit_scores[name] = {"model": model, "fold": fold, "oof": scores(0.20 + 0.03 * m_index + 0.01 * fold, 4),
                                 "dev": scores(0.21 + 0.03 * m_index + 0.01 * fold, 6),
                                 "timing": {"train_s": 10.0, "generate_s": 4.0, "train_samples": 4, "steps": 10},
                                 "augmentation": {"source_rows": 4, "augmented_rows": 0}}
    cand = pd.DataFrame(candidates, columns=["split", "fname", "model", "fold", "tta", "text"])
    cand["fold"] = cand["fold"].astype("Int64")
    cand["n_tokens"] = cand["text"].str.split().map(len)
    cand["logprob"] = -1.0

    best = "tiny-llama/fold1"
    untrained = 0.05 if problem != "below_untrained_baseline" else 0.22  # above tiny-bart/fold0's dev
    voting_dev = 0.30 if problem != "ensemble_worse_than_best_single" else 0.10
    best_single = {"unit": best, "oof": unit_scores[best]["oof"], "dev": unit_scores[best]["dev"]}
    result = {
        "tokenizer": "whitespace",
        "units": unit_scores,
        "models": {m: {"oof": scores(0.22 + 0.03 * i, 8), "dev_untrained": scores(untrained, 6)}
                   for i, m in enumerate(MODELS)},
        "ensembles": {
            "voting": {"oof": scores(0.27, 8), "dev": scores(voting_dev, 6), "best_single": best_single},
            "stacking": {"oof": scores(0.29, 8), "dev": scores(0.31, 6), "best_single": best_single,
                         "stacking": {"feature_importances": {"consensus": 0.61234, "length": 0.12345}}},
        },
        "ensemble_strategy": "stacking",
        "submission": {"strategy": "stacking", "reason": "ensemble stacking: crafted"},
    }
    return write_experiment(path, config_tree=tree, inputs=inputs, candidates=cand, scores=result, run=run,
                            folds=folds, augmentation=augmentation, units=units)


def _unit(model: str, fold: int, problem: str | None, started: float) -> tuple[dict, list[dict]]:
    """unit.json and metrics.jsonl rows of one unit."""
    name = f"{model}/fold{fold}"
    losses = list(np.linspace(3.0, 1.0, 10) + 0.01 * fold)
    if problem == "train_loss_not_falling" and name == "tiny-llama/fold0":
        losses = losses[::-1]
    evals = [2.0, 1.5]
    if problem == "eval_loss_rising" and name == "tiny-bart/fold1":
        evals = [2.0, 2.6]
    batch = 16 if problem == "cli_value_not_applied" and model == "tiny-llama" else 4
    rows = []
    for step, loss in enumerate(losses, start=1):
        rows.append({"step": step, "epoch": step / 5, "loss": loss, "grad_norm": 1.0 + 0.1 * step,
                     "learning_rate": 1e-3 * min(1.0, step / 2) * (1 - step / 11), "samples_per_s": 50.0,
                     "effective_batch_size": batch})
        if step % 5 == 0:
            rows.append({"step": step, "epoch": step / 5, "eval_loss": evals[step // 5 - 1]})
    generate_s = 25.0 if problem == "generation_slower_than_training" and name == "tiny-llama/fold1" else 4.0
    info = {"status": "done", "model": model, "fold": fold, "train_s": 10.0 + fold, "generate_s": generate_s,
            "train_samples": 4 if model == "tiny-bart" else 2, "eval_samples": 4, "epochs": 2.0, "steps": 10,
            "train_loss": losses[-1],
            "eval_loss": evals[-1], "predictions": {"oof": 4, "dev": 12, "test": 4},
            "trainable_params": 1000 if model == "tiny-bart" else 40, "total_params": 1000,
            "started_at": started, "finished_at": started + 30.0}
    return info, rows


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    path = build_experiment(tmp_path_factory.mktemp("report"))
    write_report(path, plots=True)
    return path


# --------------------------------------------------------------------------- parsing report.md back
def tables_under(markdown: str, heading: str) -> list[list[dict]]:
    """The pipe tables of the section that starts with `heading`, as lists of row dicts."""
    level = len(heading) - len(heading.lstrip("#"))
    section = markdown.split(heading, 1)[1]
    section = re.split(r"\n#{1,%d} " % level, section, maxsplit=1)[0]  # up to the next heading as high
    out = []
    for block in re.findall(r"((?:^\|.*\|\n?)+)", section, flags=re.MULTILINE):
        lines = [line for line in block.strip().splitlines()]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        out.append([dict(zip(header, (c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1]))))
                    for line in lines[2:]])
    return out


def close(cell: str, value: float, decimals: int) -> bool:
    return cell == f"{value:.{decimals}f}"


def assert_scores(row: dict, expected: dict, prefix: str = "") -> None:
    for header, key in (("R1", "rouge1"), ("R2", "rouge2"), ("RL", "rougeL"), ("rouge_sum", "rouge_sum")):
        assert close(row[prefix + header], expected[key], 4), (row, key)
    assert close(row[prefix + "competition_score"], expected["competition_score"], 2), row


# --------------------------------------------------------------------------- tables
def test_score_tables_match_scores_json(healthy):
    text = (healthy / "report.md").read_text(encoding="utf-8")
    expected = json.loads((healthy / "scores.json").read_text())
    for model in MODELS:
        _, score_table = tables_under(text, f"### {model}\n")
        rows = {(r["unit"], r["split"]): r for r in score_table}
        for name in (u for u in UNITS if u.startswith(model)):
            for split in ("oof", "dev"):
                assert_scores(rows[(name, split)], expected["units"][name][split])
                assert rows[(name, split)]["n"] == str(expected["units"][name][split]["n"])
        assert_scores(rows[(f"{model} (all folds)", "oof")], expected["models"][model]["oof"])
        assert_scores(rows[(f"{model} (untrained)", "dev")], expected["models"][model]["dev_untrained"])

    (ensemble_table, *_) = tables_under(text, "## Ensembles")
    rows = {r["selection"]: r for r in ensemble_table}
    for strategy, result in expected["ensembles"].items():
        label = f"ensemble {strategy}" + (" (submission)" if strategy == "stacking" else "")
        assert_scores(rows[label], result["oof"], "OOF ")
        assert_scores(rows[label], result["dev"], "dev ")
        delta = result["dev"]["competition_score"] - result["best_single"]["dev"]["competition_score"]
        assert float(rows[label]["dev Δ"]) == pytest.approx(delta, abs=0.006)
    assert_scores(rows["best single unit tiny-llama/fold1"], expected["units"]["tiny-llama/fold1"]["dev"], "dev ")
    assert "consensus 0.6123" in text


def test_training_tables_match_metrics_and_unit_files(healthy):
    text = (healthy / "report.md").read_text(encoding="utf-8")
    for model in MODELS:
        training, _ = tables_under(text, f"### {model}\n")
        assert [r["unit"] for r in training] == [u for u in UNITS if u.startswith(model)]
        for row in training:
            unit_dir = healthy / "units" / row["unit"]
            info = json.loads((unit_dir / "unit.json").read_text())
            metrics = [json.loads(line) for line in (unit_dir / "metrics.jsonl").read_text().splitlines()]
            losses = [m["loss"] for m in metrics if "loss" in m]
            evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
            assert close(row["train loss first"], losses[0], 4) and close(row["train loss last"], losses[-1], 4)
            assert close(row["eval loss first"], evals[0], 4) and close(row["eval loss last"], evals[-1], 4)
            assert close(row["training s"], info["train_s"], 2) and close(row["generation s"], info["generate_s"], 2)
            assert close(row["samples/s"], info["train_samples"] * info["epochs"] / info["train_s"], 1)
            assert row["effective batch size"] == str(metrics[0]["effective_batch_size"])
            assert row["steps"] == str(info["steps"])


def test_models_compared_table_matches_the_unit_files(healthy):
    text = (healthy / "report.md").read_text(encoding="utf-8")
    (rows,) = tables_under(text, "## Models compared\n")
    assert [r["model"] for r in rows] == list(MODELS)
    rates = {}
    for row in rows:
        infos, metrics = [], []
        for fold in FOLDS:
            unit_dir = healthy / "units" / row["model"] / f"fold{fold}"
            infos.append(json.loads((unit_dir / "unit.json").read_text()))
            metrics.append([json.loads(line) for line in (unit_dir / "metrics.jsonl").read_text().splitlines()])
        seconds = sum(i["train_s"] for i in infos)
        rates[row["model"]] = sum(i["train_samples"] * i["epochs"] for i in infos) / seconds
        losses = [[m["loss"] for m in ms if "loss" in m] for ms in metrics]
        norms = [m["grad_norm"] for ms in metrics for m in ms if "grad_norm" in m]
        assert close(row["training s"], seconds, 2) and close(row["samples/s"], rates[row["model"]], 2)
        assert close(row["loss reduction %"], np.mean([100 * (l[0] - l[-1]) / l[0] for l in losses]), 1)
        assert row["grad norm min – max"] == f"{min(norms):.3f} – {max(norms):.3f}"
        assert close(row["grad norm mean"], np.mean(norms), 3)
    fastest = max(rates.values())
    assert {r["model"]: r["x fastest"] for r in rows} == {m: f"{fastest / v:.2f}" for m, v in rates.items()}
    assert {r["model"]: r["trainable params"] for r in rows} == {"tiny-bart": "1,000 (100.00 %)",
                                                                 "tiny-llama": "40 (4.00 %)"}


def test_tune_section_shows_trials_best_trial_and_importances(tmp_path, monkeypatch):
    from raysum.tune import analysis

    path = build_experiment(tmp_path)
    assert "## Tune" not in (Path(write_report(path, plots=False)[-1])).read_text(encoding="utf-8")
    (path / "tune").mkdir()
    rng = np.random.default_rng(0)
    trials = pd.DataFrame({"trial": range(8), "trial_id": [f"t{i}" for i in range(8)], "status": "TERMINATED",
                           "param/strategy": ["voting", "weighted_avg"] * 4,
                           "param/weights.tiny-bart": rng.uniform(size=8)})
    trials["oof_competition_score"] = 40 + 5 * (trials["param/strategy"] == "weighted_avg") + rng.uniform(size=8)
    trials["dev_competition_score"] = trials["oof_competition_score"] - 1
    search = analysis.Search(path / "tune" / "ensemble_20260101", "ensemble", analysis.ENSEMBLE_OBJECTIVE, trials)
    monkeypatch.setattr(analysis, "experiment_searches", lambda p: [search])
    text = Path(write_report(path, plots=False)[-1]).read_text(encoding="utf-8")
    section = text.split("## Tune\n", 1)[1].split("\n## ", 1)[0]
    best = trials.loc[trials["oof_competition_score"].idxmax()]
    assert "### ensemble_20260101 (ensemble search)" in section and "8 trial(s), 8 reported" in section
    assert (f"Best trial #{best['trial']}: strategy = weighted_avg, weights.tiny-bart = "
            f"{best['param/weights.tiny-bart']:.4g}; OOF score {best['oof_competition_score']:.4f}, dev score "
            f"{best['dev_competition_score']:.4f}.") in section
    (rows,) = tables_under(text, "### ensemble_20260101 (ensemble search)\n")
    assert [int(r["trial"]) for r in rows] == trials.sort_values("oof_competition_score", ascending=False)[
        "trial"].head(5).tolist()
    importances = analysis.importances(trials)
    assert "Parameter importance (Optuna fANOVA" in section
    assert ", ".join(f"{k} {v:.3f}" for k, v in importances.items()) in section

    def unreadable(p):
        raise analysis.RaysumError("tune/x/experiment_state.json is damaged")

    monkeypatch.setattr(analysis, "experiment_searches", unreadable)
    text = Path(write_report(path, plots=False)[-1]).read_text(encoding="utf-8")
    assert "The searches could not be read back: tune/x/experiment_state.json is damaged" in text


def test_config_data_timeline_and_tta_sections(healthy):
    from raysum.metrics import score

    text = (healthy / "report.md").read_text(encoding="utf-8")
    assert shlex.join(ARGV) in text
    glob, per_model = tables_under(text, "## Configuration")
    settings = {r["setting"]: r for r in glob}
    assert settings["gradient_accumulation_steps"]["value"] == "1" and settings["gradient_accumulation_steps"]["source"] == "cli"
    assert settings["save_visualizations"]["source"] == "default"
    assert {r["setting"]: r for r in per_model}["batch_size"]["tiny-bart"] == "4 (cli)"

    data, folds = tables_under(text, "## Data")
    assert {r["split"]: r["dialogues"] for r in data} == {"train": "8", "dev": "6", "test": "4"}
    assert {r["split"]: r["references per dialogue"] for r in data}["test"] == "3.00"
    assert [(r["fold"], r["held-out (OOF) dialogues"]) for r in folds] == [("fold0", "4"), ("fold1", "4")]

    (timeline,) = tables_under(text, "## Timeline")
    rows = {r["phase"]: r for r in timeline}
    assert rows["unit tiny-bart/fold1"]["start"] == "+00:25" and rows["unit tiny-bart/fold1"]["duration s"] == "30.00"
    assert rows["all units"]["end"] == "+01:40"
    assert rows["scoring, ensembles, submission"]["duration s"] == "10.00"

    _, tta = tables_under(text, "## Ensembles")
    cand = pd.read_parquet(healthy / "candidates.parquet")
    dev = pd.read_parquet(healthy / "inputs" / "dev.parquet")
    refs = {f: list(r) for f, r in zip(dev["fname"], dev["references"])}
    row = next(r for r in tta if r["model"] == "tiny-llama" and r["input variant"] == "reorder_1")
    rows = cand[(cand["split"] == "dev") & (cand["model"] == "tiny-llama") & (cand["tta"] == "reorder_1")]
    assert_scores(row, score(rows["text"].tolist(), [refs[f] for f in rows["fname"]], "whitespace"))
    assert row["summaries"] == "12"


# --------------------------------------------------------------------------- checks
def test_healthy_experiment_has_no_finding(healthy):
    results = run_checks(load_experiment(healthy))
    assert [c.name for c, _ in results] == list(CHECKS)
    assert {c.name: f for c, f in results if f} == {}
    text = (healthy / "report.md").read_text(encoding="utf-8")
    assert "automatic checks: 0 finding(s)" in text and text.count(": no finding") == len(CHECKS)


@pytest.mark.parametrize("problem", list(CHECKS))
def test_each_check_fires_on_its_problem(problem, tmp_path):
    path = build_experiment(tmp_path, problem)
    findings = {c.name: f for c, f in run_checks(load_experiment(path))}
    assert findings[problem], f"{problem} did not fire"
    others = {name: f for name, f in findings.items() if f and name != problem}
    assert others == {}, others  # one planted problem, one check that speaks
    write_report(path, plots=False)
    text = (path / "report.md").read_text(encoding="utf-8")
    assert f"**{CHECKS[problem].title}** ({problem}):" in text
    assert all(f in text for f in findings[problem])


def test_check_messages_carry_the_numbers(tmp_path):
    path = build_experiment(tmp_path, "cli_value_not_applied")
    (findings,) = [f for c, f in run_checks(load_experiment(path)) if c.name == "cli_value_not_applied"]
    assert "gradient_accumulation_steps = 1 on the command line, but model tiny-llama ran with 4" in findings[0]
    assert any("tiny-llama/fold0 trained with an effective batch of 16" in f for f in findings)


# --------------------------------------------------------------------------- plots, html, CLI
def test_plots_have_the_expected_names_and_are_embedded(healthy):
    files = {p.name for p in (healthy / "plots").iterdir()}
    assert files == EXPECTED_PLOTS == set(PLOTS)
    for name in files:
        data = (healthy / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    text = (healthy / "report.md").read_text(encoding="utf-8")
    assert sorted(re.findall(r"!\[[^\]]*\]\(plots/([^)]+)\)", text)) == sorted(EXPECTED_PLOTS)


def test_without_plots_the_report_says_how_to_get_them(tmp_path):
    path = build_experiment(tmp_path)
    files = write_report(path, plots=False)
    assert files == [path / "report.md"] and not (path / "plots").exists()
    assert "run with `--save_visualizations`" in (path / "report.md").read_text(encoding="utf-8")


def test_report_command_writes_a_self_contained_html(tmp_path, capsys):
    path = build_experiment(tmp_path)
    assert main(["report", str(path), "--format", "md", "html"]) == 0
    assert "wrote 7 plots" in capsys.readouterr().out
    page = (path / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(EXPECTED_PLOTS) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(?!#|data:)', page)  # no file or URL outside the page
    assert page.count("<table>") >= 8 and 'id="checks"' in page
    assert (path / "report.md").is_file() and len(list((path / "plots").glob("*.png"))) == 7


def test_report_command_refuses_a_directory_that_is_no_experiment(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) != 0
    assert "not a raysum experiment directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- tracking settings
def test_unknown_tracker_and_missing_mlflow_stop_before_any_work(tmp_path, capsys, monkeypatch):
    import importlib.util

    out = tmp_path / "out"
    assert main(["train", "--models", "tiny-bart", "--tracking", "wandb", "--output_dir", str(out)]) == 2
    assert "tracking 'wandb' is unknown" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main(["train", "--models", "tiny-bart", "--tracking", "tensorboard", "mlflow",
                 "--output_dir", str(out)]) == 2
    assert "tracking mlflow needs the mlflow package: pip install mlflow" in capsys.readouterr().err
    assert not out.exists()


def test_tracking_callbacks_follow_the_setting(tmp_path):
    from transformers.integrations import TensorBoardCallback

    from raysum.training.tracking import tracking_callbacks

    (callback,) = tracking_callbacks(["tensorboard"], tmp_path / "tb" / "m_fold0", "m/fold0")
    assert isinstance(callback, TensorBoardCallback) and callback.logging_dir == str(tmp_path / "tb" / "m_fold0")
    assert tracking_callbacks(["none"], tmp_path, "m/fold0") == []


def test_an_unfinished_experiment_still_gets_a_report(tmp_path):
    """Units failed: no scores, no candidates, one unit without unit.json (the post-mortem report)."""
    path = build_experiment(tmp_path)
    for name in ("scores.json", "candidates.parquet", "units/tiny-llama/fold1/unit.json"):
        (path / name).unlink()
    files = write_report(path, plots=True)
    text = (path / "report.md").read_text(encoding="utf-8")
    assert "units finished: 3 of 4" in text and "submission: not written" in text
    assert "No ensemble was evaluated." in text and "No scores (the experiment was not scored)." in text
    assert {p.name for p in files if p.suffix == ".png"} == {"loss.png", "learning_rate.png", "grad_norm.png",
                                                             "time_per_unit.png", "samples_per_s.png"}
