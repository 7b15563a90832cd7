"""Ensembles: MBR voting, weighted voting, stacking's meta-model and its honest OOF picks."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from raysum import ensemble, metrics
from raysum.data import bundled_data
from raysum.ensemble import stacking

COLUMNS = ["split", "fname", "model", "fold", "tta", "text", "n_tokens", "logprob"]
EVALUATE_KEYS = {"strategy", "oof", "dev", "best_single", "selections"}

DIALOGUE = (
    "#Person1#: 내일 오후 3시에 회의실에서 팀 회의를 할까요?\n"
    "#Person2#: 좋아요. 발표 자료는 제가 준비할게요.\n"
    "#Person1#: 고마워요. 그럼 내일 봬요."
)
NEAR = [
    "#Person1#과 #Person2#는 내일 오후 3시에 회의실에서 팀 회의를 하기로 한다.",
    "#Person1#과 #Person2#는 내일 오후 3시에 회의실에서 팀 회의를 한다.",
    "#Person1#과 #Person2#는 내일 오후 3시 회의실에서 팀 회의를 하기로 한다.",
]
OUTLIER = "#Person2#는 주말에 제주도로 가족 여행을 떠날 계획을 세운다."


def table(rows) -> pd.DataFrame:
    """Candidates from (split, fname, model, fold, tta, text[, logprob]) tuples."""
    full = [(*r[:6], len(r[5]), r[6] if len(r) > 6 else -1.0) for r in rows]
    return pd.DataFrame(full, columns=COLUMNS).astype({"fold": "Int64"})


def hand_pool(split="dev", fname="d0"):
    # The outlier's model sorts first, so a tie-break could never hide a wrong pick.
    models = ["b-model", "c-model", "d-model"]
    rows = [(split, fname, "a-model", 0, "none", OUTLIER)]
    rows += [(split, fname, m, 0, "none", t) for m, t in zip(models, NEAR)]
    return rows


@pytest.fixture(scope="module", autouse=True)
def kiwi_ready():
    metrics.tokenize("")  # pay Kiwi's start-up once for the module


# --- a synthetic experiment with a planted quality signal --------------------------------

MODELS = ("m-a", "m-b", "m-c")


def _perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() > 0.1] or words
    return " ".join(kept)


def planted(n_oof=300, n_dev=100, seed=0):
    """Per dialogue one randomly chosen model writes light perturbations of the reference
    with a high log-prob; the others write another dialogue's summary with a low one.

    OOF pools hold one candidate per model (its fold is the one that did not train on
    the dialogue), dev pools one per unit (2 folds). On dev a noise model's two folds
    write the same wrong summary, so the pair agrees perfectly and misleads voting.
    """
    data = pd.read_csv(bundled_data("train"))
    rng = random.Random(seed)
    summaries = data["summary"].tolist()
    rows, dialogues, refs, good = [], {}, {"oof": {}, "dev": {}}, {}
    for i in range(n_oof + n_dev):
        split = "oof" if i < n_oof else "dev"
        fname, summary = data["fname"][i], summaries[i]
        dialogues[fname] = data["dialogue"][i]
        refs[split][fname] = [summary]
        good[fname] = rng.choice(MODELS)
        for model in MODELS:
            noise = summaries[rng.randrange(n_oof + n_dev, len(summaries))]
            for fold in [i % 2] if split == "oof" else [0, 1]:
                if model == good[fname]:
                    text, logprob = _perturb(summary, rng), -0.5 + rng.gauss(0, 0.1)
                else:
                    text, logprob = noise, -2.0 + rng.gauss(0, 0.1)
                rows.append((split, fname, model, fold, "none", text, logprob))
    return table(rows), dialogues, refs, good


@pytest.fixture(scope="module")
def experiment():
    candidates, dialogues, refs, good = planted()
    prepared = ensemble.prepare(candidates, dialogues, references_by_split=refs)
    return prepared, refs, good


def random_pick_score(prepared, split):
    """Expected competition_score of a uniformly random candidate per dialogue."""
    mask = prepared.split_mask(split)
    quality = pd.Series(prepared.reference_rouge[mask].mean(axis=1), index=prepared.pool_of[mask])
    return float(quality.groupby(level=0).mean().mean() * 100)


# --- prepare ------------------------------------------------------------------------------


def test_prepared_rouge_equals_metrics_rouge_on_the_same_tokens():
    rows = hand_pool() + hand_pool("oof", "d1")
    prepared = ensemble.prepare(table(rows), {"d0": DIALOGUE, "d1": DIALOGUE},
                                references_by_split={"dev": {"d0": [NEAR[0], OUTLIER]}})
    texts = prepared.candidates["text"].tolist()
    assert [list(t) for t in prepared.tokens] == metrics.tokenize_many(texts)
    dialogue_tokens = metrics.tokenize(DIALOGUE)
    for pool, start, stop in prepared.pool_ranges():
        for i in range(start, stop):
            for j in range(start, stop):
                expected = metrics.rouge_f1(prepared.tokens[i], prepared.tokens[j])
                assert tuple(prepared.pairwise[pool][i - start, j - start]) == expected
            assert tuple(prepared.dialogue_rouge[i]) == metrics.rouge_f1(prepared.tokens[i], dialogue_tokens)
    dev = prepared.split_mask("dev")
    for i in np.flatnonzero(dev):
        per_ref = [metrics.rouge_f1(prepared.tokens[i], metrics.tokenize(r)) for r in (NEAR[0], OUTLIER)]
        assert np.allclose(prepared.reference_rouge[i], np.mean(per_ref, axis=0))
    assert np.isnan(prepared.reference_rouge[~dev]).all()


def test_prepare_names_missing_columns_and_dialogues():
    with pytest.raises(ValueError, match="lacks column"):
        ensemble.prepare(table(hand_pool()).drop(columns="text"), {"d0": DIALOGUE})
    with pytest.raises(ValueError, match=r"no dialogue for 1 fname.*d0"):
        ensemble.prepare(table(hand_pool()), {"other": DIALOGUE})


# --- voting --------------------------------------------------------------------------------


def test_voting_picks_a_consensus_candidate_never_the_outlier():
    rows = hand_pool()
    for order in (rows, rows[::-1], rows[2:] + rows[:2]):
        picks = ensemble.select(ensemble.prepare(table(order), {"d0": DIALOGUE}), "voting")
        assert len(picks) == 1
        assert picks["text"][0] in NEAR
        assert picks["text"][0] != OUTLIER
    # The same pick whatever the row order: the tie-break is (model, fold, tta, text).
    first = ensemble.select(ensemble.prepare(table(rows), {"d0": DIALOGUE}), "voting")
    again = ensemble.select(ensemble.prepare(table(rows[::-1]), {"d0": DIALOGUE}), "voting")
    pd.testing.assert_frame_equal(first, again)


def test_voting_ties_go_to_the_first_model_and_single_candidates_are_kept():
    rows = [("dev", "d0", "m2", 0, "none", NEAR[0]), ("dev", "d0", "m1", 0, "none", NEAR[0]),
            ("test", "d0", "m3", pd.NA, "none", OUTLIER)]
    picks = ensemble.select(ensemble.prepare(table(rows), {"d0": DIALOGUE}), "voting")
    assert picks[["split", "model"]].values.tolist() == [["dev", "m1"], ["test", "m3"]]
    assert list(picks.columns) == ["split", "fname", "text", "model", "fold", "tta"]


# --- weighted_avg ---------------------------------------------------------------------------


def test_dominant_weight_picks_its_model_where_candidates_disagree():
    prepared = ensemble.prepare(table(hand_pool()), {"d0": DIALOGUE})
    assert ensemble.select(prepared, "voting")["model"][0] != "a-model"
    weights = {"a-model": 10.0, "b-model": 1.0, "c-model": 1.0, "d-model": 1.0}
    assert ensemble.select(prepared, "weighted_avg", weights=weights)["model"][0] == "a-model"
    # Weight 0 removes a model: it is never chosen.
    weights = {"a-model": 1.0, "b-model": 0.0, "c-model": 0.0, "d-model": 1.0}
    assert ensemble.select(prepared, "weighted_avg", weights=weights)["model"][0] in {"a-model", "d-model"}


def test_equal_weights_equal_voting(experiment):
    prepared, _, _ = experiment
    voting = ensemble.select(prepared, "voting")
    for w in (1.0, 0.3):
        weighted = ensemble.select(prepared, "weighted_avg", weights=dict.fromkeys(MODELS, w))
        pd.testing.assert_frame_equal(voting, weighted)
    pd.testing.assert_frame_equal(voting, ensemble.select(prepared, "weighted_avg"))


def test_weights_per_tta_variant():
    rows = hand_pool() + [("dev", "d0", "a-model", 0, "reorder_1", NEAR[0])]
    prepared = ensemble.prepare(table(rows), {"d0": DIALOGUE})
    base = {"b-model": 1.0, "c-model": 1.0, "d-model": 1.0}
    pick = ensemble.select(prepared, "weighted_avg", weights={"a-model|none": 1.0, "a-model|reorder_1": 20.0, **base})
    assert pick[["model", "tta"]].values.tolist() == [["a-model", "reorder_1"]]
    pick = ensemble.select(prepared, "weighted_avg", weights={"a-model": 1.0, "a-model|reorder_1": 0.0, **base})
    assert pick["tta"][0] == "none"


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"a-model": -1.0, "b-model": 1, "c-model": 1, "d-model": 1}, "finite number >= 0"),
        ({"a-model": float("nan"), "b-model": 1, "c-model": 1, "d-model": 1}, "finite number >= 0"),
        ({"a-model": True, "b-model": 1, "c-model": 1, "d-model": 1}, "finite number >= 0"),
        ({"a-model": 1.0, "b-model": 1.0, "c-model": 1.0}, "no weight for d-model"),
        ({"a-model": 1, "b-model": 1, "c-model": 1, "d-model": 1, "kobart": 1}, "no candidate comes from model 'kobart'"),
        ({"a-model": 1, "b-model": 1, "c-model": 1, "d-model": 1, "a-model|paraphrase_1": 1}, "no TTA variant"),
        ({"a-model": 0, "b-model": 0, "c-model": 0, "d-model": 0}, "positive sum"),
        ([1.0, 1.0, 1.0, 1.0], "must be a dict"),
    ],
)
def test_weights_are_validated(weights, message):
    prepared = ensemble.prepare(table(hand_pool()), {"d0": DIALOGUE})
    with pytest.raises(ValueError, match=message):
        ensemble.select(prepared, "weighted_avg", weights=weights)


def test_weight_problems_are_listed_together():
    prepared = ensemble.prepare(table(hand_pool()), {"d0": DIALOGUE})
    with pytest.raises(ValueError) as error:
        ensemble.select(prepared, "weighted_avg", weights={"a-model": -1, "zzz": 1})
    text = str(error.value)
    assert "'a-model' is -1" in text and "'zzz'" in text and "no weight for" in text


def test_weights_for_a_strategy_without_weights_are_an_error():
    prepared = ensemble.prepare(table(hand_pool()), {"d0": DIALOGUE})
    with pytest.raises(ValueError, match="weights apply to weighted_avg"):
        ensemble.select(prepared, "voting", weights={"a-model": 1.0})


# --- registry -------------------------------------------------------------------------------


def test_aliases_and_unknown_names():
    assert {"voting", "weighted_avg", "stacking"} <= set(ensemble.STRATEGIES)
    expected = {"majority_vote": "voting", "averaging": "weighted_avg", "rouge_weighted": "weighted_avg",
                "blending": "stacking", "voting": "voting", "stacking": "stacking"}
    for name, target in expected.items():
        assert ensemble.canonical(name) == target
    with pytest.raises(ValueError, match="unknown ensemble strategy 'magic'"):
        ensemble.canonical("magic")
    prepared = ensemble.prepare(table(hand_pool()), {"d0": DIALOGUE})
    pd.testing.assert_frame_equal(ensemble.select(prepared, "majority_vote"), ensemble.select(prepared, "voting"))
    pd.testing.assert_frame_equal(ensemble.select(prepared, "averaging"), ensemble.select(prepared, "voting"))


def test_register_strategy():
    def longest(prepared):
        return prepared.best_per_pool(np.array([len(t) for t in prepared.tokens], dtype=float))

    ensemble.register_strategy("longest", longest)
    try:
        prepared = ensemble.prepare(table(hand_pool()), {"d0": DIALOGUE})
        assert ensemble.select(prepared, "longest")["text"][0] == NEAR[0]
        with pytest.raises(ValueError, match="already registered"):
            ensemble.register_strategy("longest", longest)
        with pytest.raises(ValueError, match="alias"):
            ensemble.register_strategy("blending", longest)
    finally:
        ensemble.STRATEGIES.pop("longest", None)


# --- stacking -------------------------------------------------------------------------------


def test_stacking_beats_random_and_voting_on_a_planted_signal(experiment):
    prepared, refs, good = experiment
    result = ensemble.evaluate(prepared, "stacking", references_by_split=refs)
    voting = ensemble.evaluate(prepared, "voting", references_by_split=refs)
    stacked, random_dev = result["dev"]["competition_score"], random_pick_score(prepared, "dev")
    assert stacked > random_dev + 20
    assert stacked > voting["dev"]["competition_score"] + 20
    assert result["oof"]["competition_score"] > random_pick_score(prepared, "oof") + 20
    picks = result["selections"]
    hits = np.mean([model == good[f] for f, model in zip(picks["fname"], picks["model"])])
    assert hits > 0.9
    importances = result["stacking"]["feature_importances"]
    assert set(importances) == set(ensemble.candidate_features(prepared).columns)


def test_stacking_gain_disappears_with_shuffled_oof_references(experiment):
    prepared, refs, _ = experiment
    fnames = list(refs["oof"])
    shuffled_names = fnames[1:] + fnames[:1]  # every dialogue gets another's references
    shuffled = {"oof": dict(zip(fnames, [refs["oof"][f] for f in shuffled_names])), "dev": refs["dev"]}
    real = ensemble.evaluate(prepared, "stacking", references_by_split=refs)["dev"]["competition_score"]
    fake = ensemble.evaluate(prepared, "stacking", references_by_split=shuffled)["dev"]["competition_score"]
    random_dev = random_pick_score(prepared, "dev")
    assert real - random_dev > 20
    assert abs(fake - random_dev) < (real - random_dev) / 3


def test_stacking_oof_picks_never_use_a_model_trained_on_the_dialogue(experiment, monkeypatch):
    prepared, refs, _ = experiment
    fname_of = prepared.candidates["fname"]
    fits, predictions = [], []
    real_fit = stacking._fit_meta_model

    def spy_fit(features, target, seed):
        model = real_fit(features, target, seed)
        trained = set(fname_of[features.index])
        fits.append(trained)
        real_predict = model.predict

        def predict(rows):
            predictions.append((trained, set(fname_of[rows.index]), rows.index))
            return real_predict(rows)

        model.predict = predict
        return model

    monkeypatch.setattr(stacking, "_fit_meta_model", spy_fit)
    monkeypatch.setattr(stacking, "_importances", lambda *args: {})
    ensemble.select(prepared, "stacking", references=refs["oof"])
    oof_fnames = set(refs["oof"])
    assert len(fits) == stacking.MAX_SPLITS + 1
    assert max(len(t) for t in fits) == len(oof_fnames)  # the final model: every OOF dialogue
    predicted_oof = []
    for trained, predicted, index in predictions:
        assert not trained & predicted, "a meta-model scored a dialogue it was trained on"
        predicted_oof += [f for f in predicted if f in oof_fnames]
    assert sorted(predicted_oof) == sorted(oof_fnames)  # each OOF dialogue scored exactly once


def test_stacking_fits_on_one_openmp_thread_and_picks_the_same(experiment, monkeypatch):
    """Two OpenMP threads on 2 busy cores made the demo's stacking 10x slower; one picks the same."""
    from threadpoolctl import threadpool_info, threadpool_limits

    prepared, refs, _ = experiment
    threads = []
    real_fit = stacking._fit_meta_model

    def spy_fit(features, target, seed):
        threads.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"})
        return real_fit(features, target, seed)

    monkeypatch.setattr(stacking, "_fit_meta_model", spy_fit)
    with threadpool_limits(limits=2, user_api="openmp"):
        picks = ensemble.select(prepared, "stacking", references=refs["oof"])
    assert threads and all(t == {1} for t in threads), threads
    monkeypatch.setattr(stacking, "_one_thread", lambda: threadpool_limits(limits=2, user_api="openmp"))
    assert ensemble.select(prepared, "stacking", references=refs["oof"]).equals(picks)


