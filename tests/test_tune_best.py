"""The best trial of a search is the same trial for `raysum tune` and `raysum analyze`: the
best score, and among equal scores the trial created first (Ray's own pick among ties
follows its trial list, whose order differs between a live search and one read back)."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

from raysum.tune import analysis
from raysum.tune._best import best_result, creation_number

METRIC = "oof_competition_score"


def _result(tag: str, score: float, error=None) -> NS:
    return NS(error=error, metrics={METRIC: score, "experiment_tag": tag, "trial_id": f"t{tag}"}, config={})


def test_creation_number_reads_the_experiment_tag():
    assert creation_number("12_strategy=voting,weights=0.5") == 12
    assert creation_number("") == math.inf and creation_number(None) == math.inf


def test_equal_scores_go_to_the_trial_created_first():
    results = [_result("6_a", 0.45), _result("3_b", 0.45), _result("1_c", 0.43), _result("2_d", math.nan),
               _result("9_e", 0.99, error=RuntimeError("failed"))]
    assert best_result(results, METRIC, "max").metrics["experiment_tag"] == "3_b"
    assert best_result(results, METRIC, "min").metrics["experiment_tag"] == "1_c"
    assert best_result([_result("1_x", math.nan)], METRIC, "max") is None


def test_analyze_lists_trials_in_creation_order_and_names_the_search_s_best(monkeypatch, tmp_path):
    # read back from disk, Ray lists these trials in completion order: 6, 3, 1
    trials = [NS(trial_id=f"t{n}", experiment_tag=f"{n}_strategy={s}", status="TERMINATED", config={"strategy": s},
                 last_result={METRIC: v, "dev_competition_score": 1.0, "time_total_s": 0.1}, metric_analysis={})
              for n, s, v in [(6, "voting", 0.45), (3, "stacking", 0.45), (1, "voting", 0.43)]]
    monkeypatch.setattr("ray.tune.ExperimentAnalysis", lambda *args, **kwargs: NS(trials=trials))
    monkeypatch.setattr("raysum.tune.training_search.tune_state", lambda run: None)
    table = analysis.load_trials(tmp_path)
    assert table["trial_id"].tolist() == ["t1", "t3", "t6"] and table["trial"].tolist() == [0, 1, 2]
    best = table.loc[analysis.ENSEMBLE_OBJECTIVE.best_index(table[METRIC])]
    assert best["trial_id"] == "t3"
    live = [NS(error=None, metrics={**t.last_result, "experiment_tag": t.experiment_tag, "trial_id": t.trial_id})
            for t in trials]
    assert best_result(live, METRIC, "max").metrics["trial_id"] == best["trial_id"]
