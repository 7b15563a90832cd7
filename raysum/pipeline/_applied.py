"""What a new experiment runs with, printed at its start: the data files with their row
counts, the evaluation sample, and per model the settings the experiment file or the
command line changed from its preset, with the effective batch they give."""

from __future__ import annotations

from raysum.config.resolve import ResolvedConfig
from raysum.experiment import layout
from raysum.pipeline._experiment import ExperimentData


def applied_lines(cfg: ResolvedConfig, data: ExperimentData) -> list[str]:
    return data_lines(cfg, data) + [line for name in cfg.models for line in model_lines(cfg, name)]


def data_lines(cfg: ResolvedConfig, data: ExperimentData) -> list[str]:
    exp = cfg.experiment
    lines = []
    for split in ("train", "dev", "test"):
        given = getattr(exp, f"{split}_data")
        rows = data.loaded_rows.get(split, len(getattr(data, split)))
        text = f"data {split}: {data.paths[split]} ({rows:,} rows"
        if split == "train" and len(data.train) != rows:
            text += f"; {len(data.train):,} sampled by max_train_samples"
        lines.append(text + ("" if given else "; the bundled synthetic sample") + ")")
    if data.eval_fnames:
        oof = {k: v for k, v in data.eval_fnames.items() if k != "dev"}
        text = (f"evaluation sample (max_eval_samples={exp.max_eval_samples}, seed {exp.seed}): every unit generates "
                f"and is scored on {len(data.eval_fnames['dev']):,} of {len(data.dev):,} dev dialogues")
        if oof and data.folds is not None:
            sizes = data.folds["fold"].value_counts()
            parts = ", ".join(f"{label} {len(v):,} of {int(sizes[layout.fold_of(label)]):,}" for label, v in oof.items())
            text += f" and on a sample of its fold's out-of-fold part ({parts})"
        lines.append(text + "; test is complete")
    return lines


def model_lines(cfg: ResolvedConfig, name: str) -> list[str]:
    m = cfg.models[name]
    workers = m.resources.num_workers
    effective = m.batch_size * m.gradient_accumulation_steps * workers
    changed = cfg.changed_from_preset(name)
    settings = "; ".join(f"{key} {_text(value)} ({source}; preset {_text(preset)})"
                         for key, value, preset, source in changed) or "the preset's settings"
    return [f"model {name}: effective batch {m.batch_size} x {m.gradient_accumulation_steps} (grad-accum) x "
            f"{workers} worker(s) = {effective}; applied: {settings}"]


def _text(value) -> str:
    return "unset" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
