"""raysum.augment: each method's contract, the ratio, the cache, no leakage across folds, and
back-translation through from_pretrained with tiny MarianMT checkpoints built here."""

from __future__ import annotations

import io
import json
import random
import re
import runpy
import types
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from raysum.augment import AUGMENT_METHODS, Translator, _frame, augment_frame, check_available, register_augment
from raysum.data import TAG_PATTERN, assign_folds, fold_split, turn_speaker
from raysum.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
RULE_METHODS = ["speaker_swap", "turn_shuffle", "synonym", "paraphrase"]
_GEN = runpy.run_path(str(ROOT / "scripts" / "make_sample_data.py"))
NAME = re.compile(f"(?:{'|'.join(_GEN['SURNAMES'])})(?:{'|'.join(_GEN['GIVEN_NAMES'])})")


@pytest.fixture(scope="module")
def train():
    frame = pd.read_csv(ROOT / "raysum" / "resources" / "data" / "train.csv")
    return frame[["fname", "dialogue", "summary"]]


def facts(text: str) -> tuple:
    """Digits (outside tags), names and tags of a text, as multisets."""
    return (Counter(re.findall(r"\d+", TAG_PATTERN.sub("#", text))), Counter(NAME.findall(text)),
            Counter(TAG_PATTERN.findall(text)))


def speakers(dialogue: str) -> list[str | None]:
    return [turn_speaker(line) for line in dialogue.split("\n")]


def run(method: str, example: dict, seed: int = 0):
    return AUGMENT_METHODS[method].augment(dict(example), random.Random(seed))


# ---- methods ----------------------------------------------------------------------------------

def test_speaker_swap_swaps_dialogue_and_summary_and_is_an_involution(train):
    example = {"dialogue": "#Person1#: 예약하고 싶어요.\n#Person2#: 네, 몇 분이세요?",
               "summary": "#Person1#은 #Person2#에게 예약을 부탁하고, #Person2#는 인원을 묻는다."}
    swapped = run("speaker_swap", example)
    assert swapped == {"dialogue": "#Person2#: 예약하고 싶어요.\n#Person1#: 네, 몇 분이세요?",
                       "summary": "#Person2#는 #Person1#에게 예약을 부탁하고, #Person1#은 인원을 묻는다."}
    for row in train.head(400).to_dict("records"):
        once = run("speaker_swap", row)
        assert once["dialogue"] != row["dialogue"]
        assert (once["summary"] != row["summary"]) == bool(re.search("#Person[12]#", row["summary"]))
        assert run("speaker_swap", once) == row
    assert run("speaker_swap", {"dialogue": "#Person3#: 안녕", "summary": "인사"}) is None


def test_turn_shuffle_keeps_turns_speakers_and_exchanges(train):
    applied = 0
    for row in train.head(300).to_dict("records"):
        out = run("turn_shuffle", row, seed=len(row["dialogue"]))
        if out is None:
            continue
        applied += 1
        before, after = row["dialogue"].split("\n"), out["dialogue"].split("\n")
        assert after != before and Counter(after) == Counter(before)
        assert (after[0], after[-1]) == (before[0], before[-1])
        assert speakers(out["dialogue"]) == speakers(row["dialogue"])  # still alternating as before
        assert out["summary"] == row["summary"]
        for i, line in enumerate(after[:-1]):  # a moved question still has its answer after it
            j = before.index(line)
            if before[j].rstrip().endswith("?") and j != i:
                assert after[i + 1] == before[j + 1]
    assert applied >= 0.25 * 300
    assert run("turn_shuffle", {"dialogue": "#Person1#: 안녕?\n#Person2#: 응.", "summary": ""}) is None


@pytest.mark.parametrize("method", ["synonym", "paraphrase"])
def test_rewrites_keep_facts_and_summary(train, method):
    applied = 0
    for row in train.head(300).to_dict("records"):
        out = run(method, row, seed=len(row["fname"]))
        if out is None:
            continue
        applied += 1
        assert out["dialogue"] != row["dialogue"] and out["summary"] == row["summary"]
        assert facts(out["dialogue"]) == facts(row["dialogue"])
        assert speakers(out["dialogue"]) == speakers(row["dialogue"])
    assert applied >= 0.5 * 300
    assert run(method, {"dialogue": "#Person1#: ㅋㅋ\n#Person2#: ㅎㅎ", "summary": ""}) is None