def test_stacking_needs_oof_candidates():
    prepared = ensemble.prepare(table(hand_pool()), {"d0": DIALOGUE})
    with pytest.raises(ValueError, match="out-of-fold"):
        ensemble.select(prepared, "stacking", references={})


def test_features_are_pool_relative():
    rows = hand_pool("oof", "d1") + hand_pool() + [("dev", "d0", "e-model", 1, "paraphrase_1", NEAR[1], -3.0)]
    prepared = ensemble.prepare(table(rows), {"d0": DIALOGUE, "d1": DIALOGUE})
    features = ensemble.candidate_features(prepared)
    assert set(ensemble.FEATURE_DOCS) <= set(features.columns)
    assert features["pool_size"].tolist() == [5] * 5 + [4] * 4
    assert features["consensus_rank"].between(0, 1).all()
    assert features["tta"].sum() == 1
    assert (features["speaker_tags"] == 1.0).all()  # every tag of the candidates is in the dialogue
    for pool, start, stop in prepared.pool_ranges():
        assert features["consensus_gap"].iloc[start:stop].sum() == pytest.approx(0.0)


# --- evaluate -------------------------------------------------------------------------------


def test_evaluate_keys_and_best_single_unit(experiment):
    prepared, refs, _ = experiment
    for strategy in ("voting", "averaging"):
        result = ensemble.evaluate(prepared, strategy, references_by_split=refs)
        assert set(result) == EVALUATE_KEYS
        assert result["strategy"] == ensemble.canonical(strategy)
    result = ensemble.evaluate(prepared, "blending", references_by_split=refs, seed=3)
    assert set(result) == EVALUATE_KEYS | {"stacking"}
    assert result["strategy"] == "stacking"
    assert result["stacking"]["cv_oof"] == result["oof"]
    for split in ("oof", "dev"):
        assert set(result[split]) == {"rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score", "n"}
        assert result[split]["n"] == len(refs[split])
    assert set(result["best_single"]) == {"unit", "oof", "dev", "chosen_by"}
    selections = result["selections"]
    assert len(selections) == len(prepared.pools)
    assert not selections.duplicated(["split", "fname"]).any()

    unit, oof, dev = ensemble.best_single_unit(prepared, refs)
    assert result["best_single"] == {"unit": unit, "oof": oof, "dev": dev, "chosen_by": "oof"}
    model, fold = unit.split("/fold")
    c = prepared.candidates
    rows = c[(c["split"] == "dev") & (c["model"] == model) & (c["fold"] == int(fold)) & (c["tta"] == "none")]
    assert dev == metrics.score(rows["text"].tolist(), [refs["dev"][f] for f in rows["fname"]])


