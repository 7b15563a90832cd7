"""Prompt strategies of the causal models: zero_shot, instruction_ko, few_shot (examples
from the unit's own training part only, by similarity, within the source budget)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from raysum.config import load_preset
from raysum.models import load_model_and_tokenizer
from raysum.models.prompts import EXAMPLES_INTRO, INSTRUCTION_KO, encode_examples, encode_sources
from raysum.models.shots import ShotPool

SAMPLE = Path(__file__).resolve().parents[1] / "raysum" / "resources" / "data" / "train.csv"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLE).head(60)[["fname", "dialogue", "summary"]]


@pytest.fixture(scope="module")
def tokenizer(frame, tmp_path_factory):
    settings = dataclasses.replace(load_preset("tiny-llama"), prompt_strategy="few_shot")
    _, tokenizer = load_model_and_tokenizer(settings, frame["dialogue"].tolist() + frame["summary"].tolist(),
                                            cache_dir=tmp_path_factory.mktemp("tok"), device="cpu")
    return tokenizer


def _text(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)


def test_instruction_ko_renders_the_korean_instruction(tokenizer, frame):
    settings = dataclasses.replace(load_preset("tiny-llama"), prompt_strategy="instruction_ko")
    text = _text(tokenizer, encode_sources(tokenizer, settings, frame["dialogue"].head(1).tolist())[0])
    assert INSTRUCTION_KO.split("{dialogue}")[0].split()[0] in text and "요약:" in text
    zero = _text(tokenizer, encode_sources(tokenizer, load_preset("tiny-llama"), frame["dialogue"].head(1).tolist())[0])
    assert "당신은" not in zero and "다음 대화를 요약하세요" in zero


def test_the_pool_picks_similar_examples_never_the_dialogue_itself_or_its_augmented_copy(frame):
    fnames = frame["fname"].tolist()
    pool = ShotPool(frame["dialogue"].tolist() + [frame["dialogue"][0] + " 네."],
                    frame["summary"].tolist() + ["copy"], fnames + [f"{fnames[0]}#aug-synonym-0"])
    (first,) = pool.pick([frame["dialogue"][0]], k=3, fnames=[fnames[0]])
    assert len(first) == 3
    assert all(d != frame["dialogue"][0] and s != "copy" for d, s in first)
    (held_out,) = pool.pick([frame["dialogue"][0]], k=2)  # a dialogue outside the pool: its nearest rows
    assert held_out[0] == (frame["dialogue"][0], frame["summary"][0])  # the identical text is the most similar
    assert pool.pick(frame["dialogue"].head(4).tolist(), k=2) == pool.pick(frame["dialogue"].head(4).tolist(), k=2)


def test_few_shot_prompts_carry_examples_within_the_source_budget(tokenizer, frame):
    from raysum.models.prompts import EXAMPLE, _examples_ids

    settings = dataclasses.replace(load_preset("tiny-llama"), prompt_strategy="few_shot", few_shot_k=2,
                                   max_source_length=400)
    pool = ShotPool(frame["dialogue"][10:].tolist(), frame["summary"][10:].tolist(), frame["fname"][10:].tolist())
    dialogues = frame["dialogue"].head(5).tolist()
    shots = pool.pick(dialogues, k=2)
    few = encode_sources(tokenizer, settings, dialogues, shots)
    for ids, dialogue, examples in zip(few, dialogues, shots):
        text = _text(tokenizer, ids)
        body = len(tokenizer(dialogue.strip(), add_special_tokens=False, truncation=True, max_length=400)["input_ids"])
        block = _examples_ids(tokenizer, examples, 400 - body)
        assert body + len(block) <= 400 and _text(tokenizer, block) in text
        if block:
            assert EXAMPLES_INTRO.strip() in text and text.index(examples[0][1]) < text.index("다음 대화를 요약하세요")

    sizes = [len(tokenizer(EXAMPLE.format(dialogue=d, summary=s), add_special_tokens=False)["input_ids"])
             for d, s in shots[0]]
    intro = len(tokenizer(EXAMPLES_INTRO, add_special_tokens=False)["input_ids"])
    assert len(_examples_ids(tokenizer, shots[0], intro + sum(sizes))) == intro + sum(sizes)  # both fit
    only_second = _examples_ids(tokenizer, shots[0][::-1], intro + min(sizes))  # the larger one is skipped
    assert len(only_second) == intro + min(sizes)
    assert _examples_ids(tokenizer, shots[0], intro + min(sizes) - 1) == []  # none fits: no block at all
    zero = dataclasses.replace(settings, prompt_strategy="zero_shot")
    assert all(EXAMPLES_INTRO.strip() not in _text(tokenizer, ids)
               for ids in encode_sources(tokenizer, dataclasses.replace(settings, max_source_length=40), dialogues,
                                         shots))
    examples = encode_examples(tokenizer, settings, dialogues, frame["summary"].head(5).tolist(), shots)
    for example, ids in zip(examples, few):
        assert example["input_ids"][:len(ids)] == ids and all(label == -100 for label in example["labels"][:len(ids)])
    assert len(encode_sources(tokenizer, zero, dialogues)[0]) < len(few[0])


def test_few_shot_without_examples_is_an_error(tokenizer, frame):
    from raysum.errors import RaysumError

    settings = dataclasses.replace(load_preset("tiny-llama"), prompt_strategy="few_shot")
    with pytest.raises(RaysumError, match="few-shot prompts need each dialogue's examples"):
        encode_sources(tokenizer, settings, frame["dialogue"].head(2).tolist())


def test_strategy_is_validated_and_causal_only():
    from raysum.config.resolve import resolve
    from raysum.pipeline import model_problems

    cfg = resolve({"models": ["tiny-bart", "tiny-llama"]},
                  overrides=["models.tiny-bart.prompt_strategy=few_shot", "models.tiny-llama.prompt_strategy=one_shot"])
    assert "applies to causal models" in model_problems(cfg.models["tiny-bart"])[0]
    assert model_problems(cfg.models["tiny-llama"]) == [
        "prompt_strategy 'one_shot': choose zero_shot, few_shot, instruction_ko"]
    cfg = resolve({"models": ["tiny-llama"]}, overrides=["models.tiny-llama.few_shot_k=0"])
    assert cfg.problems or model_problems(cfg.models["tiny-llama"])


@pytest.mark.slow
def test_a_few_shot_unit_takes_examples_from_its_own_training_part_only(tmp_path, frame, monkeypatch):
    """The unit's prompts (training, held-out, test) show summaries of its training part
    only, and a finished unit generating again (raysum predict) picks the same examples."""
    from raysum.models import shots as shots_module
    from raysum.training import predict_unit, run_unit

    data = tmp_path / "data"
    data.mkdir()
    train, heldout, test = frame.head(30), frame.iloc[30:36], frame.iloc[36:42]
    train.to_parquet(data / "train.parquet")
    heldout.to_parquet(data / "eval.parquet")
    heldout[["fname", "dialogue"]].to_parquet(data / "oof.parquet")
    test[["fname", "dialogue"]].to_parquet(data / "test.parquet")
    picked: list[str] = []
    original = shots_module.ShotPool.pick

    def spying(self, dialogues, k, fnames=None):
        out = original(self, dialogues, k, fnames)
        picked.extend(summary for examples in out for _, summary in examples)
        return out

    monkeypatch.setattr(shots_module.ShotPool, "pick", spying)
    settings = dataclasses.replace(load_preset("tiny-llama"), prompt_strategy="few_shot", few_shot_k=2, epochs=1,
                                   max_length=8, num_beams=1, max_source_length=384)
    config = {"unit_dir": str(tmp_path / "unit"), "model": dataclasses.asdict(settings), "fold": 0, "seed": 3,
              "train_path": str(data / "train.parquet"), "eval_path": str(data / "eval.parquet"),
              "predict": {"oof": str(data / "oof.parquet"), "test": str(data / "test.parquet")},
              "tokenizer_cache": str(tmp_path / "tok"), "resume": False}
    run_unit(config)
    assert picked and set(picked) <= set(train["summary"])
    assert not set(picked) & set(heldout["summary"])
    saved = pd.read_parquet(tmp_path / "unit" / "predictions.parquet").query("split == 'test'")
    assert (tmp_path / "unit" / "checkpoint" / "few_shot_pool.parquet").is_file()

    from raysum.training import unit as unit_module

    unit_module._POOLS.clear()
    out = predict_unit({"unit_dir": str(tmp_path / "unit"), "model": dataclasses.asdict(settings), "fold": 0,
                        "predict": {"test": str(data / "test.parquet")}, "output_path": str(tmp_path / "again.parquet")})
    again = pd.read_parquet(out)
    assert again["text"].tolist() == saved["text"].tolist()


def test_the_training_space_searches_prompt_strategy_for_causal_models_only():
    from raysum.tune.space import load_space
    from raysum.tune.training_search import model_parameters

    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "training.yaml")
    params, notes, problems = model_parameters(space, "tiny-llama", load_preset("tiny-llama"))
    assert list(params["prompt_strategy"].values) == ["zero_shot", "few_shot", "instruction_ko"] and not problems
    params, notes, problems = model_parameters(space, "tiny-bart", load_preset("tiny-bart"))
    assert "prompt_strategy" not in params and not problems
    assert "prompt_strategy is not searched for tiny-bart: a seq2seq model has no prompt" in notes