def test_synonym_changes_words_only():
    out = run("synonym", {"dialogue": "#Person1#: 그럼 정말 감사합니다.\n#Person2#: 네.", "summary": "s"}, seed=3)
    assert out["dialogue"].split("\n")[1] == "#Person2#: 네."
    assert set(out["dialogue"].split("\n")[0].split()) <= {"#Person1#:", "그럼", "그러면", "정말", "진짜",
                                                          "감사합니다.", "고맙습니다."}


# ---- augment_frame: ratio, spread, cache, validation --------------------------------------------

@pytest.mark.parametrize("ratio, methods, expected", [
    (0.5, ["speaker_swap", "synonym", "paraphrase"], {"speaker_swap": 17, "synonym": 17, "paraphrase": 16}),
    (0.1, RULE_METHODS, {"speaker_swap": 3, "turn_shuffle": 3, "synonym": 2, "paraphrase": 2}),
    (1.0, ["paraphrase"], {"paraphrase": 100}),
    # speaker_swap makes one example per row: the 25 it cannot make go to paraphrase
    (2.5, ["speaker_swap", "paraphrase"], {"speaker_swap": 100, "paraphrase": 150}),
])
def test_ratio_is_honoured(train, ratio, methods, expected):
    part = train.head(100)
    out = augment_frame(part, methods, ratio, seed=1, cache_dir=None)
    assert list(out.columns) == ["fname", "dialogue", "summary", "source_fname", "method"]
    assert len(out) == round(ratio * len(part))
    assert out["method"].value_counts().to_dict() == expected
    assert out["fname"].is_unique
    assert all(f.startswith(f"{s}#aug-{m}-") for f, s, m in zip(out["fname"], out["source_fname"], out["method"]))
    assert set(out["source_fname"]) <= set(part["fname"])
    pairs = set(zip(part["dialogue"], part["summary"]))
    assert not any(p in pairs for p in zip(out["dialogue"], out["summary"]))  # no copies of a training row
    assert not out.duplicated(["dialogue", "summary"]).any()


def test_seeded_and_shorter_only_when_every_method_runs_out(train, caplog):
    part = train.head(40)
    first = augment_frame(part, RULE_METHODS, 0.5, seed=3, cache_dir=None)
    pd.testing.assert_frame_equal(first, augment_frame(part, RULE_METHODS, 0.5, seed=3, cache_dir=None))
    assert not first.equals(augment_frame(part, RULE_METHODS, 0.5, seed=4, cache_dir=None))
    out = augment_frame(part, ["speaker_swap"], 2.0, seed=3, cache_dir=None)
    assert len(out) == 40 and "made 40 of the 80" in caplog.text
    empty = augment_frame(part, ["speaker_swap"], 0.0, seed=3, cache_dir=None)
    assert len(empty) == 0 and list(empty.columns) == list(first.columns)


def test_cached_on_disk_by_content(train, tmp_path, monkeypatch):
    part = train.head(30)
    first = augment_frame(part, ["paraphrase", "turn_shuffle"], 0.5, seed=2, cache_dir=str(tmp_path))
    files = list(tmp_path.glob("augment-*.parquet"))
    assert len(files) == 1

    def no_work(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(_frame._Stream, "take", no_work)
    again = augment_frame(part, ["paraphrase", "turn_shuffle"], 0.5, seed=2, cache_dir=str(tmp_path))
    pd.testing.assert_frame_equal(again, first)
    monkeypatch.undo()
    changed = part.copy()
    changed.loc[0, "summary"] = "다른 요약."
    for args in [(changed, ["paraphrase", "turn_shuffle"], 0.5, 2), (part, ["paraphrase"], 0.5, 2),
                 (part, ["paraphrase", "turn_shuffle"], 0.4, 2), (part, ["paraphrase", "turn_shuffle"], 0.5, 9)]:
        augment_frame(*args, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("augment-*.parquet"))) == 5  # every input is part of the key


