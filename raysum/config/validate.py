"""The config's own checks: what a resolved config must satisfy whatever is registered.

Names that live in registries (ensemble strategies, TTA strategies, augmentation
methods, architectures, trackers, decoding keys) are checked by the package that owns
each registry; :func:`raysum.pipeline.validate` collects both and raises once.
A check whose value has the wrong type is skipped alone (resolve already reported the
type); every other check still runs.
"""

from __future__ import annotations

from collections.abc import Callable

from raysum.config.resolve import DEFAULT, ResolvedConfig
from raysum.config.schema import FOLD_MODES, MODES, ONE_MODEL_MODES, ModelSettings

KINDS = ("seq2seq", "causal")


def _failed(check: Callable[[], bool]) -> bool:
    """Whether ``check`` says no; a value of the wrong type (reported by resolve) is not a second problem."""
    try:
        return not check()
    except (TypeError, AttributeError):
        return False


def config_problems(cfg: ResolvedConfig) -> tuple[list[str], list[str]]:
    """Problems and warnings of the global settings."""
    problems: list[str] = []
    warnings: list[str] = []
    exp = cfg.experiment
    given = {k for k, s in cfg.sources.items() if s != DEFAULT and not k.startswith("models.")}
    weights = exp.ensemble_weights
    checks = [
        (lambda: exp.mode in MODES, f"mode {exp.mode!r} is unknown; choose one of {', '.join(MODES)}"),
        (lambda: bool(cfg.models) or bool(cfg.problems), "no model given (--models)"),
        (lambda: not (exp.mode in ONE_MODEL_MODES and len(cfg.models) > 1),
         f"mode {exp.mode} trains one model, got {len(cfg.models)}: {', '.join(cfg.models)}; "
         "use --mode multi_model or --mode full for several"),
        (lambda: not (exp.mode in FOLD_MODES and exp.k_folds < 2),
         f"k_folds must be >= 2 in mode {exp.mode}, got {exp.k_folds}"),
        (lambda: weights is None or len(weights) == len(cfg.models),
         f"ensemble_weights has {len(weights or [])} values for {len(cfg.models)} models "
         f"({', '.join(cfg.models)}); give one weight per model"),
        (lambda: weights is None or (all(w >= 0 for w in weights) and sum(weights) > 0),
         "ensemble_weights must be >= 0 with a positive sum"),
        (lambda: exp.augmentation_ratio > 0, f"augmentation_ratio must be > 0, got {exp.augmentation_ratio}"),
        (lambda: exp.tta_num_aug >= 1, f"tta_num_aug must be >= 1, got {exp.tta_num_aug}"),
        (lambda: exp.max_train_samples is None or exp.max_train_samples > 0,
         f"max_train_samples must be > 0, got {exp.max_train_samples}"),
        (lambda: exp.max_failures >= 0, f"max_failures must be >= 0, got {exp.max_failures}"),
    ]
    problems.extend(message for check, message in checks if _failed(check))
    try:
        problems.extend(_storage_problems(exp))
    except (TypeError, AttributeError):
        pass  # a path of the wrong type, already reported by resolve
    if exp.mode not in FOLD_MODES:
        for key in ("k_folds", "fold_seed"):
            if key in given:
                warnings.append(f"{key} is not used in mode {exp.mode} (no folds); it applies in kfold and full")
    if not exp.use_augmentation:
        for key in ("augmentation_methods", "augmentation_ratio"):
            if key in given:
                warnings.append(f"{key} is set but use_augmentation is off: no augmentation happens")
    if not exp.use_tta:
        for key in ("tta_strategies", "tta_num_aug"):
            if key in given:
                warnings.append(f"{key} is set but use_tta is off: no TTA happens")
    return problems, warnings


