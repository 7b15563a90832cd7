"""`TrainingArguments` of a unit, from its settings: AdamW, the learning-rate schedule
(`lr_scheduler`) after warmup, gradient clipping (`max_grad_norm`), length-grouped batches (or the gradient accumulation of
token-budget batches), loss-only evaluation once per epoch, the metric that picks the kept
epoch (`select_best`, `early_stopping_patience`), bounded intermediate checkpoints for resume
(`checkpoint_every`), dataloader workers, torch.compile, and the
DeepSpeed preset if any (with the config ZeRO-3 needs while the model loads)."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"


def deepspeed_config_path(preset: str | None) -> str | None:
    """The JSON file of a DeepSpeed preset (`zero2`, `zero3`), or None."""
    if preset is None:
        return None
    path = DEEPSPEED_DIR / f"{preset}.json"
    if not path.is_file():
        from raysum.errors import ConfigError
        raise ConfigError(f"unknown deepspeed preset {preset!r}; available: "
                          + ", ".join(sorted(p.stem for p in DEEPSPEED_DIR.glob("*.json"))))
    return str(path)


def deepspeed_load_config(settings, precision: str, world_size: int = 1) -> dict | None:
    """The DeepSpeed config active while a ZeRO-3 unit loads its model (None for other presets).

    `from_pretrained` runs `deepspeed.zero.Init` with it, whose parser (DeepSpeedConfig)
    reads batch sizes, gradient clipping and fp16/bf16 as numbers and booleans: their
    "auto" placeholders are filled as the Trainer fills them from its arguments
    (`HfTrainerDeepSpeedConfig.trainer_config_process`). The zero_optimization sizes left
    "auto" are dropped by DeepSpeed's parser (its defaults apply while loading); the
    Trainer fills them from the model's hidden size when it builds the engine with its own
    copy of the preset."""
    if settings.deepspeed != "zero3":
        return None
    config = json.loads(Path(deepspeed_config_path(settings.deepspeed)).read_text(encoding="utf-8"))
    micro, accumulation = settings.batch_size, settings.gradient_accumulation_steps
    for key, value in {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "train_batch_size": world_size * micro * accumulation,
        "gradient_clipping": settings.max_grad_norm,
        "optimizer.params.lr": settings.learning_rate,
        "optimizer.params.weight_decay": settings.weight_decay,
        "scheduler.params.warmup_max_lr": settings.learning_rate,
        "fp16.enabled": precision == "fp16",
        "bf16.enabled": precision == "bf16",
    }.items():
        *path, leaf = key.split(".")
        node = config
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(leaf) == "auto":
            node[leaf] = value
    return config


@contextlib.contextmanager
def deepspeed_loading(settings, precision: str, world_size: int = 1):
    """ZeRO-3: transformers' `HfDeepSpeedConfig` is active while the block loads the model,
    so `from_pretrained` partitions every parameter across the workers as it loads (each
    holds its shard, never the whole model) and LoRA wraps the partitioned model. The
    object registers itself through a weak reference: this block keeps it alive, and
    unregisters it at the end; the Trainer's arguments register their own for training."""
    config = deepspeed_load_config(settings, precision, world_size)
    if config is None:
        yield None
        return
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    active = HfDeepSpeedConfig(config)
    try:
        yield active
    finally:
        unset_hf_deepspeed_config()


def optimizer_steps(settings, num_examples: int, world_size: int = 1, batch_plan=None) -> int:
    if batch_plan is not None:  # token-budget micro-batches (raysum.training.batching)
        per_epoch = math.ceil(batch_plan.micro_batches / world_size / batch_plan.gradient_accumulation_steps)
        return max(1, math.ceil(per_epoch * settings.epochs))
    per_step = settings.batch_size * settings.gradient_accumulation_steps * world_size
    return max(1, math.ceil(math.ceil(num_examples / per_step) * settings.epochs))


def training_arguments_kwargs(settings, output_dir: str | Path, *, num_examples: int, has_eval: bool,
                              precision: str, cuda: bool, seed: int, world_size: int = 1,
                              run_name: str | None = None, batch_plan=None) -> dict:
    """Keyword arguments of `transformers.TrainingArguments` for one unit. `batch_plan`
    (token-budget micro-batches) sets the gradient accumulation it computed."""
    total_steps = optimizer_steps(settings, num_examples, world_size, batch_plan)
    workers = settings.dataloader_num_workers
    metric = selection_metric(settings) if has_eval else None
    arguments = dict(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=(batch_plan.gradient_accumulation_steps if batch_plan is not None
                                     else settings.gradient_accumulation_steps),
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        max_grad_norm=settings.max_grad_norm,
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch" if has_eval else "no",
        prediction_loss_only=True,
        label_names=["labels"],
        # every `checkpoint_every` epochs (CheckpointEvery), and the epochs that improve `select_best`'s
        # metric (KeepBest); the last one after the timed loop (unit.train)
        save_strategy="epoch" if settings.checkpoint_every or (metric and settings.select_best != "last") else "no",
        save_total_limit=2,  # the newest and the best: transformers' rotation never deletes the best
        # the Trainer tracks the best epoch (state.best_metric, best_global_step); the unit loads it back
        # itself after the last resume checkpoint is written (unit.keep_best_epoch), not load_best_model_at_end
        metric_for_best_model=metric,
        greater_is_better=None if metric is None else metric == "eval_score",
        logging_strategy="steps",
        logging_steps=max(1, total_steps // 25),
        logging_first_step=True,
        report_to="none",  # trackers are added as callbacks (raysum.training.tracking)
        run_name=run_name,
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=workers,
        dataloader_pin_memory=cuda,
        dataloader_persistent_workers=workers > 0,  # not forked again for every epoch and evaluation
        dataloader_prefetch_factor=2 if workers else None,
        torch_compile=settings.compile,
        ddp_find_unused_parameters=False,
        deepspeed=deepspeed_config_path(settings.deepspeed),
    )
    if settings.gradient_checkpointing:
        # transformers 5.2x renamed it; 5.1x only knows the old name.
        name = _first_field("activation_checkpointing", "gradient_checkpointing")
        arguments[name] = True
        arguments[f"{name}_kwargs"] = {"use_reentrant": False}
    return arguments


def selection_metric(settings) -> str | None:
    """The evaluation metric that picks the kept epoch and ends training early: select_best's
    (eval_loss when it is `last` and early_stopping_patience is set); None when neither is used."""
    if settings.select_best != "last":
        return settings.select_best
    return "eval_loss" if settings.early_stopping_patience else None


def _first_field(*names: str) -> str:
    from dataclasses import fields

    from transformers import TrainingArguments

    known = {f.name for f in fields(TrainingArguments)}
    return next(name for name in names if name in known)


def build_training_arguments(settings, output_dir: str | Path, **kwargs):
    """`TrainingArguments` from `training_arguments_kwargs` (DeepSpeed presets need deepspeed installed)."""
    import importlib.util

    from transformers import TrainingArguments

    arguments = training_arguments_kwargs(settings, output_dir, **kwargs)
    if arguments["deepspeed"] and importlib.util.find_spec("deepspeed") is None:
        from raysum.errors import RaysumError
        raise RaysumError(f"deepspeed: {settings.deepspeed} needs the deepspeed package: pip install 'raysum[gpu]'")
    return TrainingArguments(**arguments)