def test_best_single_unit_by_oof_and_by_dev_without_oof():
    # Unit "good/fold0" copies the references; the others write the outlier.
    rows, refs = [], {"oof": {}, "dev": {}}
    for split, fname in (("oof", "t0"), ("dev", "d0")):
        refs[split][fname] = [NEAR[0]]
        rows += [(split, fname, "good", 0, "none", NEAR[0]), (split, fname, "bad", 0, "none", OUTLIER)]
    dialogues = {"t0": DIALOGUE, "d0": DIALOGUE}
    prepared = ensemble.prepare(table(rows), dialogues)
    unit, oof, dev = ensemble.best_single_unit(prepared, refs)
    assert unit == "good/fold0" and oof["competition_score"] == 100.0 and dev["competition_score"] == 100.0
    no_oof = ensemble.prepare(table([r for r in rows if r[0] == "dev"]), dialogues)
    unit, oof, dev = ensemble.best_single_unit(no_oof, {"dev": refs["dev"]})
    assert unit == "good/fold0" and oof is None
    result = ensemble.evaluate(no_oof, "voting", references_by_split={"dev": refs["dev"]})
    assert result["oof"] is None and result["best_single"]["unit"] == "good/fold0"


# --- auto: the best single unit or an ensemble, by cross-fitted OOF score ---------------------


