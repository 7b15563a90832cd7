"""The report's plots: PNG files directly in `DIR/plots/`, one registered function each.

Every plot reads the experiment record (metrics.jsonl, unit.json, scores.json) and has a
title, axis labels and units. Labels are model and unit names and metric names, never
Korean text: no Korean font is assumed to be installed (matplotlib would draw boxes).
A plot with nothing to show (no evaluation, no folds) is not written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from raysum.experiment import layout
from raysum.report._load import ExperimentRecord
from raysum.storage import write_atomic

PLOTS_DIR = layout.PLOTS_DIR
ROUGE_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}


@dataclass(frozen=True)
class Plot:
    file: str
    caption: str
    draw: Callable  # (record, plt) -> figure or None


PLOTS: dict[str, Plot] = {}


def register_plot(file: str, caption: str):
    def wrap(fn):
        PLOTS[file] = Plot(file, caption, fn)
        return fn
    return wrap


def write_plots(record: ExperimentRecord, out_dir: str | Path | None = None) -> list[Path]:
    """Draw every registered plot that has data; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir) if out_dir else record.path / PLOTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in PLOTS.values():
        fig = plot.draw(record, plt)
        if fig is None:
            continue
        fig.tight_layout()
        write_atomic(out / plot.file, lambda temp, fig=fig: fig.savefig(temp, dpi=90, format="png"))
        plt.close(fig)
        written.append(out / plot.file)
    return written


def _unit_colors(record: ExperimentRecord) -> dict[str, str]:
    return {u.name: f"C{i % 10}" for i, u in enumerate(record.units)}


def _curve_plot(record: ExperimentRecord, plt, column: str, title: str, ylabel: str, log: bool = False):
    units = [u for u in record.units if not u.train_rows.empty and column in u.train_rows
             and u.train_rows[column].notna().any()]
    if not units:
        return None
    colors = _unit_colors(record)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for unit in units:
        rows = unit.train_rows[unit.train_rows[column].notna()]
        ax.plot(rows["epoch"], rows[column], "-", color=colors[unit.name], label=unit.name, linewidth=1.2)
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


# --------------------------------------------------------------------------- training curves
@register_plot("loss.png", "Training loss (lines) and eval loss (markers, once per epoch) per unit")
def loss_plot(record: ExperimentRecord, plt):
    fig = _curve_plot(record, plt, "loss", "Loss per unit: train (line) and eval (dashed, markers)",
                      "cross-entropy loss (nats per token)")
    if fig is None:
        return None
    ax, colors = fig.axes[0], _unit_colors(record)
    for unit in record.units:
        evals = unit.eval_rows
        if not evals.empty:
            ax.plot(evals["epoch"], evals["eval_loss"], "o--", color=colors[unit.name], markersize=5, linewidth=0.9)
    return fig


@register_plot("learning_rate.png", "Learning-rate schedule per unit (linear warmup, then linear decay)")
def learning_rate_plot(record: ExperimentRecord, plt):
    return _curve_plot(record, plt, "learning_rate", "Learning-rate schedule per unit", "learning rate")


@register_plot("grad_norm.png", "Gradient norm before clipping (clipped at 1.0) per unit")
def grad_norm_plot(record: ExperimentRecord, plt):
    return _curve_plot(record, plt, "grad_norm", "Gradient norm per unit (before clipping at 1.0)",
                       "global L2 norm of gradients")


# --------------------------------------------------------------------------- scores
def score_rows(record: ExperimentRecord) -> list[tuple[str, dict, str]]:
    """(label, dev scores, kind) for every unit then every ensemble; kind is unit or ensemble."""
    rows = [(name, entry["dev"], "unit") for name, entry in record.scores.get("units", {}).items() if entry.get("dev")]
    rows += [(f"ensemble {s}", r["dev"], "ensemble") for s, r in record.scores.get("ensembles", {}).items()
             if r.get("dev")]
    return rows


def best_single_unit(record: ExperimentRecord) -> str | None:
    """The best single unit as the pipeline chose it (by OOF score in the fold modes, by dev
    score otherwise), from scores.json."""
    for result in record.scores.get("ensembles", {}).values():
        if result.get("best_single"):
            return result["best_single"]["unit"]
    return None


@register_plot("dev_scores.png", "Dev ROUGE-1/2/L and competition score per unit and per ensemble strategy; "
                                 "the best single unit (as the pipeline chose it) is marked")
