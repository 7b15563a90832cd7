"""`TrainingArguments` of a unit, from its settings: AdamW, linear schedule with warmup,
gradient clipping at 1.0, length-grouped batches, loss-only evaluation once per epoch,
bounded intermediate checkpoints for resume, and the DeepSpeed preset if any."""

from __future__ import annotations

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


def optimizer_steps(settings, num_examples: int, world_size: int = 1) -> int:
    per_step = settings.batch_size * settings.gradient_accumulation_steps * world_size
    return max(1, math.ceil(math.ceil(num_examples / per_step) * settings.epochs))


def training_arguments_kwargs(settings, output_dir: str | Path, *, num_examples: int, has_eval: bool,
                              precision: str, cuda: bool, seed: int, world_size: int = 1,
                              run_name: str | None = None) -> dict:
    """Keyword arguments of `transformers.TrainingArguments` for one unit."""
    total_steps = optimizer_steps(settings, num_examples, world_size)
    arguments = dict(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        max_grad_norm=1.0,
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch" if has_eval else "no",
        prediction_loss_only=True,
        label_names=["labels"],
        save_strategy="epoch",
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=max(1, total_steps // 25),
        logging_first_step=True,
        report_to="none",  # trackers are added as callbacks (raysum.training.tracking)
        run_name=run_name,
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        ddp_find_unused_parameters=False,
        deepspeed=deepspeed_config_path(settings.deepspeed),
    )
    if settings.gradient_checkpointing:
        # transformers 5.2x renamed it; 5.1x only knows the old name.
        name = _first_field("activation_checkpointing", "gradient_checkpointing")
        arguments[name] = True
        arguments[f"{name}_kwargs"] = {"use_reentrant": False}
    return arguments


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
