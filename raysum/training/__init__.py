"""Training units: one (model, fold) trained with the HF Trainer, saved as safetensors,
then generating its candidates. `run_unit(config, report)` is the whole unit; the Ray
entry point wraps it."""

from raysum.training.arguments import build_training_arguments, deepspeed_config_path, training_arguments_kwargs
from raysum.training.collators import make_collator, prepare_model_for_training
from raysum.training.unit import PREDICTION_COLUMNS, UnitConfig, predict_unit, read_finished_unit, run_unit, use_packing
from raysum.training.validation import validate_unit_settings

__all__ = [
    "PREDICTION_COLUMNS", "UnitConfig", "build_training_arguments", "deepspeed_config_path", "make_collator",
    "predict_unit", "prepare_model_for_training", "read_finished_unit", "run_unit", "training_arguments_kwargs",
    "use_packing",
    "validate_unit_settings",
]
