"""Live view of the units (queued / running / done / failed, step, loss) and the score table."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from raysum.experiment import Experiment, UnitFiles
from raysum.launch import shutdown_ray
from raysum.pipeline._collect import eval_sample_text
from raysum.pipeline._queue import UnitQueue

POLL_S = 0.5


def _tail_metrics(unit: UnitFiles) -> dict:
    """The last training-step row of a unit's metrics (empty before the first step; a line
    being written is left out)."""
    return next((row for row in reversed(unit.metrics()) if "loss" in row), {})


def _unit_state(unit: UnitFiles, finished: dict[str, str | None], name: str) -> str:
    if name in finished:
        return "failed" if finished[name] else "done"
    if unit.info_file.is_file():
        return "done"
    if unit.started():
        return "running"
    return "queued"


def _table(names: list[str], exp_dir: Path, finished: dict[str, str | None], started: float) -> Table:
    table = Table(title=f"units ({time.time() - started:.0f} s)")
    for col in ("unit", "state", "step", "epoch", "loss"):
        table.add_column(col, justify="left" if col in ("unit", "state") else "right")
    colors = {"queued": "dim", "running": "yellow", "done": "green", "failed": "red"}
    for name in names:
        model, label = name.split("/")
        unit = Experiment(exp_dir).unit(model, label)
        state = _unit_state(unit, finished, name)
        row = _tail_metrics(unit)
        table.add_row(name, f"[{colors[state]}]{state}[/]", str(row.get("step", "")),
                      f"{row['epoch']:.2f}" if "epoch" in row else "",
                      f"{row['loss']:.4f}" if "loss" in row else "")
    return table


def watch_units(runs: list, names: list[str], exp_dir: Path, console: Console,
                queue: UnitQueue | None = None) -> dict[str, str]:
    """Wait for every run, showing progress; returns {unit name: error} of failed units.
    ``queue`` hears when a unit starts training and when it ends; the runs it launches
    then are watched too."""
    import ray

    pending = {run.ref: run for run in runs}
    training: set[str] = set()
    finished: dict[str, str | None] = {}
    started = time.time()
    try:
        with Live(_table(names, exp_dir, finished, started), console=console, refresh_per_second=2,
                  transient=not console.is_terminal) as live:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        ray.get(ref)
                        finished[run.name] = None
                    except Exception as exc:  # noqa: BLE001 - any unit failure is reported, not raised
                        finished[run.name] = _short_error(exc)
                    if queue is not None:
                        pending.update({job.ref: job for job in queue.finished(run.name)})
                if queue is not None:
                    pending.update(_newly_training(list(pending.values()), training, queue))
                live.update(_table(names, exp_dir, finished, started))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the units stop before the experiment directory is let go
        shutdown_ray()
        raise
    if not console.is_terminal:
        console.print(_table(names, exp_dir, finished, started))
    return {name: err for name, err in finished.items() if err}


def _newly_training(runs: list, training: set[str], queue: UnitQueue) -> dict:
    """Tell ``queue`` of each run that began training since the last look (its unit
    directory has its first attempt or metrics); returns the runs it launched, by ref."""
    launched = {}
    for run in runs:
        if run.name not in training and UnitFiles(run.unit_dir).started():
            training.add(run.name)
            launched.update({job.ref: job for job in queue.started(run.name)})
    return launched


def _short_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    tail = [line for line in text if line.strip()][-3:]
    return " | ".join(tail)[:600]


def print_scores(scores: dict, console: Console) -> None:
    table = Table(title=f"scores (Korean ROUGE F1, {scores['tokenizer']} tokens; competition score 0-100)")
    for col in ("unit", "epoch", "OOF R1", "OOF R2", "OOF RL", "OOF score", "dev R1", "dev R2", "dev RL",
                "dev score", "dev untrained"):
        table.add_column(col, justify="right" if col != "unit" else "left")
    for name, unit in scores["units"].items():
        oof, dev = unit.get("oof"), unit.get("dev")
        base = scores["models"][unit["model"]].get("dev_untrained")

        def cells(s):
            if not s:
                return ["-"] * 4
            return [f"{s['rouge1']:.4f}", f"{s['rouge2']:.4f}", f"{s['rougeL']:.4f}", f"{s['competition_score']:.2f}"]

        table.add_row(name, _kept_epoch(unit.get("selection") or {}), *cells(oof), *cells(dev),
                      f"{base['competition_score']:.2f}" if base else "-")
    for strategy, result in scores.get("ensembles", {}).items():
        marker = " (submission)" if strategy == scores.get("ensemble_strategy") else ""
        table.add_row(f"[bold]ensemble {strategy}{marker}[/]", "-", *cells(result.get("oof")),
                      *cells(result.get("dev")), "-")
    sample = eval_sample_text(scores.get("eval_sample"))
    if sample:
        table.caption = sample
    console.print(table)


def _kept_epoch(selection: dict) -> str:
    """The epoch whose weights made a unit's summaries, and what chose it (`select_best`)."""
    if selection.get("best_epoch") is None:
        return "-"
    stopped = ", stopped early" if selection.get("stopped_early") else ""
    return f"{selection['best_epoch']:g} ({selection.get('selected_by')}{stopped})"