def dev_scores_plot(record: ExperimentRecord, plt):
    import numpy as np

    rows = score_rows(record)
    if not rows:
        return None
    best = best_single_unit(record)
    labels = [label + (" (best single)" if label == best else "") for label, _, _ in rows]
    x = np.arange(len(rows))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.5, 0.9 * len(rows) + 3), 7.5), sharex=True)
    width = 0.27
    for i, (key, name) in enumerate(ROUGE_LABELS.items()):
        top.bar(x + (i - 1) * width, [s[key] for _, s, _ in rows], width, label=name)
    top.set(title="Dev ROUGE F1 per unit and ensemble", ylabel="F1 (0-1)")
    top.legend(fontsize=8)
    top.grid(axis="y", alpha=0.3)
    colors = ["C3" if label == best else ("C2" if kind == "ensemble" else "C0") for label, _, kind in rows]
    bars = bottom.bar(x, [s["competition_score"] for _, s, _ in rows], 0.6, color=colors)
    bottom.bar_label(bars, fmt="%.2f", fontsize=7)
    models, units = record.scores.get("models", {}), record.scores.get("units", {})
    untrained = [(i, models.get(units[label]["model"], {}).get("dev_untrained")) for i, (label, _, kind)
                 in enumerate(rows) if kind == "unit"]
    untrained = [(i, base["competition_score"]) for i, base in untrained if base]
    if untrained:
        bottom.plot([i for i, _ in untrained], [v for _, v in untrained], "k_", markersize=28, markeredgewidth=2,
                    label="same model, untrained")
        bottom.legend(fontsize=8, loc="upper left")
    bottom.set(title="Dev competition score = (R1+R2+RL)/3 x 100 (red: best single unit, green: ensembles)",
               ylabel="competition score (0-100)")
    bottom.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    bottom.grid(axis="y", alpha=0.3)
    return fig


@register_plot("fold_spread.png", "Spread of OOF and dev competition score across folds, per model")
def fold_spread_plot(record: ExperimentRecord, plt):
    units = record.scores.get("units", {})
    models = [m for m in record.models if sum(1 for e in units.values() if e.get("model") == m
                                              and e.get("fold") is not None) >= 2]
    if not models:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(models) + 2), 4.2))
    for i, model in enumerate(models):
        for offset, split, color in ((-0.12, "oof", "C0"), (0.12, "dev", "C1")):
            values = [e[split]["competition_score"] for e in units.values()
                      if e.get("model") == model and e.get(split)]
            if not values:
                continue
            ax.plot([i + offset] * len(values), values, "o", color=color, alpha=0.7,
                    label=f"{split} (one point per fold)" if i == 0 else None)
            ax.vlines(i + offset, min(values), max(values), color=color, linewidth=2, alpha=0.5)
    ax.set_xticks(range(len(models)), models)
    ax.set(title="Competition score across folds (line = min to max)", xlabel="model",
           ylabel="competition score (0-100)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------- time
@register_plot("time_per_unit.png", "Wall time per unit: training, generation, and the rest (setup, untrained "
                                    "baseline, saving)")
def time_plot(record: ExperimentRecord, plt):
    units = [u for u in record.units if u.info.get("train_s") is not None]
    if not units:
        return None
    names = [u.name for u in units]
    train = [u.info["train_s"] for u in units]
    generate = [u.info.get("generate_s") or 0.0 for u in units]
    other = [max(0.0, u.info["finished_at"] - u.info["started_at"] - t - g)
             if u.info.get("finished_at") and u.info.get("started_at") else 0.0
             for u, t, g in zip(units, train, generate)]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(units) + 2.4))
    ax.barh(names, train, label="training", color="C0")
    ax.barh(names, generate, left=train, label="generation (OOF, dev, test, TTA)", color="C1")
    ax.barh(names, other, left=[t + g for t, g in zip(train, generate)], label="other (setup, baseline, save)",
            color="C7", alpha=0.6)
    ax.invert_yaxis()
    ax.set(title="Time per unit", xlabel="seconds", ylabel="unit")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    return fig


@register_plot("samples_per_s.png", "Training throughput per model (training examples x epochs / training "
                                    "seconds; one point per unit)")
def samples_per_s_plot(record: ExperimentRecord, plt):
    by_model = {m: [u.samples_per_s for u in record.units if u.model == m and u.samples_per_s] for m in record.models}
    by_model = {m: v for m, v in by_model.items() if v}
    if not by_model:
        return None
    models = list(by_model)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(models) + 2), 4))
    means = [sum(v) / len(v) for v in by_model.values()]
    bars = ax.bar(models, means, 0.6, color="C0", alpha=0.7, label="mean over units")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    for i, values in enumerate(by_model.values()):
        ax.plot([i] * len(values), values, "k.", label="unit" if i == 0 else None)
    ax.set(title="Training throughput per model", xlabel="model", ylabel="samples/s")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
