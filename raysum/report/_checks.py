"""Automatic findings of the report: each check is one small function of the experiment's
files, registered under a name, returning one sentence per finding (none = silent).

They look for what the seed report got wrong by hand: a command-line value that did not
reach a model, time going into generation rather than training, a ROUGE that could not
see Korean, overfitting, training that made a model worse, ensembles that do not help.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raysum.config.schema import SHARED_FIELDS  # global flags that set the same per-model field
from raysum.ensemble import CHOSEN_BY_TEXT, chosen_by
from raysum.report._load import ExperimentRecord

CLI = "cli"
# Fewer samples than this and "equal on every sample" says nothing.
MIN_SAMPLES_EQUAL_ROUGE = 5
# Share of one unit's dev summaries that are the same text before the unit is called degenerate.
DEGENERATE_SHARE = 0.5


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    run: Callable[[ExperimentRecord], list[str]]
    advice: str = ""  # printed once under the findings


CHECKS: dict[str, Check] = {}


def register_check(name: str, title: str, advice: str = ""):
    def wrap(fn: Callable[[ExperimentRecord], list[str]]):
        CHECKS[name] = Check(name, title, fn, advice)
        return fn
    return wrap


def run_checks(record: ExperimentRecord) -> list[tuple[Check, list[str]]]:
    """Every registered check with its findings, in registration order."""
    return [(check, check.run(record)) for check in CHECKS.values()]


def _cs(scores: dict | None) -> float | None:
    return None if not scores else scores.get("competition_score")


# --------------------------------------------------------------------------- checks
@register_check("cli_value_not_applied", "A value set on the command line differs between models")
def cli_value_not_applied(record: ExperimentRecord) -> list[str]:
    """The seed's bug: a model preset silently beat `--gradient_accumulation_steps 1`.
    Checked twice: in the resolved config, and in what training logged (effective batch)."""
    out = []
    for key in SHARED_FIELDS:
        node = record.config.get(key)
        if not node or node.get("source") != CLI or node.get("value") is None:
            continue
        wanted = node["value"]
        for model in record.models:
            got = record.model_setting(model, key)
            if got != wanted:
                source = record.config["models"][model][key]["source"]
                out.append(f"{key} = {wanted} on the command line, but model {model} ran with {got} (from {source})")
    batch, accumulation = record.config.get("batch_size", {}), record.config.get("gradient_accumulation_steps", {})
    if CLI not in (batch.get("source"), accumulation.get("source")):
        return out
    for unit in record.units:
        used = unit.effective_batch_size
        if used is None:
            continue
        workers = record.model_setting(unit.model, "resources.num_workers")
        per_step = (batch["value"] if batch.get("source") == CLI else record.model_setting(unit.model, "batch_size"))
        accum = (accumulation["value"] if accumulation.get("source") == CLI
                 else record.model_setting(unit.model, "gradient_accumulation_steps"))
        if used != per_step * accum * workers:
            out.append(f"unit {unit.name} trained with an effective batch of {used} examples per optimizer step "
                       f"(metrics.jsonl), not the command line's {per_step} x {accum} x {workers} worker(s)")
    return out


@register_check("generation_slower_than_training", "Generation takes longer than training",
                advice="decoding settings (num_beams, generation_batch_size, max_length) then matter more for "
                       "wall time than training settings; gradient accumulation does not change compute per sample")
def generation_slower_than_training(record: ExperimentRecord) -> list[str]:
    out = []
    for unit in record.units:
        train_s, generate_s = unit.info.get("train_s"), unit.info.get("generate_s")
        if train_s is not None and generate_s is not None and generate_s > train_s:
            n = sum((unit.info.get("predictions") or {}).values())
            out.append(f"unit {unit.name}: generation {generate_s:.2f} s > training {train_s:.2f} s "
                       f"({n} summaries generated)")
    return out


@register_check("rouge1_equals_rougeL", "ROUGE-1 equals ROUGE-L on every sample (a tokenization smell)",
                advice="a tokenizer that drops Hangul (rouge-score's default keeps only [a-z0-9]) leaves tokens "
                       "without order; with Korean tokens it means summaries too short or repetitive for order "
                       "to count")
def rouge1_equals_rouge_l(record: ExperimentRecord) -> list[str]:
    """With rouge-score's default tokenizer Korean loses every Hangul token: what is left
    (digits, tags) rarely has an order, so R1 = RL on every dialogue."""
    candidates = record.candidates
    if candidates is None:
        return []
    from raysum.metrics import score_dialogues

    out = []
    plain = candidates[candidates["tta"] == "none"]
    for split in ("dev", "oof"):
        refs = record.references(split)
        for (model, fold), rows in plain[plain["split"] == split].groupby(["model", "fold"], dropna=False):
            rows = rows[rows["fname"].isin(refs)]
            if len(rows) < MIN_SAMPLES_EQUAL_ROUGE:
                continue
            per_sample = score_dialogues(rows["text"].tolist(), [refs[f] for f in rows["fname"]], record.tokenizer)
            if np.allclose(per_sample["rouge1"], per_sample["rougeL"], rtol=0, atol=1e-12):
                label = "full" if pd.isna(fold) else f"fold{int(fold)}"
                out.append(f"unit {model}/{label}: ROUGE-1 = ROUGE-L on all {len(rows)} {split} summaries "
                           f"({record.tokenizer} tokens)")
    return out


def _epoch_train_losses(unit) -> list[float]:
    """Mean training loss logged between consecutive evaluations (one per evaluation)."""
    train, evals = unit.train_rows, unit.eval_rows
    means, previous = [], -1
    for step in evals["step"]:
        window = train[(train["step"] > previous) & (train["step"] <= step)]
        means.append(float(window["loss"].mean()) if not window.empty else float("nan"))
        previous = step
    return means


@register_check("eval_loss_rising", "Eval loss rises while train loss falls (overfitting)",
                advice="`select_best: eval_loss` keeps the epoch with the lowest eval loss, and "
                       "`early_stopping_patience` ends training once it stops falling (per model or global)")
def eval_loss_rising(record: ExperimentRecord) -> list[str]:
    out = []
    for unit in record.units:
        evals = unit.eval_rows
        if len(evals) < 2:
            continue
        eval_losses, train_losses = evals["eval_loss"].tolist(), _epoch_train_losses(unit)
        epochs = evals["epoch"].tolist()
        kept = unit.selection
        kept = (f" (the unit kept epoch {kept['best_epoch']:g}, by {kept['selected_by']})"
                if kept.get("selected_by", "last") != "last" and kept.get("best_epoch") is not None else "")
        for i in range(1, len(eval_losses)):
            if eval_losses[i] > eval_losses[i - 1] and train_losses[i] < train_losses[i - 1]:
                out.append(f"unit {unit.name}: from epoch {epochs[i - 1]:g} to {epochs[i]:g} eval loss rose "
                           f"{eval_losses[i - 1]:.4f} -> {eval_losses[i]:.4f} while mean train loss fell "
                           f"{train_losses[i - 1]:.4f} -> {train_losses[i]:.4f}{kept}")
    return out


@register_check("train_loss_not_falling", "Training loss did not fall")
def train_loss_not_falling(record: ExperimentRecord) -> list[str]:
    out = []
    for unit in record.units:
        losses = unit.train_rows["loss"].tolist() if not unit.train_rows.empty else []
        if len(losses) >= 2 and losses[-1] >= losses[0]:
            out.append(f"unit {unit.name}: train loss {losses[0]:.4f} at the first step, {losses[-1]:.4f} at the last")
    return out


@register_check("below_untrained_baseline", "A trained unit scores below the untrained model on dev")
def below_untrained_baseline(record: ExperimentRecord) -> list[str]:
    out = []
    for name, entry in record.scores.get("units", {}).items():
        base = _cs(record.scores.get("models", {}).get(entry.get("model"), {}).get("dev_untrained"))
        dev = _cs(entry.get("dev"))
        if base is not None and dev is not None and dev < base:
            out.append(f"unit {name}: dev competition_score {dev:.2f} after training < {base:.2f} untrained")
    return out


@register_check("ensemble_worse_than_best_single", "An ensemble is worse than its best member")
def ensemble_worse_than_best_single(record: ExperimentRecord) -> list[str]:
    """Compared with the best single unit as the pipeline chose it (by OOF score in the fold
    modes, by dev score otherwise), on dev."""
    out = []
    for strategy, result in record.scores.get("ensembles", {}).items():
        best = result.get("best_single") or {}
        ours, theirs = _cs(result.get("dev")), _cs(best.get("dev"))
        if ours is not None and theirs is not None and ours < theirs:
            out.append(f"ensemble {strategy}: dev competition_score {ours:.2f} < {theirs:.2f} of its best single "
                       f"unit {best.get('unit')} (chosen by {CHOSEN_BY_TEXT[chosen_by(best)]})")
    return out


@register_check("degenerate_summaries", "One summary repeated for most dialogues")
def degenerate_summaries(record: ExperimentRecord) -> list[str]:
    candidates = record.candidates
    if candidates is None:
        return []
    out = []
    dev = candidates[(candidates["split"] == "dev") & (candidates["tta"] == "none")]
    for (model, fold), rows in dev.groupby(["model", "fold"], dropna=False):
        if rows.empty:
            continue
        counts = rows["text"].value_counts()
        share = counts.iloc[0] / len(rows)
        if share > DEGENERATE_SHARE:
            label = "full" if pd.isna(fold) else f"fold{int(fold)}"
            out.append(f"unit {model}/{label}: the same summary for {counts.iloc[0]} of {len(rows)} dev dialogues "
                       f"({share:.0%}): {counts.index[0][:80]!r}")
    return out