def weak_ensemble(n_oof=80, n_dev=20, seed=1, agree=True):
    """One model ("good") writes light perturbations of the reference; two weak models
    ("n-a", "n-b") write the same wrong summary, so they agree with each other perfectly
    and voting follows them (``agree``; else all three write light perturbations of the
    reference, so the most central one is the least perturbed). OOF pools hold one
    candidate per model, dev pools one per unit (2 folds)."""
    data = pd.read_csv(bundled_data("train"))
    rng = random.Random(seed)
    rows, dialogues, refs = [], {}, {"oof": {}, "dev": {}}
    for i in range(n_oof + n_dev):
        split = "oof" if i < n_oof else "dev"
        fname, summary = data["fname"][i], data["summary"][i]
        dialogues[fname] = data["dialogue"][i]
        refs[split][fname] = [summary]
        wrong = data["summary"][rng.randrange(n_oof + n_dev, len(data))]
        for fold in [i % 2] if split == "oof" else [0, 1]:
            rows.append((split, fname, "good", fold, "none", _perturb(summary, rng), -1.0 + rng.gauss(0, 0.1)))
            for model in ("n-a", "n-b"):
                text = wrong if agree else _perturb(_perturb(summary, rng), rng)
                rows.append((split, fname, model, fold, "none", text, -1.0 + rng.gauss(0, 0.1)))
    return table(rows), dialogues, refs


