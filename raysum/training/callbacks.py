"""Trainer callbacks: the unit's metrics.jsonl, per-epoch reports (Ray Train / Tune), the
epoch score, and the seal that marks an epoch checkpoint complete. The best epoch's
checkpoint and early stopping have their own module, raysum.training.best_epoch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from raysum.experiment import layout
from raysum.storage import write_text_atomic


class MetricsLog(TrainerCallback):
    """One JSON line per logging step (loss, grad_norm, learning_rate, throughput) and one
    per evaluation (eval_loss), written by the main process."""

    def __init__(self, path: str | Path, effective_batch_size: int):
        self.path = Path(path)
        self.effective_batch_size = effective_batch_size
        self._since_time = self._since_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._since_time, self._since_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": _round(state.epoch)}
        if "loss" in logs:
            now = time.perf_counter()
            samples = (state.global_step - self._since_step) * self.effective_batch_size
            row.update(
                loss=logs["loss"], grad_norm=logs.get("grad_norm"), learning_rate=logs.get("learning_rate"),
                samples_per_s=round(samples / max(now - self._since_time, 1e-9), 3),
                effective_batch_size=self.effective_batch_size)
            self._since_time, self._since_step = now, state.global_step
        elif "eval_loss" in logs:
            row["eval_loss"] = logs["eval_loss"]
        else:
            return
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


class EpochScore(TrainerCallback):
    """After each evaluation, the main process scores the model's summaries of the eval
    part (`score(model)`) and sends the value to the other workers: it goes into the
    evaluation's metrics (EpochReport, KeepBest and EarlyStop, which run after this
    callback, read it there; every worker must agree on the best epoch and on stopping)
    and into the log history (kept by checkpoints, so a resumed unit still knows its scores)."""

    def __init__(self, score: Callable[[object], float]):
        self.score = score

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if metrics is None:
            return
        value = _from_main_process(float(self.score(model)) if state.is_world_process_zero else None)
        metrics["eval_score"] = value
        state.log_history.append({"epoch": _round(state.epoch), "step": state.global_step, "eval_score": value})


class EpochReport(TrainerCallback):
    """Calls `report(metrics, None)` once per epoch on every worker: after the evaluation
    when there is an eval set, else at the end of the epoch."""

    def __init__(self, report: Callable[[dict, str | None], None], has_eval: bool):
        self.report = report
        self.has_eval = has_eval

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.has_eval:
            extra = {k: v for k, v in (metrics or {}).items() if k in ("eval_loss", "eval_score")}
            self.report(self._metrics(state, **extra), None)

    def on_epoch_end(self, args, state, control, **kwargs):
        if not self.has_eval:
            self.report(self._metrics(state), None)

    @staticmethod
    def _metrics(state, **extra) -> dict:
        losses = [row["loss"] for row in state.log_history if "loss" in row]
        metrics = {"epoch": _round(state.epoch), "step": state.global_step,
                   "train_loss": losses[-1] if losses else None}
        metrics.update(extra)
        return metrics


class CheckpointSeal(TrainerCallback):
    """Seals each epoch checkpoint once the Trainer's save of it returned (weights,
    optimizer, scheduler, every rank's RNG state, trainer_state.json): a unit killed while
    saving (Ctrl-C, SIGTERM, SIGKILL, a lost node) leaves a checkpoint without the seal,
    which a resume passes over (:func:`is_sealed`). The seal also records `record` (the
    token budget the unit trains with: a resumed `auto` budget reuses it)."""

    def __init__(self, record: dict | None = None):
        self.record = record or {}

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # the other ranks' RNG states are written too
        if args.should_save:
            seal(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}", state.global_step,
                 self.record)


class CheckpointEvery(TrainerCallback):
    """Epoch checkpoints every `every` epochs (`checkpoint_every`), never at the last step:
    the unit writes that one after its timed training loop (`raysum.training.unit.train`)."""

    def __init__(self, every: int):
        self.every = every

    def on_epoch_end(self, args, state, control, **kwargs):
        # runs after transformers' DefaultFlowCallback, which asks for a save at every epoch end
        last = state.global_step >= state.max_steps
        control.should_save = bool(self.every) and not last and round(state.epoch or 0) % self.every == 0


def seal(checkpoint: Path, step: int, record: dict | None = None) -> None:
    write_text_atomic(checkpoint / layout.CHECKPOINT_SEAL, json.dumps({"step": step, **(record or {})}))


def sealed_record(checkpoint: Path) -> dict:
    """What the seal of a sealed checkpoint recorded besides its step ({} if nothing)."""
    try:
        data = json.loads((Path(checkpoint) / layout.CHECKPOINT_SEAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k != "step"} if isinstance(data, dict) else {}


def is_sealed(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` (``checkpoint-<step>``) was sealed after a complete save of that step."""
    try:
        step = json.loads((checkpoint / layout.CHECKPOINT_SEAL).read_text(encoding="utf-8"))["step"]
        return str(step) == checkpoint.name.rsplit("-", 1)[-1]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _round(epoch):
    return None if epoch is None else round(float(epoch), 4)


def _from_main_process(value):
    """``value`` of the main process on every worker of a distributed unit (itself otherwise)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
