"""Load a preset's model and tokenizer: a checkpoint through `from_pretrained` (hub name,
HF cache or local directory) or a tiny model built from a config; both then go through
the same preparation (special ids, LoRA / QLoRA, device)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from raysum.errors import RaysumError
from raysum.models.architectures import auto_model_class, get_architecture

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_HALF = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


# ---------------------------------------------------------------- precision and device
def resolve_precision(settings, cuda: bool | None = None) -> str:
    """`bf16`, `fp16` or `fp32`: `auto` is bf16 on a CUDA GPU that supports it, else fp16
    on CUDA, and fp32 on CPU."""
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if settings.precision != "auto":
        return settings.precision
    if not cuda:
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def torch_dtype(precision: str):
    import torch

    return getattr(torch, _HALF[precision])


def resolve_device(device: str | None = "auto") -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ---------------------------------------------------------------- availability
def check_weights_available(settings, offline: bool | None = None) -> list[str]:
    """Problems that would stop `from_pretrained`, found without loading any weights.

    Empty for tiny presets, for a local directory with config, weights and tokenizer, and
    for a hub name whose files are in the HF cache. A hub name missing from the cache is a
    problem only when downloads are off (`offline`, default: HF_HUB_OFFLINE).
    """
    if settings.from_config:
        return []
    name = settings.name or "model"
    checkpoint = settings.checkpoint
    if not checkpoint:
        return [f"{name}: neither `checkpoint` (hub name or local directory) nor `from_config` is set"]
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return _local_dir_problems(name, path)
    if checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") > 1:  # hub ids are owner/name
        return [f"{name}: checkpoint directory {checkpoint} does not exist"]
    missing = _missing_from_hub_cache(checkpoint)
    offline = _offline() if offline is None else offline
    if not missing or not offline:
        return []
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface (HF_HOME unset)")
    return [
        f"{name}: checkpoint {checkpoint!r} is not in the Hugging Face cache {_hub_cache_dir()} "
        f"(missing {', '.join(missing)}) and downloads are off (HF_HUB_OFFLINE=1). Provide it either by "
        f"setting `checkpoint` to a local directory with config.json, *.safetensors and tokenizer files, or by "
        f"pre-populating the HF cache on a connected machine (`hf download {checkpoint}`) and pointing "
        f"HF_HOME at that cache (HF_HOME={hf_home})"
    ]


def _local_dir_problems(name: str, path: Path) -> list[str]:
    problems = []
    if not (path / "config.json").is_file():
        problems.append(f"{name}: checkpoint directory {path} has no config.json")
    if not (list(path.glob("*.safetensors")) or list(path.glob("pytorch_model*.bin"))):
        problems.append(f"{name}: checkpoint directory {path} has no weights (*.safetensors or pytorch_model*.bin)")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        problems.append(f"{name}: checkpoint directory {path} has no tokenizer (tokenizer.json / tokenizer_config.json)")
    return problems


def _missing_from_hub_cache(repo_id: str) -> list[str]:
    from huggingface_hub import try_to_load_from_cache

    cache = _hub_cache_dir()

    def cached(filename: str) -> str | None:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache)
        return found if isinstance(found, str) else None

    missing = [f for f in ("config.json",) if not cached(f)]
    if not any(cached(f) for f in _TOKENIZER_FILES):
        missing.append("tokenizer.json / tokenizer_config.json")
    weights = next((f for f in _WEIGHT_FILES if cached(f)), None)
    if weights is None:
        missing.append("weights (model.safetensors or an index)")
    elif weights.endswith(".index.json"):
        shards = sorted(set(json.loads(Path(cached(weights)).read_text())["weight_map"].values()))
        missing += [s for s in shards if not cached(s)]
    return missing


def _hub_cache_dir() -> str:
    # Read at call time (huggingface_hub freezes its constants at import).
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().upper() in {"1", "ON", "YES", "TRUE"}


# ---------------------------------------------------------------- loading
def load_model_and_tokenizer(settings, train_texts: list[str] | None = None, cache_dir: str | None = None,
                             device: str | None = "auto", seed: int = 0):
    """`(model, tokenizer)` ready to train: tiny presets are built (tokenizer trained on
    `train_texts`, cached in `cache_dir`), checkpoints loaded with `from_pretrained`."""
    device = resolve_device(device)
    _check_quantization_possible(settings, device)
    if settings.from_config:
        if not train_texts:
            raise RaysumError(f"{settings.name}: a tiny preset needs training texts to train its tokenizer")
        model, tokenizer = _build_from_config(settings, train_texts, cache_dir, seed)
    else:
        problems = check_weights_available(settings)
        if problems:
            raise RaysumError("\n".join(problems))
        model, tokenizer = _from_pretrained(settings, settings.checkpoint, device)
    return _prepare(model, tokenizer, settings, device)


def load_trained_model(settings, checkpoint_dir: str | os.PathLike, device: str | None = "auto"):
    """`(model, tokenizer)` of a finished unit's `checkpoint/` (full weights, or the base
    checkpoint plus the saved LoRA adapter), in eval mode."""
    device = resolve_device(device)
    checkpoint_dir = str(checkpoint_dir)
    if settings.lora is None or settings.from_config:  # tiny presets save merged full weights
        model, tokenizer = _from_pretrained(settings, checkpoint_dir, device, full_precision=True)
    else:
        from peft import PeftModel

        _check_quantization_possible(settings, device)
        base, _ = _from_pretrained(settings, settings.checkpoint, device)
        tokenizer = _load_tokenizer(checkpoint_dir, settings.trust_remote_code)
        model = PeftModel.from_pretrained(base, checkpoint_dir)
        if settings.quantization is None:
            model = model.merge_and_unload()
    _prepare_tokenizer(tokenizer, settings)
    if settings.quantization is None:
        model.to(device)
    return model.eval(), tokenizer


def _check_quantization_possible(settings, device: str) -> None:
    if settings.quantization is None:
        return
    if settings.quantization != "nf4":
        raise RaysumError(f"{settings.name}: unknown quantization {settings.quantization!r} (null or nf4)")
    if not str(device).startswith("cuda"):
        raise RaysumError(
            f"{settings.name}: QLoRA (quantization: nf4) needs a CUDA GPU, and this process has none "
            "(bitsandbytes 4-bit weights run on CUDA only); set quantization: null to train LoRA "
            "on the unquantized model instead")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RaysumError(f"{settings.name}: quantization: nf4 needs bitsandbytes: pip install 'raysum[gpu]'")


def _from_pretrained(settings, source: str, device: str, full_precision: bool = False):
    import torch

    precision = resolve_precision(settings, cuda=device.startswith("cuda"))
    # Frozen LoRA bases load in half precision; fully trained weights stay fp32 (AMP masters).
    dtype = torch.float32 if full_precision or settings.lora is None else torch_dtype(precision)
    kwargs = {"dtype": dtype, "trust_remote_code": settings.trust_remote_code}
    if settings.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype(precision))
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))}
    model = auto_model_class(settings.kind).from_pretrained(source, **kwargs)
    return model, _load_tokenizer(source, settings.trust_remote_code)


def _load_tokenizer(source: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)


def _build_from_config(settings, train_texts: list[str], cache_dir: str | None, seed: int):
    import torch

    from raysum.models.tokenizer import train_tokenizer

    spec = dict(settings.from_config)
    architecture = get_architecture(spec.pop("architecture", None))
    vocab_size = int(spec.get("vocab_size", 2000))
    if architecture.kind == "causal":  # the prompt's words must be in the vocabulary too
        from raysum.models.prompts import prompt_texts

        train_texts = list(train_texts) + prompt_texts(settings)
    tokenizer = train_tokenizer(train_texts, vocab_size, cache_dir,
                                model_max_length=int(spec.get("max_position_embeddings", 1024)))
    spec.update(
        vocab_size=max(vocab_size, len(tokenizer)),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if architecture.kind == "seq2seq":
        spec.setdefault("decoder_start_token_id", tokenizer.eos_token_id)  # BART's convention
        spec.setdefault("forced_eos_token_id", tokenizer.eos_token_id)
    config = architecture.build_config(**spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = architecture.build_model(config)
    return model, tokenizer


# ---------------------------------------------------------------- shared preparation
def _prepare(model, tokenizer, settings, device: str):
    _prepare_tokenizer(tokenizer, settings)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    for holder in (model.config, model.generation_config):
        if getattr(holder, "pad_token_id", None) is None:
            holder.pad_token_id = tokenizer.pad_token_id
    if settings.lora is not None:
        model = apply_lora(model, settings)
    if settings.quantization is None:
        model.to(device)
    return model, tokenizer


def _prepare_tokenizer(tokenizer, settings) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if settings.kind == "causal":
        tokenizer.padding_side = "left"  # generation continues right after the prompt


def apply_lora(model, settings):
    """Wrap `model` with LoRA adapters from `settings.lora` (after k-bit preparation for QLoRA)."""
    from peft import LoraConfig, get_peft_model

    if settings.quantization == "nf4":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.gradient_checkpointing)
    lora = settings.lora
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    if settings.quantization == "nf4":
        cast_frozen_to_compute_dtype(model, torch_dtype(resolve_precision(settings)))
    return model


def cast_frozen_to_compute_dtype(model, dtype) -> int:
    """QLoRA computes in `dtype` (bf16): `prepare_model_for_kbit_training` upcasts every
    non-quantized parameter to fp32 (norms, embeddings, lm_head), so the embeddings hand
    fp32 hidden states to the whole stack and every activation is stored in fp32 (more
    memory, slower, and the 4-bit layers cast their inputs down and their outputs back up).
    The frozen floating-point parameters go back to `dtype`, as in a bf16 LoRA unit; the
    packed 4-bit weights (uint8) are left alone, and the trainable LoRA adapters stay fp32
    (peft's choice: AdamW updates on fp32 masters; autocast runs their matmuls in `dtype`).
    Returns the number of parameters cast."""
    cast = 0
    for parameter in model.parameters():
        quantized = type(parameter).__name__ == "Params4bit" or not parameter.is_floating_point()
        if parameter.requires_grad or quantized or parameter.dtype == dtype:
            continue
        parameter.data = parameter.data.to(dtype)
        cast += parameter.numel()
    return cast


def shape_only_model(settings, config):
    """The preset's model with real shapes and no memory (torch "meta" device), LoRA
    applied as in training: for parameter counts without downloading weights.
    `config` is a transformers config or a dict with `model_type`."""
    import torch
    from transformers import AutoConfig

    if isinstance(config, dict):
        config = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = auto_model_class(settings.kind).from_config(config, trust_remote_code=settings.trust_remote_code)
        if settings.lora is not None:
            model = apply_lora(model, settings)
    return model


def count_parameters(model) -> tuple[int, int]:
    """`(trainable, total)` parameter counts (tied weights counted once)."""
    trainable = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total
