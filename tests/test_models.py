"""Model layer: real presets' shapes and trainable parameters, tiny presets built from
config with trained tokenizers, loading from a directory, offline availability checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from raysum.config import load_preset
from raysum.errors import RaysumError
from raysum.models import (
    TAG_TOKENS, check_weights_available, count_parameters, encode_examples, encode_sources,
    load_model_and_tokenizer, resolve_precision, shape_only_model, train_tokenizer,
)

DIALOGUES = [
    "#Person1#: 안녕하세요, 스미스씨. 오늘 왜 오셨나요?\n#Person2#: 건강검진을 받으려고요.\n#Person1#: 번호는 #PhoneNumber# 맞나요?",
    "#Person1#: 주소가 어떻게 되세요?\n#Person2#: #Address# 에 살아요!\n#Person3#: 저도 같이 갈게요.",
    "#Person1#: 토요일 오후 2시에 고깃집에서 만나요.\n#Person2#: 좋아요, 선물은 향수로 해요.",
]
SUMMARIES = [
    "#Person2#는 건강검진을 받으러 왔고 #Person1#은 #PhoneNumber# 를 확인한다.",
    "#Person2#는 #Address# 에 살고 #Person3#도 같이 간다.",
    "#Person1#과 #Person2#는 토요일에 만나 향수를 선물하기로 한다.",
]
TEXTS = (DIALOGUES + SUMMARIES) * 10

# Shapes of the real checkpoints' config.json (no download needed).
REAL_CONFIGS = {
    "kobart": dict(  # digit82/kobart-summarization
        model_type="bart", vocab_size=30000, d_model=768, encoder_layers=6, decoder_layers=6,
        encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
        max_position_embeddings=1026),
    "llama-3.2-korean-3b": dict(  # Llama-3.2-3B architecture
        model_type="llama", vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
        num_attention_heads=24, num_key_value_heads=8, tie_word_embeddings=True),
    "qwen3-4b": dict(  # Qwen/Qwen3-4B-Instruct-2507
        model_type="qwen3", vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
}


@pytest.mark.parametrize("preset, trainable", [
    ("kobart", 123_859_968), ("llama-3.2-korean-3b", 24_313_856), ("qwen3-4b", 33_030_144)])
def test_real_presets_trainable_parameters_match_the_seed(preset, trainable):
    model = shape_only_model(load_preset(preset), REAL_CONFIGS[preset])
    assert next(model.parameters()).device.type == "meta"
    counted, total = count_parameters(model)
    assert counted == trainable
    if preset != "kobart":  # LoRA: a small share of the frozen base
        assert counted / total < 0.01


def test_tiny_tokenizer_keeps_tags_whole_and_in_decoded_text(tmp_path):
    tokenizer = train_tokenizer(TEXTS, vocab_size=300, cache_dir=tmp_path)
    assert len(tokenizer) <= 300
    text = DIALOGUES[0]
    ids = tokenizer(text)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert "#Person1#" in tokens and "#PhoneNumber#" in tokens
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    for tag in TAG_TOKENS:
        assert tokenizer.convert_tokens_to_ids(tag) not in tokenizer.all_special_ids
    assert tokenizer.chat_template


def test_tokenizer_cache_is_keyed_by_texts_and_vocab_size(tmp_path):
    first = train_tokenizer(TEXTS, vocab_size=300, cache_dir=tmp_path)
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert len(cached) == 1 and cached[0].startswith("tokenizer-")
    again = train_tokenizer(TEXTS, vocab_size=300, cache_dir=tmp_path)
    assert again.get_vocab() == first.get_vocab()
    assert sorted(p.name for p in tmp_path.iterdir()) == cached
    train_tokenizer(TEXTS, vocab_size=280, cache_dir=tmp_path)
    train_tokenizer(TEXTS[:-1], vocab_size=300, cache_dir=tmp_path)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("tokenizer-")]) == 3


@pytest.mark.parametrize("preset, model_class", [
    ("tiny-bart", "BartForConditionalGeneration"), ("tiny-llama", "LlamaForCausalLM"),
    ("tiny-qwen3", "Qwen3ForCausalLM")])
def test_tiny_presets_build_seeded_models_of_the_real_classes(preset, model_class, tmp_path):
    settings = load_preset(preset)
    model, tokenizer = load_model_and_tokenizer(settings, TEXTS, cache_dir=tmp_path, device="cpu", seed=3)
    assert type(model).__name__ == model_class
    assert model.config.vocab_size >= len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    same, _ = load_model_and_tokenizer(settings, TEXTS, cache_dir=tmp_path, device="cpu", seed=3)
    other, _ = load_model_and_tokenizer(settings, TEXTS, cache_dir=tmp_path, device="cpu", seed=4)
    first = next(model.parameters())
    assert torch.equal(first, next(same.parameters()))
    assert not torch.equal(first, next(other.parameters()))
    if settings.kind == "causal":
        assert tokenizer.padding_side == "left"


def _summary_loss(model, collator, examples) -> float:
    with torch.no_grad():
        return model(**collator(examples)).loss.item()


@pytest.mark.slow
def test_tiny_bart_summaries_depend_on_the_dialogue(tmp_path):
    """A short training run on the bundled sample: the summaries' loss given their own
    dialogues must be clearly below the loss given other dialogues. With BART's default
    init_std (0.02) at d_model 64 the encoder collapses to a constant and both are equal."""
    import pandas as pd

    from raysum.data import bundled_data
    from raysum.training import make_collator

    frame = pd.read_csv(bundled_data("train")).head(400)
    dialogues, summaries = frame["dialogue"].tolist(), frame["summary"].tolist()
    settings = load_preset("tiny-bart")
    model, tokenizer = load_model_and_tokenizer(settings, dialogues + summaries, cache_dir=tmp_path, device="cpu")
    examples = encode_examples(tokenizer, settings, dialogues, summaries)
    collator = make_collator(settings, tokenizer, model)
    steps, warmup = 200, 20
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min((k + 1) / warmup, (steps - k) / (steps - warmup)))
    order = torch.randint(len(examples), (steps, settings.batch_size), generator=torch.Generator().manual_seed(0))
    model.train()
    for batch in order.tolist():
        model(**collator([examples[i] for i in batch])).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()

    model.eval()
    shown = dialogues[:64]
    matched = _summary_loss(model, collator, encode_examples(tokenizer, settings, shown, summaries[:64]))
    shuffled = _summary_loss(model, collator, encode_examples(tokenizer, settings, shown[1:] + shown[:1], summaries[:64]))
    assert shuffled - matched > 0.02, (matched, shuffled)


def test_causal_examples_mask_the_prompt_and_end_with_eos(tmp_path):
    settings = load_preset("tiny-llama")
    _, tokenizer = load_model_and_tokenizer(settings, TEXTS, cache_dir=tmp_path, device="cpu")
    example = encode_examples(tokenizer, settings, DIALOGUES[:1], SUMMARIES[:1])[0]
    prompt = encode_sources(tokenizer, settings, DIALOGUES[:1])[0]
    assert example["input_ids"][:len(prompt)] == prompt
    assert example["labels"][:len(prompt)] == [-100] * len(prompt)
    target = example["labels"][len(prompt):]
    assert target[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(target, skip_special_tokens=True) == SUMMARIES[0]
    rendered = tokenizer.decode(prompt)
    assert rendered.startswith("<s><|user|>\n다음 대화를 요약하세요.\n#Person1#:")
    assert rendered.endswith("<|assistant|>\n")


def test_lora_on_a_tiny_causal_model_trains_only_adapters(tmp_path):
    settings = load_preset("tiny-llama")
    settings.lora = load_preset("qwen3-4b").lora
    settings.lora.r = 4
    model, _ = load_model_and_tokenizer(settings, TEXTS, cache_dir=tmp_path, device="cpu")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # r * (in + out) per projection: 2 layers x 7 projections
    per_layer = 4 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 3)
    assert count_parameters(model)[0] == 2 * per_layer


def test_saved_tiny_model_loads_through_the_checkpoint_path(tmp_path):
    tiny = load_preset("tiny-llama")
    model, tokenizer = load_model_and_tokenizer(tiny, TEXTS, cache_dir=tmp_path / "tok", device="cpu")
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    assert not list((tmp_path / "saved").glob("*.bin"))

    settings = dataclasses.replace(tiny, from_config=None, checkpoint=str(tmp_path / "saved"))
    assert check_weights_available(settings) == []
    loaded, loaded_tokenizer = load_model_and_tokenizer(settings, device="cpu")
    assert type(loaded) is type(model)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert loaded_tokenizer.padding_side == "left"
    ids = torch.tensor([encode_sources(tokenizer, tiny, DIALOGUES[:1])[0]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)


def test_missing_hub_checkpoint_offline_names_it_and_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = load_preset("qwen3-4b")
    problems = check_weights_available(settings)
    assert len(problems) == 1
    assert "Qwen/Qwen3-4B-Instruct-2507" in problems[0]
    assert "HF_HOME" in problems[0] and str(tmp_path / "hf") in problems[0]
    assert "local directory" in problems[0]
    with pytest.raises(RaysumError, match="Qwen3-4B-Instruct-2507"):
        load_model_and_tokenizer(settings, device="cpu")
    # online, from_pretrained would download it: not a problem
    assert check_weights_available(settings, offline=False) == []
    assert check_weights_available(load_preset("tiny-qwen3")) == []


def test_hub_checkpoint_in_the_cache_is_available(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    snapshot = tmp_path / "hub" / "models--digit82--kobart-summarization" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (snapshot / name).write_text("{}")
    (tmp_path / "hub" / "models--digit82--kobart-summarization" / "refs").mkdir()
    (tmp_path / "hub" / "models--digit82--kobart-summarization" / "refs" / "main").write_text("a" * 40)
    assert check_weights_available(load_preset("kobart"), offline=True) == []
    (snapshot / "model.safetensors").unlink()
    problems = check_weights_available(load_preset("kobart"), offline=True)
    assert problems and "weights" in problems[0]


def test_local_directory_without_weights_is_a_problem(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    settings = dataclasses.replace(load_preset("kobart"), checkpoint=str(tmp_path))
    problems = check_weights_available(settings)
    assert any("no weights" in p for p in problems) and any("no tokenizer" in p for p in problems)
    missing = dataclasses.replace(settings, checkpoint=str(tmp_path / "nope"))
    assert "does not exist" in check_weights_available(missing)[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_qlora_without_cuda_fails_before_loading():
    settings = dataclasses.replace(load_preset("qwen3-4b"), quantization="nf4")
    with pytest.raises(RaysumError, match="CUDA"):
        load_model_and_tokenizer(settings, device="cpu")


def test_auto_precision():
    settings = load_preset("kobart")
    assert resolve_precision(settings, cuda=False) == "fp32"
    assert resolve_precision(dataclasses.replace(settings, precision="bf16"), cuda=False) == "bf16"
    if torch.cuda.is_available():
        assert resolve_precision(settings, cuda=True) in ("bf16", "fp16")
