"""The config's own checks: what a resolved config must satisfy whatever is registered.

Names that live in registries (ensemble strategies, TTA strategies, augmentation
methods, architectures, trackers, decoding keys) are checked by the package that owns
each registry; :func:`raysum.pipeline.validate` collects both and raises once.
A check whose value has the wrong type is skipped alone (resolve already reported the
type); every other check still runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import fields, is_dataclass

from raysum.config.resolve import DEFAULT, ResolvedConfig
from raysum.config.schema import (
    FOLD_MODES, LR_SCHEDULERS, MODES, ONE_MODEL_MODES, PROMPT_STRATEGIES, SELECT_BEST, SHARED_FIELDS, ModelSettings,
    field_bounds,
)

KINDS = ("seq2seq", "causal")
# An experiment name becomes one directory name under output_dir: letters (any script), digits,
# '_', '-', '.', not starting with '.' or '-', at most 100 characters.
EXPERIMENT_NAME = re.compile(r"\w[\w.-]{0,99}")


def _failed(check: Callable[[], bool]) -> bool:
    """Whether ``check`` says no; a value of the wrong type (reported by resolve) is not a second problem."""
    try:
        return not check()
    except (TypeError, AttributeError):
        return False


def number_problems(settings, prefix: str = "") -> list[str]:
    """Every number of a settings dataclass (nested blocks, lists, a from_config mapping):
    finite, and inside the range its schema field declares."""
    out = []
    bounds = field_bounds(type(settings))
    for f in fields(settings):
        value, where = getattr(settings, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            out += number_problems(value, where + ".")
            continue
        if isinstance(value, dict):
            items = [(f"{where}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(where, value)]
        whole = f.type in ("int", "Optional[int]", int)  # a float there was reported by resolve
        for name, number in items:
            if isinstance(number, bool) or not isinstance(number, (int, float)) or (whole and isinstance(number, float)):
                continue
            if not math.isfinite(number):
                out.append(f"{name} must be a finite number, got {number}")
            elif f.name in bounds and not bounds[f.name].admits(number):
                out.append(f"{name} must be {bounds[f.name].text()}, got {number}")
    return out


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
        (lambda: weights is None or len(weights) == len(cfg.models),
         f"ensemble_weights has {len(weights or [])} values for {len(cfg.models)} models "
         f"({', '.join(cfg.models)}); give one weight per model"),
        (lambda: weights is None or not all(math.isfinite(w) for w in weights) or sum(weights) > 0,
         "ensemble_weights must have a positive sum"),
        (lambda: EXPERIMENT_NAME.fullmatch(exp.experiment_name) is not None,
         f"experiment_name {exp.experiment_name!r}: use letters, digits, '_', '-' and '.' (not first), at most "
         "100 characters; it becomes one directory under output_dir"),
    ]
    problems.extend(message for check, message in checks if _failed(check))
    # The global copies of per-model settings reach every model and are checked there.
    problems.extend(p for p in _guarded_list(number_problems, exp) if p.split()[0].split("[")[0] not in SHARED_FIELDS)
    try:
        problems.extend(_storage_problems(exp))
    except (TypeError, AttributeError):
        pass  # a path of the wrong type, already reported by resolve
    if exp.mode not in FOLD_MODES:
        for key in ("k_folds", "fold_seed"):
            if key in given:
                warnings.append(f"{key} is not used in mode {exp.mode} (no folds); it applies in kfold and full")
    for name, m in cfg.models.items():
        warnings.extend(_guarded_list(lambda settings: deepspeed_notes(name, settings), m))
        warnings.extend(_guarded_list(lambda settings: early_stopping_notes(name, settings), m))
        if m.trust_remote_code is True:
            warnings.append(f"models.{name}: trust_remote_code is on: Python code from the repository of "
                            f"checkpoint {m.checkpoint!r} runs on every worker that loads it; keep it on only for "
                            "a checkpoint you trust")
    if not exp.use_augmentation:
        for key in ("augmentation_methods", "augmentation_ratio"):
            if key in given:
                warnings.append(f"{key} is set but use_augmentation is off: no augmentation happens")
    if not exp.use_tta:
        for key in ("tta_strategies", "tta_num_aug"):
            if key in given:
                warnings.append(f"{key} is set but use_tta is off: no TTA happens")
    if "decoding_for_test" in given and _failed(lambda: any(m.decoding_settings for m in cfg.models.values())):
        warnings.append("decoding_for_test is set but no model has extra decoding settings (decoding_settings, "
                        "--decoding_space): test is generated with each model's own settings only")
    return problems, warnings


DATA_FLAGS = ("train_data", "dev_data", "test_data")


def sample_data_problems(cfg: ResolvedConfig) -> list[str]:
    """A model loaded from pretrained weights trained or scored on the bundled synthetic sample
    (a split without its --<split>_data flag) is refused unless allow_sample_data: those runs
    take hours on a GPU and say nothing about real data. Models built from a config (the
    tiny-* presets of the demo and the tests) are always allowed."""
    exp = cfg.experiment
    bundled = [key for key in DATA_FLAGS if not getattr(exp, key)]
    real = [name for name, m in cfg.models.items() if m.from_config is None]
    if exp.allow_sample_data or not bundled or not real:
        return []
    splits = _and([key.split("_")[0] for key in bundled])
    return [f"{'models' if len(real) > 1 else 'model'} {_and(real)} load{'' if len(real) > 1 else 's'} pretrained "
            f"weights, but {splits} would be the bundled synthetic sample (for the demo and tests, not a "
            f"competition's data): give {_and(['--' + key for key in bundled])}, or --allow_sample_data "
            "(allow_sample_data: true) to train on the sample anyway"]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _storage_problems(exp) -> list[str]:
    """Where the experiment lives: a filesystem path (every node of a cluster reads and writes
    it), never a job's temporary working directory; Ray Train's storage may be a URI."""
    from raysum.storage import JOB_OUTPUT_DIR, in_ray_job, local_path, path_problems, scheme, uri_problems

    out = []
    if exp.storage_path:
        out += uri_problems(exp.storage_path, "storage_path") or path_problems(exp.storage_path, "storage_path",
                                                                                "new_dir")
        storage = local_path(exp.storage_path)
        if in_ray_job() and storage is not None and not storage.is_absolute():
            out.append(f"storage_path {exp.storage_path!r} is relative: inside a Ray job it would land in the job's "
                       "temporary copy of the working directory; give an absolute path on shared storage or a URI")
    for key in ("train_data", "dev_data", "test_data"):
        if getattr(exp, key) and scheme(getattr(exp, key)) != "hf":  # hf://: raysum.data checks it
            out += uri_problems(getattr(exp, key), key)  # existence: checked where the data is loaded
    out += path_problems(exp.output_dir, "output_dir", "new_dir")
    output = local_path(exp.output_dir)
    if output is None:
        out.append(f"output_dir {exp.output_dir!r}: the experiment directory must be a filesystem path or file:// "
                   "URI (on a cluster, a mount every node shares: NFS, EFS, Filestore, a gcsfuse/s3 mount); "
                   "a cloud URI is accepted for --storage_path, where Ray Train keeps the units' checkpoints")
    elif in_ray_job() and not output.is_absolute():
        out.append(f"output_dir {exp.output_dir!r} is relative: inside a Ray job it would land in the job's "
                   "temporary copy of the working directory; give an absolute path on shared storage, or leave "
                   f"output_dir out (a job's default: --storage_path/outputs, else {JOB_OUTPUT_DIR})")
    return out


def model_problems(m: ModelSettings) -> list[str]:
    """Problems of one model's settings that need no hardware and no registry to detect."""
    out = []
    if m.kind not in KINDS:
        out.append(f"kind {m.kind!r} is unknown; choose seq2seq or causal")
    if (m.checkpoint is None) == (m.from_config is None):
        out.append("set exactly one of checkpoint (from_pretrained) and from_config (built from a config)")
    out.extend(_guarded_list(number_problems, m))
    checks = [
        (lambda: m.precision in ("auto", "bf16", "fp16", "fp32"), f"precision {m.precision!r}: choose auto, bf16, fp16 or fp32"),
        (lambda: m.packing in ("auto", "packed", "padded"), f"packing {m.packing!r}: choose auto, packed or padded"),
        (lambda: m.lr_scheduler in LR_SCHEDULERS,
         f"lr_scheduler {m.lr_scheduler!r}: choose {', '.join(LR_SCHEDULERS)}"),
        (lambda: m.select_best in SELECT_BEST, f"select_best {m.select_best!r}: choose {', '.join(SELECT_BEST)}"),
        (lambda: m.prompt_strategy in PROMPT_STRATEGIES,
         f"prompt_strategy {m.prompt_strategy!r}: choose {', '.join(PROMPT_STRATEGIES)}"),
        (lambda: m.kind == "causal" or m.prompt_strategy == "zero_shot",
         f"prompt_strategy {m.prompt_strategy!r} applies to causal models; {m.kind} models read the dialogue "
         "without a prompt (set zero_shot)"),
        (lambda: m.quantization in (None, "nf4"), f"quantization {m.quantization!r}: choose null or nf4"),
        (lambda: m.deepspeed in (None, "zero2", "zero3"), f"deepspeed {m.deepspeed!r}: choose null, zero2 or zero3"),
    ]
    out.extend(msg for check, msg in checks if _failed(check))
    if m.kind == "seq2seq" and m.lora is not None:
        out.append("LoRA settings do not apply: seq2seq presets are full fine-tunes (set lora: null)")
    if m.quantization == "nf4" and m.lora is None:
        out.append("quantization nf4 (QLoRA) needs LoRA adapters: a 4-bit base cannot be trained in full")
    if m.quantization == "nf4" and m.deepspeed == "zero3":
        out.append("DeepSpeed ZeRO-3 with QLoRA is refused: ZeRO-3 partitions parameters across GPUs, "
                   "which bitsandbytes' packed 4-bit weights cannot be; use zero2 or no quantization")
    if m.lora is not None and not m.lora.target_modules:
        out.append("lora needs at least one target module")
    out.extend(_guarded_list(_batching_problems, m))
    out.extend(_guarded_list(_gpu_share_problems, m))
    return out


