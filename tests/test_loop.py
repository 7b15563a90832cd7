"""The whole loop on tiny models: train (two extra decoding settings) -> a stage-2 search
over strategy, weights and each model's decoding -> analyze -> finalize with the search's
best config. The submission is the best trial's ensemble recomputed from the files alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from raysum.cli import main
from raysum.experiment import Experiment

from test_finalize import _expected_submission, _submission

DECODING_SPACE = """
space: decoding
parameters:
  num_beams: {kind: choice, values: [1, 2]}
  length_penalty: {kind: uniform, low: 0.5, high: 2.0}
  max_length: {kind: int, low: 10, high: 30, step: 10}
"""
ENSEMBLE_SPACE = """
space: ensemble
parameters:
  strategy: {kind: choice, values: [voting, weighted_avg, stacking]}
  weights:
    each_model: {kind: uniform, low: 0.0, high: 1.0}
"""


@pytest.mark.slow
def test_train_search_analyze_finalize(tmp_path, small_data, capsys, ray_session):
    out = tmp_path / "out"
    with ray_session():
        assert main(["train", "--mode", "full", "--models", "tiny-bart", "tiny-llama", "--k_folds", "2",
                     "--max_train_samples", "30", "--epochs", "1", "--num_beams", "2", "--max_length", "20",
                     "--dev_data", small_data["dev"], "--test_data", small_data["test"], "--seed", "7",
                     "--num_cpus", "2", "--output_dir", str(out),
                     "--decoding_settings", "{num_beams: 1}", "{length_penalty: 1.4}"]) == 0
    (path,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    first = _submission(path)
    (tmp_path / "decoding.yaml").write_text(DECODING_SPACE, encoding="utf-8")
    (tmp_path / "ensemble.yaml").write_text(ENSEMBLE_SPACE, encoding="utf-8")
    capsys.readouterr()
    with ray_session():
        assert main(["tune", "--space", str(tmp_path / "decoding.yaml"), "--ensemble_space",
                     str(tmp_path / "ensemble.yaml"), "--experiment", str(path), "--trials", "8", "--seed", "3",
                     "--tokenizer", "whitespace", "--num_cpus", "2", "--json"]) == 0
    searched = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    best = searched["best"]
    assert main(["analyze", str(path)]) == 0
    best_config = path / "analysis" / "best_config.yaml"
    assert best_config.is_file()
    capsys.readouterr()

    with ray_session():
        assert main(["finalize", str(path), "--config", str(best_config)]) == 0
    said = capsys.readouterr().out
    labels = {model: entry["label"] for model, entry in best["decodings"].items()}
    weights = best["weights"] if best["strategy"] == "weighted_avg" else None
    expected = _expected_submission(path, best["strategy"], weights, labels)
    pd.testing.assert_frame_equal(_submission(path), expected)
    kept = sorted(path.glob("submission.*.csv"))
    assert len(kept) == 1 and _submission_at(kept[0]).equals(first)  # the run's own submission, kept

    final = json.loads(Experiment(path).scores_file.read_text(encoding="utf-8"))["final"]
    assert final["strategy"] == best["strategy"]
    assert {m: d["label"] for m, d in final["decodings"].items()} == labels
    assert final["from"]["strategy"].startswith(f"--config {best_config}")
    report = (path / "report.md").read_text(encoding="utf-8")
    assert f"ensemble {best['strategy']}" in report and "## Tune" in report
    assert "(decoding + ensemble search)" in report
    assert "final choice: ensemble " + best["strategy"] in said


def _submission_at(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)