def shuffled_features(monkeypatch, seed=0):
    """stacking's features, each column permuted across the candidates: nothing to learn."""
    real = stacking.candidate_features

    def shuffled(prepared, models=None):
        features = real(prepared, models)
        rng = np.random.default_rng(seed)
        for column in features.columns:
            features[column] = rng.permutation(features[column].to_numpy())
        return features

    monkeypatch.setattr(stacking, "candidate_features", shuffled)


def _scores_on(prepared, rows, fnames, refs):
    """competition_score (raysum.metrics) of the texts at candidate positions ``rows`` whose fname is in ``fnames``."""
    picked = prepared.candidates.loc[rows]
    picked = picked[(picked["split"] == "oof") & picked["fname"].isin(fnames)]
    assert sorted(picked["fname"]) == sorted(fnames)
    return metrics.score(picked["text"].tolist(), [refs[f] for f in picked["fname"]])["competition_score"]


def test_auto_submits_the_best_single_unit_when_stacking_scores_below_it(monkeypatch):
    candidates, dialogues, refs = weak_ensemble()
    prepared = ensemble.prepare(candidates, dialogues, references_by_split=refs)
    shuffled_features(monkeypatch)
    result = ensemble.evaluate(prepared, "auto", references_by_split=refs, seed=5)
    auto = result["auto"]
    unit = result["best_single"]["unit"]
    assert unit.startswith("good/") and auto["unit"] == unit
    # the fair comparison: every option on the OOF dialogues the unit held out, nothing else
    fold = int(unit.split("/fold")[1])
    held_out = sorted(f for i, f in enumerate(refs["oof"]) if i % 2 == fold)
    assert auto["dialogues"] == len(held_out) == 40
    stacked = stacking.select(prepared, references=refs["oof"], seed=5, nested=True)
    assert auto["scores"]["stacking"] == pytest.approx(_scores_on(prepared, stacked.rows, held_out, refs["oof"]),
                                                       abs=1e-3)
    assert auto["scores"]["single_unit"] == pytest.approx(result["best_single"]["oof"]["competition_score"], abs=1e-3)
    assert auto["scores"]["stacking"] < auto["scores"]["single_unit"] - 10
    assert auto["gains"]["stacking"]["interval"][1] < 0  # knowingly worse: the whole interval is below 0
    assert auto["chosen"] == "single_unit"
    assert auto["reason"].startswith(f"no ensemble beats the best single unit on the 40 out-of-fold dialogues {unit}")
    assert f"stacking {auto['scores']['stacking']:.2f}" in auto["reason"]
    # the submission is the unit's own summaries on dev (and test), its model's on OOF
    picks = result["selections"]
    dev = picks[picks["split"] == "dev"]
    assert (dev["model"] == "good").all() and (dev["fold"] == fold).all() and (dev["tta"] == "none").all()
    assert (picks.loc[picks["split"] == "oof", "model"] == "good").all()
    assert result["dev"] == result["best_single"]["dev"]