def _batching_problems(m: ModelSettings) -> list[str]:
    budget = m.max_tokens_per_batch
    if budget == "auto" or (isinstance(budget, int) and not isinstance(budget, bool)):
        return []  # a negative whole number is reported with the other ranges
    return [f"max_tokens_per_batch must be a whole number of tokens (0 = off) or auto, got {budget!r}"]


def _gpu_share_problems(m: ModelSettings) -> list[str]:
    """Two ranks of one unit must not share a GPU: NCCL refuses two ranks on one device, so a
    fraction of a GPU per worker only works for a single-worker unit (several units per GPU)."""
    res = m.resources
    if not res.use_gpu or res.num_workers <= 1 or float(res.gpus_per_worker).is_integer():
        return []
    return [f"resources.gpus_per_worker {res.gpus_per_worker:g} with num_workers {res.num_workers}: Ray may put "
            "two workers of the unit on one GPU, and two NCCL ranks on one GPU fail; give each worker whole GPUs "
            "(gpus_per_worker: 1) or use num_workers: 1 (a fraction then lets several units share a GPU)"]


def deepspeed_notes(name: str, m: ModelSettings) -> list[str]:
    """A DeepSpeed preset on a single GPU worker: ZeRO shards across data-parallel ranks, so with
    one rank there is nothing to shard and its engine only adds overhead."""
    res = m.resources
    if m.deepspeed is None or not res.use_gpu or res.num_workers != 1 or res.gpus_per_worker > 1:
        return []
    return [f"models.{name}: deepspeed {m.deepspeed} on a single GPU worker (resources.num_workers 1) only adds "
            "overhead: ZeRO shards across workers; set deepspeed: null, or num_workers > 1"]


def early_stopping_notes(name: str, m: ModelSettings) -> list[str]:
    """A patience the epochs cannot use up: the first evaluation sets the best, and a stop needs
    `patience` evaluations after it, all before the last epoch."""
    patience, evaluations = m.early_stopping_patience, math.ceil(m.epochs)
    if not patience or patience < evaluations - 1:
        return []
    return [f"models.{name}: early_stopping_patience {patience} with epochs {m.epochs:g}: training cannot stop "
            f"early (a stop needs {patience} evaluation(s) without improvement before the last epoch)"]


def _guarded_list(check, value) -> list[str]:
    """``check(value)``, or nothing where a value of the wrong type or range (reported by the
    type and range checks) keeps it from running."""
    try:
        return check(value)
    except (TypeError, AttributeError, ValueError, OverflowError):
        return []
