"""Which epoch a unit keeps (`select_best`) and when it stops training early
(`early_stopping_patience`), on transformers' own machinery:

    TrainingArguments  metric_for_best_model + greater_is_better (raysum.training.arguments):
                       the Trainer tracks state.best_metric and state.best_global_step after
                       each evaluation, and its checkpoint rotation never deletes the best one
    KeepBest           saves the epoch that improves the metric as a checkpoint
    EarlyStop          transformers' EarlyStoppingCallback, resume-safe, recording why it stopped
    keep_best_epoch    after training: the Trainer's `_load_best_model` loads that checkpoint back
                       (full weights, a LoRA adapter, a DeepSpeed engine) and the choice is recorded

Not `load_best_model_at_end`: it loads the best model inside `train()`, before the unit writes
its last resume checkpoint (which must hold the last epoch's state), and it finds the best
checkpoint only among the ones written (the last epoch's is written after the loop). Every
piece of state lives in trainer_state.json (best metric and step, the log history with each
evaluation and the stop), which every checkpoint carries: a resumed unit compares with the
epochs before the interruption, spends the patience already spent, and an early-stopped unit
trains no further step (:func:`stopped_early`).
"""

from __future__ import annotations

from pathlib import Path

from transformers import EarlyStoppingCallback, TrainerCallback

from raysum.errors import RaysumError
from raysum.training.callbacks import is_sealed

STOP_KEY = "stopped_early"  # the log-history row of an early stop: its reason


class KeepBest(TrainerCallback):
    """An epoch whose evaluation improves on the best so far (`metric_for_best_model`, compared
    as the Trainer compares it right after this callback) is saved as a checkpoint, whatever
    `checkpoint_every` says: the unit loads the best one back after training. The last step is
    left to the unit's own last checkpoint (its weights are the trained model's anyway)."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics is None or state.global_step >= state.max_steps:
            return
        if _improves(metrics.get(args.metric_for_best_model), state.best_metric, args.greater_is_better):
            control.should_save = True


class EarlyStop(EarlyStoppingCallback):
    """transformers' early stopping on `metric_for_best_model`, made resume-safe and telling why.

    Its patience counter is replayed from the log history at the start of training (the
    history travels with every checkpoint; transformers would restore the counter only with
    every callback's and the control's saved state), and a stop appends its reason to the log
    history, where the unit's summary and a resumed unit find it (:func:`stop_reason`)."""

    def on_train_begin(self, args, state, control, **kwargs):
        # not super(): it warns that the best model is not loaded at the end, which the unit does itself
        metric = args.metric_for_best_model
        best, self.early_stopping_patience_counter = None, 0
        for value in (row[metric] for row in state.log_history if metric in row):
            if _improves(value, best, args.greater_is_better):
                best, self.early_stopping_patience_counter = value, 0
            else:
                self.early_stopping_patience_counter += 1

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        stopping = control.should_training_stop  # the last step already stops training
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if control.should_training_stop and not stopping:
            metric = args.metric_for_best_model
            best = next((row for row in state.log_history if row.get(metric) == state.best_metric), {})
            epoch = "?" if best.get("epoch") is None else f"{best['epoch']:g}"
            reason = (f"{metric} did not improve for {self.early_stopping_patience} epoch(s) after epoch {epoch} "
                      f"({state.best_metric:.4f})")
            state.log_history.append({"epoch": _epoch(state.epoch), "step": state.global_step, STOP_KEY: reason})


def stop_reason(log_history: list[dict]) -> str | None:
    """Why training ended before its last epoch (EarlyStop), or None."""
    return next((row[STOP_KEY] for row in log_history if STOP_KEY in row), None)


def stopped_early(checkpoint: str | Path) -> bool:
    """Whether the training a checkpoint holds had been ended by early stopping."""
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_callback import TrainerState

    state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME))
    return stop_reason(state.log_history) is not None


def keep_best_epoch(trainer, select_best: str, resume_dir: Path, unit_name: str) -> dict:
    """The weights `select_best` chose, loaded back into the trained model when an earlier
    epoch was better, and the record of the choice for unit.json (UNIT_SELECTION_KEYS, and the
    kept epoch's eval_loss / eval_score). Called after the last resume checkpoint is written."""
    state = trainer.state
    step = state.global_step
    if select_best != "last" and state.best_global_step and state.best_global_step != step:
        best = Path(resume_dir) / f"checkpoint-{state.best_global_step}"
        if not is_sealed(best):
            raise RaysumError(f"unit {unit_name}: the checkpoint of its best epoch ({best}) is missing or "
                              "incomplete; delete the unit's directory to train it again")
        state.best_model_checkpoint = str(best)
        trainer._load_best_model()
        step = state.best_global_step
    evaluation = _evaluation_at(state.log_history, step)
    reason = stop_reason(state.log_history)
    return {"selected_by": select_best, "best_epoch": evaluation.get("epoch", _epoch(state.epoch)),
            "best_step": step, "epochs_trained": _epoch(state.epoch), "stopped_early": reason is not None,
            "stop_reason": reason, **{k: evaluation[k] for k in ("eval_loss", "eval_score") if k in evaluation}}


def _evaluation_at(log_history: list[dict], step: int) -> dict:
    """The evaluation of one step: its epoch, eval_loss and eval_score ({} when none)."""
    out: dict = {}
    for row in log_history:
        if row.get("step") == step and ("eval_loss" in row or "eval_score" in row):
            out.update({k: row[k] for k in ("epoch", "eval_loss", "eval_score") if k in row})
    return out


def _epoch(epoch) -> float | None:
    return None if epoch is None else round(float(epoch), 4)


def _improves(value, best, greater: bool) -> bool:
    """As the Trainer's best-metric comparison (`_determine_best_metric`): strictly better."""
    if value is None:
        return False
    return best is None or (value > best if greater else value < best)