def test_nested_stacking_falls_back_to_voting_where_its_gain_is_noise(monkeypatch):
    candidates, dialogues, refs = weak_ensemble(agree=False)
    prepared = ensemble.prepare(candidates, dialogues, references_by_split=refs)
    shuffled_features(monkeypatch)
    nested = stacking.select(prepared, references=refs["oof"], seed=0, nested=True)
    assert nested.info["meta_model"] == stacking.CONSENSUS and nested.info["fallback"]
    assert set(nested.info["meta_model_cv"]) == set(stacking.META_MODELS)
    assert np.array_equal(nested.rows, ensemble.voting.select(prepared))
    # where there is something to learn, a fitted meta-model wins the nested cross-fitting
    monkeypatch.undo()
    candidates, dialogues, refs = weak_ensemble()
    prepared = ensemble.prepare(candidates, dialogues, references_by_split=refs)
    learned = stacking.select(prepared, references=refs["oof"], seed=0, nested=True)
    assert learned.info["meta_model"] != stacking.CONSENSUS and not learned.info["fallback"]
    assert (prepared.candidates.loc[learned.rows, "model"] == "good").mean() > 0.9


def test_auto_chooses_stacking_on_a_planted_signal_with_its_gain_interval(experiment):
    prepared, refs, _ = experiment
    first = ensemble.evaluate(prepared, "auto", references_by_split=refs, seed=2)
    auto = first["auto"]
    assert auto["chosen"] == "stacking" and auto["reason"].startswith("stacking scores highest")
    low, high = auto["gains"]["stacking"]["interval"]
    assert 10 < low <= auto["gains"]["stacking"]["gain"] <= high
    assert auto["bootstrap"] == {"resamples": 1000, "level": 0.95, "seed": 2}
    assert auto["stacking"]["meta_model"] != stacking.CONSENSUS
    assert auto["scores"]["stacking"] > max(auto["scores"][o] for o in ("single_unit", "voting", "weighted_avg"))
    # its submission: stacking's picks, the OOF ones cross-fitted
    assert first["oof"]["competition_score"] > first["best_single"]["oof"]["competition_score"] + 10