def test_validation(train):
    with pytest.raises(ConfigError, match="unknown augmentation method 'mixup'"):
        augment_frame(train.head(5), ["mixup"], 0.5, 0, None)
    with pytest.raises(ConfigError, match="ratio must be a number >= 0"):
        augment_frame(train.head(5), ["synonym"], -1, 0, None)
    with pytest.raises(ConfigError, match="at least one augmentation method"):
        augment_frame(train.head(5), [], 0.5, 0, None)
    with pytest.raises(DataError, match="missing summary"):
        augment_frame(train.head(5).drop(columns="summary"), ["synonym"], 0.5, 0, None)
    with pytest.raises(DataError, match="duplicated: train_0"):
        augment_frame(pd.concat([train.head(2), train.head(1)]), ["synonym"], 0.5, 0, None)


def test_registry():
    with pytest.raises(TypeError):
        register_augment("broken", types.SimpleNamespace())
    register_augment("upper", types.SimpleNamespace(augment=lambda ex, rng: {**ex, "dialogue": ex["dialogue"] + "!"}))
    try:
        frame = pd.DataFrame({"fname": ["a", "b"], "dialogue": ["#Person1#: 안녕", "#Person1#: 잘 가"],
                              "summary": ["인사", "작별"]})
        out = augment_frame(frame, ["upper"], 1.0, 0, None)
        assert sorted(out["dialogue"]) == ["#Person1#: 안녕!", "#Person1#: 잘 가!"]
    finally:
        AUGMENT_METHODS.pop("upper")


# ---- no leakage ----------------------------------------------------------------------------------

def test_augmenting_a_fold_never_touches_its_heldout_part(train):
    data = train.head(200)
    folds = assign_folds(data, k=5, seed=0)
    for fold in (0, 3):
        part, heldout = fold_split(data, folds, fold)
        out = augment_frame(part, RULE_METHODS, 1.0, seed=0, cache_dir=None)
        assert len(out) == len(part)
        assert set(out["source_fname"]) <= set(part["fname"])
        assert not set(out["source_fname"]) & set(heldout["fname"])
        # content check: no augmented dialogue carries the facts of a held-out-only dialogue
        part_facts = {repr(facts(d)) for d in part["dialogue"]}
        heldout_only = {repr(facts(d)) for d in heldout["dialogue"]} - part_facts
        swapped_back = [AUGMENT_METHODS["speaker_swap"].augment({"dialogue": d, "summary": ""}, None)["dialogue"]
                        for d in out["dialogue"]]
        for dialogue in list(out["dialogue"]) + swapped_back:
            assert repr(facts(dialogue)) not in heldout_only
        assert not set(out["dialogue"]) & set(heldout["dialogue"])


# ---- back-translation --------------------------------------------------------------------------

def _tiny_marian(folder: Path, spm_model: bytes, vocab: dict[str, int], seed: int) -> str:
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True)
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(spm_model)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json"))
    torch.manual_seed(seed)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=16, pad_token_id=vocab["<pad>"],
                          eos_token_id=vocab["</s>"], decoder_start_token_id=vocab["<pad>"],
                          forced_eos_token_id=vocab["</s>"])
    model = MarianMTModel(config)
    model.generation_config.min_new_tokens = 2  # an untrained model may stop at once: force some text out
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def translators(tmp_path_factory, train):
    """Two random tiny MarianMT checkpoints (ko->en, en->ko) with a SentencePiece model trained
    on the bundled utterances without tags and digits, so the translators cannot write either:
    pieces without digits come back as (random) text, pieces with digits are kept."""
    spm = pytest.importorskip("sentencepiece")
    lines = [re.sub(r"\d", "", TAG_PATTERN.sub("", line.split(":", 1)[-1])).strip()
             for dialogue in train["dialogue"][:400] for line in dialogue.split("\n")]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=800,
                                   pad_id=3, pad_piece="<pad>", character_coverage=1.0, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    root = tmp_path_factory.mktemp("translators")
    return [_tiny_marian(root / "ko-en", model.getvalue(), vocab, 0),
            _tiny_marian(root / "en-ko", model.getvalue(), vocab, 1)]


