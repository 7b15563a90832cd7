"""Everything wrong with a unit's settings, found before anything is loaded or launched."""

from __future__ import annotations

from raysum.config.schema import SELECT_BEST
from raysum.models.architectures import KINDS, available_architectures

DEEPSPEED_PRESETS = ("zero2", "zero3")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
QUANTIZATIONS = ("nf4",)


def validate_unit_settings(settings, has_gpu: bool) -> list[str]:
    """Every problem with `settings` for a unit on a machine with (`has_gpu`) or without a
    CUDA GPU; empty when the unit can run."""
    name = settings.name or "model"
    problems = [f"{name}: {p}" for p in (
        _source_problems(settings) + _adapter_problems(settings, has_gpu)
        + _hardware_problems(settings, has_gpu) + _number_problems(settings))]
    return problems


def epoch_selection_problems(settings, has_eval: bool, scores_epochs: bool) -> list[str]:
    """What `select_best` and `early_stopping_patience` need from the unit: a held-out part
    (`eval_path`) to evaluate after each epoch, and for eval_score the references to score
    its summaries (`epoch_score`, which the pipeline sets for such a unit)."""
    name, select = settings.name or "model", settings.select_best
    problems = []
    if select not in SELECT_BEST:
        problems.append(f"select_best must be one of {', '.join(SELECT_BEST)}, got {select!r}")
    elif not has_eval and (select != "last" or settings.early_stopping_patience):
        wanted = f"select_best {select}" if select != "last" else "early_stopping_patience"
        problems.append(f"{wanted} needs a held-out part to evaluate after each epoch, and this unit has no "
                        "eval data (eval_path)")
    elif select == "eval_score" and not scores_epochs:
        problems.append("select_best eval_score needs the eval part's references to score each epoch's summaries "
                        "(the unit's epoch_score setting); use select_best eval_loss, or run the unit through "
                        "the pipeline, which sets them")
    return [f"{name}: {p}" for p in problems]


def _source_problems(s) -> list[str]:
    problems = []
    if s.kind not in KINDS:
        problems.append(f"kind must be one of {', '.join(KINDS)}, got {s.kind!r}")
    if bool(s.checkpoint) == bool(s.from_config):
        problems.append("set exactly one of `checkpoint` (hub name or local directory) and `from_config`")
    if s.from_config:
        architecture = s.from_config.get("architecture")
        if architecture not in available_architectures():
            problems.append(f"unknown architecture {architecture!r} in from_config "
                            f"(available: {', '.join(available_architectures())})")
        else:
            from raysum.models.architectures import get_architecture

            expected = get_architecture(architecture).kind
            if s.kind in KINDS and expected != s.kind:
                problems.append(f"architecture {architecture!r} is {expected}, but kind is {s.kind!r}")
    if s.kind == "causal" and "{dialogue}" not in (s.prompt_template or ""):
        problems.append("prompt_template must contain {dialogue}")
    return problems


def _adapter_problems(s, has_gpu: bool) -> list[str]:
    problems = []
    if s.lora is not None:
        if s.kind == "seq2seq":
            problems.append("LoRA is for causal models; seq2seq models are fully fine-tuned (set lora: null)")
        if s.lora.r < 1 or s.lora.alpha <= 0 or not 0 <= s.lora.dropout < 1:
            problems.append("lora needs r >= 1, alpha > 0 and 0 <= dropout < 1")
        if not s.lora.target_modules:
            problems.append("lora.target_modules is empty")
    if s.quantization is None:
        return problems
    if s.quantization not in QUANTIZATIONS:
        problems.append(f"quantization must be null or nf4, got {s.quantization!r}")
        return problems
    if s.lora is None:
        problems.append("quantization: nf4 (QLoRA) trains LoRA adapters on a frozen 4-bit base; set `lora`")
    if s.from_config:
        problems.append("quantization: nf4 needs a checkpoint loaded with from_pretrained, not from_config")
    if not has_gpu:
        problems.append("quantization: nf4 (QLoRA, bitsandbytes 4-bit) needs a CUDA GPU; none is available")
    if s.deepspeed == "zero3":
        problems.append("DeepSpeed ZeRO-3 cannot be combined with quantization: nf4: ZeRO-3 partitions every "
                        "parameter across GPUs, and bitsandbytes 4-bit weights cannot be partitioned; "
                        "use deepspeed: zero2 (or none) with QLoRA, or drop the quantization for ZeRO-3")
    return problems


def _hardware_problems(s, has_gpu: bool) -> list[str]:
    problems = []
    if s.deepspeed is not None:
        if s.deepspeed not in DEEPSPEED_PRESETS:
            problems.append(f"deepspeed must be null, zero2 or zero3, got {s.deepspeed!r}")
        elif not has_gpu:
            problems.append(f"deepspeed: {s.deepspeed} is for multi-GPU units; no CUDA GPU is available")
    if s.precision not in PRECISIONS:
        problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {s.precision!r}")
    elif s.precision == "fp16" and not has_gpu:
        problems.append("precision: fp16 needs a CUDA GPU (use auto, bf16 or fp32 on CPU)")
    return problems


def _number_problems(s) -> list[str]:
    checks = [
        (s.epochs > 0, "epochs must be > 0"),
        (s.batch_size >= 1, "batch_size must be >= 1"),
        (s.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
        (s.learning_rate > 0, "learning_rate must be > 0"),
        (0 <= s.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
        (s.weight_decay >= 0, "weight_decay must be >= 0"),
        (s.max_source_length >= 4, "max_source_length must be >= 4"),
        (s.max_target_length >= 3, "max_target_length must be >= 3"),
        (s.num_beams >= 1, "num_beams must be >= 1"),
        (s.max_length >= 1, "max_length must be >= 1"),
        (s.no_repeat_ngram_size >= 0, "no_repeat_ngram_size must be >= 0"),
        (s.generation_batch_size >= 1, "generation_batch_size must be >= 1"),
        (s.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
        (s.early_stopping_patience >= 0, "early_stopping_patience must be >= 0"),
        (s.dataloader_num_workers >= 0, "dataloader_num_workers must be >= 0"),
    ]
    budget = s.max_tokens_per_batch
    if budget != "auto" and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        checks.append((False, f"max_tokens_per_batch must be a whole number >= 0 or auto, got {budget!r}"))
    return [message for ok, message in checks if not ok]