def test_weighted_avg_weights_are_fit_without_the_dialogues_they_pick(experiment):
    from raysum.ensemble import weighted_avg
    from raysum.ensemble._crossfit import dialogue_folds

    prepared, refs, _ = experiment
    choice = weighted_avg.select_fitted(prepared, references=refs["oof"])
    oof_pools = np.flatnonzero(prepared.pools["split"] == "oof")
    quality = np.where(prepared.split_mask("oof"), prepared.reference_rouge.mean(axis=1), np.nan)
    assert choice.info["weights"] == weighted_avg.fit_weights(prepared, quality, oof_pools)
    fnames = prepared.pools["fname"].to_numpy()[oof_pools]
    folds = dialogue_folds(fnames, np.ones(len(fnames), dtype=bool))
    assert len(folds) == len(choice.info["weights_by_fold"]) == 5
    for (train, held_out), weights in zip(folds, choice.info["weights_by_fold"]):
        assert weights == weighted_avg.fit_weights(prepared, quality, oof_pools[train])
        expected = weighted_avg.select(prepared, weights=weights)
        assert np.array_equal(choice.rows[oof_pools[held_out]], expected[oof_pools[held_out]])
    dev = prepared.pools["split"].to_numpy() == "dev"
    assert np.array_equal(choice.rows[dev], weighted_avg.select(prepared, weights=choice.info["weights"])[dev])
    assert choice.info["weights"] != {m: 1.0 for m in MODELS}  # the search moved off equal weights


def test_auto_needs_out_of_fold_candidates():
    prepared = ensemble.prepare(table(hand_pool()), {"d0": DIALOGUE})
    with pytest.raises(ValueError, match="out-of-fold"):
        ensemble.select(prepared, "auto", references={})


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    from raysum.ensemble._crossfit import bootstrap_interval

    differences = np.random.default_rng(0).normal(1.0, 2.0, size=200)
    low, high = bootstrap_interval(differences, seed=4)
    assert low < differences.mean() < high and bootstrap_interval(differences, seed=4) == [low, high]
    assert bootstrap_interval(differences, seed=5) != [low, high]


def test_oof_and_dev_features_do_not_depend_on_test_candidates():
    """A stage-2 search prepares OOF and dev candidates only, finalize test's as well: both see
    the same OOF and dev features, so finalize reproduces the search trial's stacking."""
    candidates, dialogues, refs, _ = planted(n_oof=120, n_dev=40)
    test = candidates[candidates["split"] == "dev"].assign(split="test")
    test["logprob"] = test["logprob"] - 1.5  # another split, another log-prob level
    with_test = ensemble.prepare(pd.concat([candidates, test], ignore_index=True), dialogues,
                                 references_by_split=refs)
    without = ensemble.prepare(candidates, dialogues, references_by_split=refs)
    kept = (with_test.candidates["split"] != "test").to_numpy()
    pd.testing.assert_frame_equal(ensemble.candidate_features(with_test)[kept].reset_index(drop=True),
                                  ensemble.candidate_features(without).reset_index(drop=True))
    a = ensemble.evaluate(with_test, "stacking", references_by_split=refs)
    b = ensemble.evaluate(without, "stacking", references_by_split=refs)
    assert (a["oof"], a["dev"]) == (b["oof"], b["dev"])