def test_back_translation_through_from_pretrained(train, translators, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert check_available(["back_translation"], translators) == []
    rest = train.iloc[5:]
    masked = rest[rest["dialogue"].str.contains("#PhoneNumber#|#Address#|#Email#|#DateOfBirth#")].head(3)
    part = pd.concat([masked, train.head(5)]).reset_index(drop=True)
    out = augment_frame(part, ["back_translation"], 0.75, seed=0, cache_dir=str(tmp_path),
                        translator_models=translators)
    assert len(out) == 6 and set(out["method"]) == {"back_translation"}
    sources = part.set_index("fname")
    for row in out.itertuples():
        source = sources.loc[row.source_fname]
        assert row.fname == f"{row.source_fname}#aug-back_translation-0"
        assert row.summary == source["summary"] and row.dialogue != source["dialogue"]
        assert speakers(row.dialogue) == speakers(source["dialogue"])  # speaker tags not translated
        assert Counter(TAG_PATTERN.findall(row.dialogue)) == Counter(TAG_PATTERN.findall(source["dialogue"]))
        assert facts(row.dialogue)[0] == facts(source["dialogue"])[0]  # digits kept (keep_digits)
    assert out["source_fname"].isin(masked["fname"]).any()  # dialogues with mask tags went through too
    monkeypatch.setattr(Translator, "__init__", lambda *a, **k: pytest.fail("loaded although cached"))
    pd.testing.assert_frame_equal(augment_frame(part, ["back_translation"], 0.75, seed=0, cache_dir=str(tmp_path),
                                                translator_models=translators), out)


def test_translator_translates_in_batches(translators, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    translator = Translator(translators, batch_size=3, num_beams=1, max_new_tokens=5)
    sizes = []
    for _, model in translator.stages:
        generate = model.generate
        model.generate = lambda *a, _g=generate, **k: sizes.append(len(k["input_ids"])) or _g(*a, **k)
    texts = [f"안녕하세요 {'정말 ' * i}반가워요" for i in range(7)] + ["안녕하세요 반가워요"]  # 7 distinct
    out = translator.translate(texts)
    assert len(out) == 8 and out[0] == out[-1] and all(isinstance(t, str) for t in out)
    # each checkpoint gets its distinct inputs, batch_size at a time (the untrained first one
    # may give the same output for several inputs: the second then gets fewer)
    assert sizes[:3] == [3, 3, 1]
    assert len(sizes) > 3 and max(sizes[3:]) <= 3


def test_back_translate_keeps_tags_speakers_and_digits():
    """The text handling around any translator: what is sent, what is put back."""
    from raysum.augment.back_translation import back_translate

    class Marker:
        def __init__(self):
            self.sent = []

        def translate(self, texts):
            self.sent += texts
            return [f"<{t}>" for t in texts]

    class DropsDigits:
        def translate(self, texts):
            return [re.sub(r"\d", "", t) + "!" for t in texts]

    dialogue = ("#Person1#: 연락처는 #PhoneNumber#로 연락 주시면 돼요.\n#Person2#: 네, #Email#예요.\n"
                "#Person1#: 내일 오후 3시에 봐요.")
    marker = Marker()
    expected = ("#Person1#: <연락처는> #PhoneNumber#<로 연락 주시면 돼요.>\n#Person2#: 네, #Email#예요.\n"
                "#Person1#: <내일 오후 3시에 봐요.>")
    assert back_translate([dialogue], marker) == [expected]
    assert marker.sent == ["연락처는", "로 연락 주시면 돼요.", "내일 오후 3시에 봐요."]  # no tag, no short piece
    dropped = back_translate([dialogue], DropsDigits())[0]
    assert dropped.endswith("#Person1#: 내일 오후 3시에 봐요.")  # the translation lost "3": source kept
    assert back_translate([dialogue], DropsDigits(), keep_digits=False)[0].endswith("#Person1#: 내일 오후 시에 봐요.!")


def test_check_available_names_missing_checkpoints(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    problems = check_available(["back_translation"], ["no-such-org/no-such-model", str(empty)])
    assert len(problems) == 2
    assert "'no-such-org/no-such-model' is not in the Hugging Face cache" in problems[0]
    assert "HF_HOME" in problems[0] and "local directory" in problems[0]
    assert str(empty) in problems[1] and "config.json" in problems[1]
    defaults = check_available(["back_translation"], None)
    assert any("Helsinki-NLP/opus-mt-ko-en" in p for p in defaults)
    assert any("Helsinki-NLP/opus-mt-tc-big-en-ko" in p for p in defaults)
    assert check_available(["synonym"], ["no-such-org/no-such-model"]) == []  # only back_translation loads them
    with pytest.raises(ConfigError, match="no-such-org/no-such-model"):
        augment_frame(pd.DataFrame({"fname": ["a"], "dialogue": ["#Person1#: 안녕하세요 반가워요"],
                                    "summary": ["s"]}), ["back_translation"], 1.0, 0, None,
                      translator_models=["no-such-org/no-such-model"])
    # a checkpoint in the cache passes offline; online, an uncached one is left to download
    snapshot = tmp_path / "hub" / "models--some-org--cached-mt" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    assert check_available(["back_translation"], ["some-org/cached-mt"]) == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert check_available(["back_translation"], ["no-such-org/no-such-model"]) == []


def _bt_config(translators):
    from raysum.config.resolve import resolve

    return resolve({"models": ["tiny-bart"], "use_augmentation": True, "augmentation_ratio": 0.5,
                    "augmentation_methods": ["back_translation", "synonym"], "augmentation_translators": translators})


def test_every_fold_is_back_translated_in_one_go_with_the_rows_a_local_translator_makes(
        train, translators, tmp_path, monkeypatch):
    """pretranslate: a stand-in pass learns every fold's pieces, one call translates them all
    (Ray tasks in a run; here the task body in this process), and the folds then get exactly
    the rows the translator itself would have made, from a cache the next run reads."""
    from raysum import launch
    from raysum.augment import translate_chunk
    from raysum.pipeline._variants import augment_training_part, pretranslate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _bt_config(translators)
    folds = assign_folds(train.head(24), k=2, seed=0)
    parts = [fold_split(train.head(24), folds, f)[0][["fname", "dialogue", "summary"]].reset_index(drop=True)
             for f in (0, 1)]
    calls = []
    monkeypatch.setattr(launch, "translate_on_ray", lambda models, texts, console=None: calls.append(len(texts))
                        or dict(zip(texts, translate_chunk(models, texts))))
    known = pretranslate(parts, cfg, tmp_path / "cache", None)
    assert len(calls) == 1 and calls[0] > 0  # both folds' pieces in one call
    made = [augment_training_part(part, cfg, tmp_path / "cache", known)[0] for part in parts]
    assert known.missed == 0  # every piece asked for was made ahead
    for part, rows in zip(parts, made):
        expected = augment_frame(part, ["back_translation", "synonym"], 0.5, cfg.experiment.seed, None,
                                 translator=Translator(translators))
        pd.testing.assert_frame_equal(rows.iloc[len(part):].reset_index(drop=True),
                                      expected[["fname", "dialogue", "summary"]])
    assert list((tmp_path / "cache").glob("translations-*.parquet"))
    for cached in (tmp_path / "cache").glob("augment-*.parquet"):
        cached.unlink()  # the augmented rows are gone, the translations are not: nothing to translate again
    pretranslate(parts, cfg, tmp_path / "cache", None)
    assert len(calls) == 1


@pytest.mark.slow
def test_translate_on_ray_shares_pieces_over_tasks_and_equals_the_local_translator(translators, local_ray,
                                                                                    monkeypatch):
    from rich.console import Console

    from raysum.launch import translate_on_ray

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = [f"안녕하세요 {'정말 ' * i}반가워요" for i in range(9)]
    console = Console(record=True, width=200)
    out = translate_on_ray(translators, texts, console)
    assert out == dict(zip(texts, Translator(translators).translate(texts)))
    lines = console.export_text().splitlines()
    assert lines[-1].startswith("back-translation: 9/9 pieces translated (3/3 task(s), CPU")
