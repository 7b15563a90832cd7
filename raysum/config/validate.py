"""Validation: every problem of a resolved config collected, then raised once."""

from __future__ import annotations

from raysum.config.resolve import DEFAULT, ResolvedConfig
from raysum.config.schema import MODES, ModelSettings
from raysum.errors import ConfigError
from raysum.generation.decodings import decoding_problems

from raysum.augment import AUGMENT_METHODS
from raysum.ensemble import ALIASES as ENSEMBLE_ALIASES
from raysum.ensemble import STRATEGIES as _STRATEGY_REGISTRY
from raysum.tta import TTA_STRATEGIES as _TTA_REGISTRY

# The registries are the single source of the names (the seed's aliases live in raysum.ensemble).
ENSEMBLE_STRATEGIES = tuple(_STRATEGY_REGISTRY)
AUGMENTATION_METHODS = tuple(AUGMENT_METHODS)
TTA_STRATEGIES = tuple(_TTA_REGISTRY)
ARCHITECTURES = ("bart", "llama", "qwen3")
KINDS = ("seq2seq", "causal")
ONE_MODEL_MODES = ("single", "kfold")
FOLD_MODES = ("kfold", "full", "optuna")  # optuna: trials validate on fold 0


def canonical_strategy(name: str) -> str:
    return ENSEMBLE_ALIASES.get(name, name)


def validate(cfg: ResolvedConfig) -> ResolvedConfig:
    """Raise ConfigError with every problem; add warnings for values that cannot apply."""
    problems: list[str] = list(cfg.problems)
    warnings: list[str] = []
    try:
        _check_globals(cfg, problems, warnings)
    except TypeError:
        pass  # a value of the wrong type, already listed by resolve
    for name, settings in cfg.models.items():
        try:
            problems.extend(f"models.{name}: {p}" for p in model_problems(settings))
        except (TypeError, AttributeError):
            pass
    if problems:
        raise ConfigError(problems)
    cfg.warnings = warnings
    return cfg


def _check_globals(cfg: ResolvedConfig, problems: list[str], warnings: list[str]) -> None:
    exp = cfg.experiment
    given = {k for k, s in cfg.sources.items() if s != DEFAULT and not k.startswith("models.")}

    if exp.mode not in MODES:
        problems.append(f"mode {exp.mode!r} is unknown; choose one of {', '.join(MODES)}")
    if not cfg.models and not cfg.problems:
        problems.append("no model given (--models)")
    if exp.mode in ONE_MODEL_MODES and len(cfg.models) > 1:
        problems.append(f"mode {exp.mode} trains one model, got {len(cfg.models)}: {', '.join(cfg.models)}; "
                        "use --mode multi_model or --mode full for several")
    if exp.mode in FOLD_MODES and exp.k_folds < 2:
        problems.append(f"k_folds must be >= 2 in mode {exp.mode}, got {exp.k_folds}")
    if exp.mode not in FOLD_MODES:
        for key in ("k_folds", "fold_seed"):
            if key in given:
                warnings.append(f"{key} is not used in mode {exp.mode} (no folds); it applies in kfold and full")
    strategy = canonical_strategy(exp.ensemble_strategy)
    if strategy not in ENSEMBLE_STRATEGIES:
        problems.append(f"ensemble_strategy {exp.ensemble_strategy!r} is unknown; choose one of "
                        f"{', '.join(ENSEMBLE_STRATEGIES)} (aliases: {', '.join(ENSEMBLE_ALIASES)})")
    if strategy == "stacking" and exp.mode not in FOLD_MODES:
        problems.append(f"ensemble_strategy stacking learns from out-of-fold candidates: use mode kfold or full, "
                        f"not {exp.mode}")
    if exp.ensemble_weights is not None:
        if len(exp.ensemble_weights) != len(cfg.models):
            problems.append(f"ensemble_weights has {len(exp.ensemble_weights)} values for {len(cfg.models)} models "
                            f"({', '.join(cfg.models)}); give one weight per model")
        if any(w < 0 for w in exp.ensemble_weights) or not sum(exp.ensemble_weights) > 0:
            problems.append("ensemble_weights must be >= 0 with a positive sum")
        if strategy != "weighted_avg":
            warnings.append(f"ensemble_weights only apply to weighted_avg, not {exp.ensemble_strategy}")
    for method in exp.augmentation_methods:
        if method not in AUGMENTATION_METHODS:
            problems.append(f"augmentation method {method!r} is unknown; choose from {', '.join(AUGMENTATION_METHODS)}")
    for name in exp.tta_strategies:
        if name not in TTA_STRATEGIES:
            problems.append(f"TTA strategy {name!r} is unknown; choose from {', '.join(TTA_STRATEGIES)}")
    from raysum.training.tracking import tracking_problems

    problems.extend(tracking_problems(list(exp.tracking)))
    if not exp.augmentation_ratio > 0:
        problems.append(f"augmentation_ratio must be > 0, got {exp.augmentation_ratio}")
    if exp.tta_num_aug < 1:
        problems.append(f"tta_num_aug must be >= 1, got {exp.tta_num_aug}")
    if exp.max_train_samples is not None and exp.max_train_samples <= 0:
        problems.append(f"max_train_samples must be > 0, got {exp.max_train_samples}")
    problems.extend(_storage_problems(exp))
    if not exp.use_augmentation:
        for key in ("augmentation_methods", "augmentation_ratio"):
            if key in given:
                warnings.append(f"{key} is set but use_augmentation is off: no augmentation happens")
    if not exp.use_tta:
        for key in ("tta_strategies", "tta_num_aug"):
            if key in given:
                warnings.append(f"{key} is set but use_tta is off: no TTA happens")


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
    if exp.max_failures < 0:
        out.append(f"max_failures must be >= 0, got {exp.max_failures}")
    return out


def model_problems(m: ModelSettings) -> list[str]:
    """Problems of one model's settings that need no hardware to detect."""
    out = []
    if m.kind not in KINDS:
        out.append(f"kind {m.kind!r} is unknown; choose seq2seq or causal")
    if (m.checkpoint is None) == (m.from_config is None):
        out.append("set exactly one of checkpoint (from_pretrained) and from_config (built from a config)")
    if m.from_config is not None and m.from_config.get("architecture") not in ARCHITECTURES:
        out.append(f"from_config.architecture must be one of {', '.join(ARCHITECTURES)}")
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
    for check, msg in checks:
        try:
            ok = check()
        except (TypeError, AttributeError):
            continue  # a value of the wrong type, already reported by resolve
        if not ok:
            out.append(msg)
    if m.kind == "seq2seq" and m.lora is not None:
        out.append("LoRA settings do not apply: seq2seq presets are full fine-tunes (set lora: null)")
    if m.quantization == "nf4" and m.lora is None:
        out.append("quantization nf4 (QLoRA) needs LoRA adapters: a 4-bit base cannot be trained in full")
    if m.quantization == "nf4" and m.deepspeed == "zero3":
        out.append("DeepSpeed ZeRO-3 with QLoRA is refused: ZeRO-3 partitions parameters across GPUs, "
                   "which bitsandbytes' packed 4-bit weights cannot be; use zero2 or no quantization")
    out.extend(decoding_problems(m))
    if m.lora is not None:
        if m.lora.r < 1 or m.lora.alpha <= 0 or not 0 <= m.lora.dropout < 1 or not m.lora.target_modules:
            out.append("lora needs r >= 1, alpha > 0, 0 <= dropout < 1 and at least one target module")
    return out