def _storage_problems(exp) -> list[str]:
    """Where the experiment lives: a filesystem path (every node of a cluster reads and writes
    it), never a job's temporary working directory; Ray Train's storage may be a URI."""
    import os

    from raysum.storage import local_path, uri_problems

    out = uri_problems(exp.storage_path, "storage_path") if exp.storage_path else []
    for key in ("train_data", "dev_data", "test_data"):
        if getattr(exp, key):
            out += uri_problems(getattr(exp, key), key)
    output = local_path(exp.output_dir)
    if output is None:
        out.append(f"output_dir {exp.output_dir!r}: the experiment directory must be a filesystem path or file:// "
                   "URI (on a cluster, a mount every node shares: NFS, EFS, Filestore, a gcsfuse/s3 mount); "
                   "a cloud URI is accepted for --storage_path, where Ray Train keeps the units' checkpoints")
    elif "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ and not output.is_absolute():
        out.append(f"output_dir {exp.output_dir!r} is relative: inside a Ray job it would land in the job's "
                   "temporary copy of the working directory; give an absolute path on shared storage")
    return out


def model_problems(m: ModelSettings) -> list[str]:
    """Problems of one model's settings that need no hardware and no registry to detect."""
    out = []
    if m.kind not in KINDS:
        out.append(f"kind {m.kind!r} is unknown; choose seq2seq or causal")
    if (m.checkpoint is None) == (m.from_config is None):
        out.append("set exactly one of checkpoint (from_pretrained) and from_config (built from a config)")
    checks = [
        (lambda: m.learning_rate > 0, f"learning_rate must be > 0, got {m.learning_rate}"),
        (lambda: m.epochs > 0, f"epochs must be > 0, got {m.epochs}"),
        (lambda: m.batch_size >= 1, f"batch_size must be >= 1, got {m.batch_size}"),
        (lambda: m.gradient_accumulation_steps >= 1, f"gradient_accumulation_steps must be >= 1, got {m.gradient_accumulation_steps}"),
        (lambda: 0 <= m.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {m.warmup_ratio}"),
        (lambda: m.num_beams >= 1, f"num_beams must be >= 1, got {m.num_beams}"),
        (lambda: m.max_length >= 1, f"max_length must be >= 1, got {m.max_length}"),
        (lambda: m.max_source_length >= 8, f"max_source_length must be >= 8, got {m.max_source_length}"),
        (lambda: m.max_target_length >= 2, f"max_target_length must be >= 2, got {m.max_target_length}"),
        (lambda: m.generation_batch_size >= 1, f"generation_batch_size must be >= 1, got {m.generation_batch_size}"),
        (lambda: m.precision in ("auto", "bf16", "fp16", "fp32"), f"precision {m.precision!r}: choose auto, bf16, fp16 or fp32"),
        (lambda: m.packing in ("auto", "packed", "padded"), f"packing {m.packing!r}: choose auto, packed or padded"),
        (lambda: m.quantization in (None, "nf4"), f"quantization {m.quantization!r}: choose null or nf4"),
        (lambda: m.deepspeed in (None, "zero2", "zero3"), f"deepspeed {m.deepspeed!r}: choose null, zero2 or zero3"),
        (lambda: m.resources.num_workers >= 1, f"resources.num_workers must be >= 1, got {m.resources.num_workers}"),
        (lambda: m.resources.cpus_per_worker >= 0, "resources.cpus_per_worker must be >= 0"),
    ]
    out.extend(msg for check, msg in checks if _failed(check))
    if m.kind == "seq2seq" and m.lora is not None:
        out.append("LoRA settings do not apply: seq2seq presets are full fine-tunes (set lora: null)")
    if m.quantization == "nf4" and m.lora is None:
        out.append("quantization nf4 (QLoRA) needs LoRA adapters: a 4-bit base cannot be trained in full")
    if m.quantization == "nf4" and m.deepspeed == "zero3":
        out.append("DeepSpeed ZeRO-3 with QLoRA is refused: ZeRO-3 partitions parameters across GPUs, "
                   "which bitsandbytes' packed 4-bit weights cannot be; use zero2 or no quantization")
    if m.lora is not None:
        if m.lora.r < 1 or m.lora.alpha <= 0 or not 0 <= m.lora.dropout < 1 or not m.lora.target_modules:
            out.append("lora needs r >= 1, alpha > 0, 0 <= dropout < 1 and at least one target module")
    return out
