"""The experiment pipeline: data → units on Ray → candidates → scores → submission."""

from raysum.pipeline._collect import ensemble_weights, eval_sample_text, stacking_too_small
from raysum.pipeline._experiment import Unit, plan_units, unit_config
from raysum.pipeline._export import export_unit
from raysum.pipeline._finalize import WEIGHTS_FLAG, FinalRequest, finalize_experiment
from raysum.pipeline._run import (
    ensemble_experiment, predict_experiment, preflight, refuse_resume_settings, resume_experiment, run_experiment,
    start_experiment,
)
from raysum.pipeline._variants import map_back_labels
from raysum.pipeline.validate import model_problems, validate

__all__ = [
    "WEIGHTS_FLAG", "FinalRequest", "Unit", "ensemble_experiment", "ensemble_weights", "eval_sample_text",
    "export_unit", "finalize_experiment",
    "map_back_labels", "model_problems", "plan_units",
    "predict_experiment", "preflight", "refuse_resume_settings", "resume_experiment", "run_experiment",
    "stacking_too_small", "start_experiment", "unit_config", "validate",
]
