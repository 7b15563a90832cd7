"""The experiment pipeline: data → units on Ray → candidates → scores → submission."""

from raysum.pipeline._experiment import Unit, plan_units
from raysum.pipeline._run import ensemble_experiment, predict_experiment, resume_experiment, run_experiment

__all__ = [
    "Unit", "ensemble_experiment", "plan_units", "predict_experiment", "resume_experiment", "run_experiment",
]
