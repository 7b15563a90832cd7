"""report.md: the experiment told from its own files, one function per section.

Numbers keep the scale of the files they come from: ROUGE F1 and rouge_sum as in
scores.json (0-1, 4 decimals), the competition score 0-100 (2 decimals), losses with 4
decimals, seconds with 2.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from raysum.ensemble import chosen_by
from raysum.pipeline import eval_sample_text
from raysum.report._checks import run_checks
from raysum.report._load import ExperimentRecord, UnitRecord
from raysum.report._plots import PLOTS, PLOTS_DIR, best_single_unit

SCORE_KEYS = ("rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score")
SCORE_HEADER = ["R1", "R2", "RL", "rouge_sum", "competition_score"]


# --------------------------------------------------------------------------- formatting
def f4(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.4f}"


def f2(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.2f}"


def score_cells(scores: dict | None) -> list[str]:
    if not scores:
        return ["-"] * len(SCORE_KEYS)
    return [f4(scores.get(k)) for k in SCORE_KEYS[:-1]] + [f2(scores.get("competition_score"))]


def table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _clock(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _offset(ts: float | None, origin: float | None) -> str:
    if ts is None or origin is None:
        return "-"
    seconds = int(round(ts - origin))
    return f"+{seconds // 60:02d}:{seconds % 60:02d}"


def _value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "null" if value is None else str(value)


# --------------------------------------------------------------------------- sections
def header_section(record: ExperimentRecord, findings: int) -> str:
    done = sum(u.done for u in record.units)
    submission = record.scores.get("submission", {})
    lines = [
        f"# Experiment report: {record.path.name}",
        "",
        f"- mode: {record.setting('mode')}; models: {', '.join(record.models)}; "
        f"units finished: {done} of {len(record.units)}",
        f"- created: {_clock(record.run.get('created'))}",
        f"- submission: {submission.get('reason', 'not written (the experiment did not finish)')}",
        f"- automatic checks: {findings} finding(s), see [Checks](#checks)",
        *([f"- evaluation sample: {eval_sample_text(record.scores['eval_sample'])}"]
          if record.scores.get("eval_sample") else []),
        *(f"- file left out: {note}" for note in record.notes),
        "",
        f"Every number below is read from this directory's files (config.json, run.json, "
        f"units/*/unit.json and metrics.jsonl, scores.json, candidates.parquet). ROUGE: Korean ROUGE F1 with "
        f"{record.tokenizer} tokens on a 0-1 scale, rouge_sum = R1+R2+RL; competition score = "
        f"(R1+R2+RL)/3 x 100 on a 0-100 scale. OOF = out-of-fold: a unit's summaries of the training "
        f"dialogues it did not train on.",
    ]
    return "\n".join(lines)


def command_section(record: ExperimentRecord) -> str:
    argv = record.run.get("command_line") or []
    lines = ["## Command line", "", "```bash", shlex.join(argv) if argv else "(not recorded)", "```"]
    for kind in ("warnings", "notes"):
        for item in record.run.get(kind) or []:
            lines.append(f"- {kind[:-1]}: {item}")
    return "\n".join(lines)


def _leaves(node: dict, prefix: str = "") -> dict[str, dict]:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and set(value) == {"value", "source"}:
            out[prefix + key] = value
        elif isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
    return out


def config_section(record: ExperimentRecord) -> str:
    glob = _leaves({k: v for k, v in record.config.items() if k != "models"})
    lines = ["## Configuration", "",
             "Precedence: default < model preset < experiment file (--config) < command line (cli). "
             "Each value with the layer that set it.", "", "### Global settings", "",
             table(["setting", "value", "source"], [[k, _value(v["value"]), v["source"]] for k, v in glob.items()])]
    per_model = {m: _leaves(record.config["models"][m]) for m in record.models}
    keys = list(dict.fromkeys(k for leaves in per_model.values() for k in leaves))
    rows = [[key] + [f"{_value(per_model[m][key]['value'])} ({per_model[m][key]['source']})" if key in per_model[m]
                     else "-" for m in record.models] for key in keys]
    lines += ["", "### Per model (value (source))", "", table(["setting", *record.models], rows)]
    return "\n".join(lines)


def _length_cells(texts: pd.Series) -> list[str]:
    lengths = texts.astype(str).str.len()
    return [f"{lengths.mean():.1f}", f"{lengths.median():.0f}", f"{lengths.max():.0f}"] if len(lengths) else ["-"] * 3


def data_section(record: ExperimentRecord) -> str:
    rows = []
    for split in ("train", "dev", "test"):
        frame = record.inputs(split)
        if frame is None:
            continue
        n_refs = frame["references"].map(len) if "references" in frame else pd.Series([0] * len(frame))
        first = frame["references"].map(lambda r: r[0] if len(r) else None).dropna() if "references" in frame \
            else pd.Series(dtype=str)
        rows.append([split, len(frame), f"{n_refs.mean():.2f}", *_length_cells(frame["dialogue"]),
                     *_length_cells(first)])
    lines = ["## Data", "", table(["split", "dialogues", "references per dialogue", "dialogue chars mean",
                                   "median", "max", "summary chars mean", "median", "max"], rows)]
    files = record.run.get("data") or {}
    if files:
        lines += ["", "Files: " + "; ".join(f"{k}: `{v}`" for k, v in files.items())
                  + f". max_train_samples: {_value(record.setting('max_train_samples'))}."]
    folds = record.folds
    if folds is not None:
        counts = folds["fold"].value_counts().sort_index()
        fold_rows = []
        for fold, heldout in counts.items():
            aug = record.augmentation.get(f"fold{fold}", {})
            fold_rows.append([f"fold{fold}", heldout, len(folds) - heldout, aug.get("source_rows", "-"),
                              aug.get("augmented_rows", "-")])
        lines += ["", f"### Folds (k = {len(counts)}, fold_seed {record.setting('fold_seed')})", "",
                  table(["fold", "held-out (OOF) dialogues", "training dialogues", "training rows before "
                         "augmentation", "augmented rows"], fold_rows)]
    elif record.augmentation:
        aug = record.augmentation.get("full", {})
        lines += ["", f"Training rows: {aug.get('source_rows', '-')}, augmented rows: {aug.get('augmented_rows', '-')}."]
    return "\n".join(lines)


def timeline_section(record: ExperimentRecord) -> str:
    origin = record.run.get("created")
    rows = []
    phases = record.run.get("unit_phases") or []
    if phases:
        rows.append(["inputs (folds, augmentation, TTA variants)", _clock(origin), _offset(origin, origin),
                     _offset(phases[0]["start"], origin), f2(phases[0]["start"] - origin) if origin else "-"])
    for unit in sorted(record.units, key=lambda u: u.info.get("started_at") or float("inf")):
        start, end = unit.info.get("started_at"), unit.info.get("finished_at")
        rows.append([f"unit {unit.name}", _clock(start), _offset(start, origin), _offset(end, origin),
                     f2(end - start) if start and end else "-"])
    for i, phase in enumerate(phases):
        label = "all units" if len(phases) == 1 else f"all units (attempt {i + 1})"
        rows.append([label, _clock(phase["start"]), _offset(phase["start"], origin), _offset(phase["end"], origin),
                     f2(phase["end"] - phase["start"])])
    finish = record.run.get("finish_phase")
    if finish:
        rows.append(["scoring, ensembles, submission", _clock(finish["start"]), _offset(finish["start"], origin),
                     _offset(finish["end"], origin), f2(finish["end"] - finish["start"])])
    return "\n".join(["## Timeline", "", "Offsets from the experiment's creation (mm:ss).", "",
                      table(["phase", "started", "start", "end", "duration s"], rows)])


def _first_last(rows: pd.DataFrame, column: str) -> tuple[float | None, float | None]:
    values = rows[column].dropna().tolist() if column in rows else []
    return (values[0], values[-1]) if values else (None, None)


def _training_row(unit: UnitRecord) -> list[str]:
    first, last = _first_last(unit.train_rows, "loss")
    eval_first, eval_last = _first_last(unit.eval_rows, "eval_loss")
    info = unit.info
    sps = unit.samples_per_s
    return [unit.name, info.get("steps", "-"), f4(first), f4(last), f4(eval_first), f4(eval_last),
            _epochs_trained(unit), _kept_epoch(unit.selection), f2(info.get("train_s")), f2(info.get("generate_s")),
            "-" if sps is None else f"{sps:.1f}", unit.effective_batch_size or "-"]


def _epoch_text(epoch) -> str:
    return "-" if epoch is None else f"{epoch:g}"


def _kept_epoch(selection: dict) -> str:
    """The epoch whose weights the unit kept and by what (select_best), e.g. `1 (eval_loss)`."""
    if selection.get("best_epoch") is None:
        return "-"
    return f"{_epoch_text(selection['best_epoch'])} ({selection.get('selected_by', '?')})"


def _epochs_trained(unit: UnitRecord) -> str:
    trained, planned = unit.selection.get("epochs_trained"), unit.info.get("epochs")
    if trained is None:
        return "-"
    return f"{_epoch_text(trained)} of {_epoch_text(planned)}, stopped early" if unit.selection.get("stopped_early") \
        else _epoch_text(trained)


def results_section(record: ExperimentRecord) -> str:
    units, models = record.scores.get("units", {}), record.scores.get("models", {})
    lines = ["## Results per model", "",
             "samples/s = training examples x epochs trained / training seconds; effective batch size = examples "
             "per optimizer step as logged in metrics.jsonl (batch x gradient accumulation x workers); kept epoch "
             "(and a score's epoch) = the epoch whose weights the unit saved and generated with, and the "
             "select_best setting that chose it (unit.json)."]
    for model in record.models:
        mine = [u for u in record.units if u.model == model]
        lines += ["", f"### {model}", "", "Training:", "",
                  table(["unit", "steps", "train loss first", "train loss last", "eval loss first", "eval loss last",
                         "epochs trained", "kept epoch", "training s", "generation s", "samples/s",
                         "effective batch size"],
                        [_training_row(u) for u in mine])]
        lines += [f"- {u.name} stopped early: {u.selection['stop_reason']}" for u in mine
                  if u.selection.get("stop_reason")]
        rows = []
        for unit in mine:
            entry = units.get(unit.name, {})
            kept = _kept_epoch(entry.get("selection") or unit.selection)
            for split in ("oof", "dev", "test"):
                if entry.get(split):
                    rows.append([unit.name, split, kept, *score_cells(entry[split]), entry[split].get("n", "-")])
        entry = models.get(model, {})
        if entry.get("oof"):
            rows.append([f"{model} (all folds)", "oof", "-", *score_cells(entry["oof"]), entry["oof"].get("n", "-")])
        if entry.get("dev_untrained"):
            rows.append([f"{model} (untrained)", "dev", "-", *score_cells(entry["dev_untrained"]),
                         entry["dev_untrained"].get("n", "-")])
        lines += ["", "Scores:", "", table(["unit", "split", "epoch", *SCORE_HEADER, "n"], rows) if rows
                  else "No scores (the experiment was not scored)."]
    return "\n".join(lines)


TOP_TRIALS = 5


def comparison_section(record: ExperimentRecord) -> str:
    """The models side by side (the seed's comparison tables): speed relative to the
    fastest, how far training brought the loss down, gradient norms, trainable parameters."""
    rows = {model: _model_comparison([u for u in record.units if u.model == model and u.done])
            for model in record.models}
    rates = [r["samples_per_s"] for r in rows.values() if r["samples_per_s"]]
    fastest = max(rates) if rates else None
    body = []
    for model, r in rows.items():
        sps = r["samples_per_s"]
        body.append([model, r["units"], f2(r["train_s"]) if r["units"] else "-", "-" if sps is None else f"{sps:.2f}",
                     "-" if sps is None else f"{fastest / sps:.2f}",
                     "-" if r["loss_reduction"] is None else f"{r['loss_reduction']:.1f}",
                     "-" if r["grad_min"] is None else f"{r['grad_min']:.3f} – {r['grad_max']:.3f}",
                     "-" if r["grad_mean"] is None else f"{r['grad_mean']:.3f}", r["params"]])
    return "\n".join([
        "## Models compared", "",
        "Over each model's finished units: training s = their training seconds together; samples/s = training "
        "examples x epochs trained / training seconds, all units together; x fastest = the fastest model's "
        "samples/s / this model's (1.00: the fastest); loss reduction % = (first - last logged training loss) "
        "/ first, the mean over units; grad norm over every logged training step; trainable parameters of one "
        "unit and their share of all its parameters (unit.json).", "",
        table(["model", "units", "training s", "samples/s", "x fastest", "loss reduction %", "grad norm min – max",
               "grad norm mean", "trainable params"], body)])


def _model_comparison(units: list[UnitRecord]) -> dict:
    seconds = sum(u.info.get("train_s") or 0.0 for u in units)
    examples = sum(u.samples_per_s * u.info["train_s"] for u in units if u.samples_per_s is not None)
    reductions = []
    for unit in units:
        first, last = _first_last(unit.train_rows, "loss")
        if first:
            reductions.append(100.0 * (first - last) / first)
    norms = pd.concat([u.train_rows["grad_norm"] for u in units if "grad_norm" in u.train_rows], ignore_index=True) \
        if any("grad_norm" in u.train_rows for u in units) else pd.Series(dtype=float)
    norms = norms.dropna()
    trainable = next((u.info for u in units if u.info.get("trainable_params") is not None), None)
    params = "-" if trainable is None else (
        f"{trainable['trainable_params']:,} ({100.0 * trainable['trainable_params'] / trainable['total_params']:.2f} %)"
        if trainable.get("total_params") else f"{trainable['trainable_params']:,}")
    return {"units": len(units), "train_s": seconds, "samples_per_s": examples / seconds if seconds and examples else None,
            "loss_reduction": sum(reductions) / len(reductions) if reductions else None,
            "grad_min": norms.min() if len(norms) else None, "grad_max": norms.max() if len(norms) else None,
            "grad_mean": norms.mean() if len(norms) else None, "params": params}


def ensemble_section(record: ExperimentRecord) -> str:
    ensembles = record.scores.get("ensembles", {})
    lines = ["## Ensembles, TTA and augmentation against the best single unit", ""]
    final = record.scores.get("final")
    if not ensembles:
        return "\n".join(lines + ["No ensemble was evaluated."] + (["", _final_part(final)] if final else []))
    best = best_single_unit(record)
    best_result = next(iter(ensembles.values()))["best_single"]
    chosen = None if final else record.scores.get("ensemble_strategy")  # finalized: the submission is below
    rows = [[f"best single unit {best}", *score_cells(best_result.get("oof")), *score_cells(best_result.get("dev")),
             f2(0.0)]]
    for strategy, result in ensembles.items():
        delta = None
        if result.get("dev") and result.get("best_single", {}).get("dev"):
            delta = result["dev"]["competition_score"] - result["best_single"]["dev"]["competition_score"]
        label = f"ensemble {strategy}" + (" (submission)" if strategy == chosen else "")
        rows.append([label, *score_cells(result.get("oof")), *score_cells(result.get("dev")),
                     ("+" if delta and delta > 0 else "") + f2(delta)])
    how = ("its OOF score (its own held-out fold); ensembles' OOF is over all training dialogues"
           if chosen_by(best_result) == "oof" else "its dev score (no unit has out-of-fold summaries)")
    lines += [f"The best single unit is chosen by {how}. Δ = dev competition score minus the best single unit's.",
              "",
              table(["selection", *[f"OOF {h}" for h in SCORE_HEADER], *[f"dev {h}" for h in SCORE_HEADER],
                     "dev Δ"], rows)]
    auto = (ensembles.get("auto") or {}).get("auto")
    if auto and not final:
        lines += ["", _auto_part(auto)]
    if final:
        lines += ["", _final_part(final)]
    stacking = ensembles.get("stacking", {}).get("stacking", {})
    importances = stacking.get("feature_importances") or {}
    if importances:
        top = sorted(importances.items(), key=lambda kv: -kv[1])[:6]
        lines += ["", "Stacking meta-model, largest feature importances: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in top) + "."]
    lines += ["", _tta_part(record), "", _augmentation_part(record)]
    return "\n".join(lines)


def _auto_part(auto: dict) -> str:
    """What `auto` compared, on which dialogues, what it chose and why."""
    scores, gains = auto.get("scores") or {}, auto.get("gains") or {}
    level = round((auto.get("bootstrap") or {}).get("level", 0.95) * 100)
    rows = []
    for option, value in scores.items():
        gain = gains.get(option)
        label = f"best single unit {auto.get('unit')}" if option == "single_unit" else f"ensemble {option}"
        if option == auto.get("chosen"):
            label += " (chosen)"
        rows.append([label, f2(value), "-" if not gain else f"{gain['gain']:+.2f}",
                     "-" if not gain else f"{gain['interval'][0]:+.2f} to {gain['interval'][1]:+.2f}"])
    stacking = auto.get("stacking") or {}
    meta = (f" Stacking's meta-model, chosen by nested cross-fitting: {stacking['meta_model']}"
            + (" (no fitted meta-model beat consensus by more than its noise: voting's picks)"
               if stacking.get("fallback") else "") + "." if stacking.get("meta_model") else "")
    weights = (auto.get("weighted_avg") or {}).get("weights")
    fitted = (" weighted_avg's weights, fit on the OOF candidates: "
              + ", ".join(f"{m} {w:g}" for m, w in weights.items()) + "." if weights else "")
    return "\n".join([
        f"`auto` compares the best single unit and each ensemble by cross-fitted out-of-fold competition score on "
        f"the same {auto.get('dialogues')} dialogues (those {auto.get('unit')} held out); Δ = gain over the unit, "
        f"with a {level}% bootstrap interval over those dialogues.{meta}{fitted}", "",
        table(["option", "OOF competition score", "Δ", f"{level}% interval"], rows), "",
        f"Chosen: {auto.get('chosen')}: {auto.get('reason')}."])


def _final_part(final: dict) -> str:
    """The submission `raysum finalize` built: what was chosen, from where, and its scores
    next to the best single unit among its candidates."""
    weights = final.get("weights") or {}
    decodings = final.get("decodings") or {}
    choice = f"ensemble {final.get('strategy')}" + (
        " (" + ", ".join(f"{m} {w:g}" for m, w in weights.items()) + ")" if weights else "")
    rows = [["final choice (submission)", *score_cells(final.get("oof")), *score_cells(final.get("dev"))]]
    best = final.get("best_single") or {}
    if best:
        rows.append([f"best single unit {best.get('unit')} (same decodings)", *score_cells(best.get("oof")),
                     *score_cells(best.get("dev"))])
    default = final.get("default") or {}
    if default:
        rows.append([f"ensemble {default.get('strategy')}, the models' own decoding (the run's submission)",
                     *score_cells(default.get("oof")), *score_cells(default.get("dev"))])
    lines = [f"Submission by `raysum finalize`: {choice}; decoding "
             + ", ".join(f"{m} {d.get('label')} {d.get('settings')}" for m, d in decodings.items()) + ".", "",
             *(f"- {part}: from {source}" for part, source in (final.get("from") or {}).items()),
             *(f"- generated for test by the saved units: {item}" for item in final.get("generated") or []), "",
             table(["selection", *[f"OOF {h}" for h in SCORE_HEADER], *[f"dev {h}" for h in SCORE_HEADER]], rows)]
    if final.get("auto"):
        lines += ["", _auto_part(final["auto"])]
    return "\n".join(lines)


def _tta_part(record: ExperimentRecord) -> str:
    candidates = record.candidates
    if candidates is None or not record.setting("use_tta"):
        return "TTA: off (use_tta false)."
    from raysum.metrics import score

    refs = record.references("dev")
    dev = candidates[(candidates["split"] == "dev") & candidates["fname"].isin(refs)]
    rows = []
    for (model, tta), group in dev.groupby(["model", "tta"], sort=True):
        result = score(group["text"].tolist(), [refs[f] for f in group["fname"]], record.tokenizer)
        rows.append([model, tta, *score_cells(result), result["n"]])
    return "\n".join([f"TTA ({', '.join(record.setting('tta_strategies'))}, {record.setting('tta_num_aug')} "
                      "variant(s) each): dev scores of each model's candidates per input variant, all folds' "
                      f"units together (`none` = the original dialogue), scored here from candidates.parquet "
                      f"with {record.tokenizer} tokens as scores.json is.", "",
                      table(["model", "input variant", *SCORE_HEADER, "summaries"], rows)])


def _augmentation_part(record: ExperimentRecord) -> str:
    if not record.setting("use_augmentation"):
        return "Augmentation: off (use_augmentation false)."
    rows = []
    for name, entry in record.scores.get("units", {}).items():
        aug = entry.get("augmentation") or {}
        rows.append([name, aug.get("source_rows", "-"), aug.get("augmented_rows", "-"),
                     f2((entry.get("dev") or {}).get("competition_score"))])
    return "\n".join([f"Augmentation ({', '.join(record.setting('augmentation_methods'))}, ratio "
                      f"{record.setting('augmentation_ratio')}), training part of each fold only:", "",
                      table(["unit", "training rows", "augmented rows", "dev competition_score"], rows)])


def tune_section(record: ExperimentRecord) -> str:
    """The experiment's Tune searches: trials, the best trial, parameter importances; an
    empty string where there is none."""
    searches, problem = record.searches
    if not searches and not problem:
        return ""
    lines = ["## Tune", ""]
    if problem:
        return "\n".join(lines + [f"The searches could not be read back: {problem}"])
    lines.append(f"{len(searches)} search(es) under `{record.experiment.tune_dir.name}/`; `raysum analyze "
                 f"{record.path}` writes `analysis/` (trials.csv, best_config.yaml, plots) and `raysum finalize "
                 f"{record.path} --config {record.path}/analysis/best_config.yaml` applies a stage-2 search's best.")
    for search in searches:
        lines += ["", *_search_part(record, search)]
    return "\n".join(lines)


def _search_part(record: ExperimentRecord, search) -> list[str]:
    from raysum.tune.analysis import importances, param_columns

    trials, objective = search.trials, search.objective
    done = trials[trials[objective.metric].notna()]
    lines = [f"### {search.run.name} ({search.kind} search)", "",
             f"{len(trials)} trial(s), {len(done)} reported {objective.metric} ({objective.mode}imised)."]
    best = search.best()
    if best is None:
        return lines
    params = param_columns(trials)
    settings = ", ".join(f"{p[len('param/'):]} = {_param(best[p])}" for p in params)
    reported = f", {objective.reported_label} {f4(best[objective.reported])}" \
        if objective.reported and pd.notna(best.get(objective.reported)) else ""
    lines += ["", f"Best trial #{best['trial']}: {settings}; {objective.label} {f4(best[objective.metric])}{reported}."]
    ranked = done.sort_values(objective.metric, ascending=objective.mode == "min", kind="stable").head(TOP_TRIALS)
    scores = [(objective.label, objective.metric)] + ([(objective.reported_label, objective.reported)]
                                                      if objective.reported else [])
    lines += ["", f"The {len(ranked)} best trial(s):", "",
              table(["trial", *(p[len("param/"):] for p in params), *(label for label, _ in scores), "status"],
                    [[row["trial"], *(_param(row[p]) for p in params), *(f4(row[key]) for _, key in scores),
                      row["status"]] for _, row in ranked.iterrows()])]
    try:
        shares = importances(trials, objective)
    except (ValueError, RuntimeError) as exc:  # too few distinct trials for fANOVA
        shares, why = {}, f"not computable ({exc})"
    else:
        why = "no parameter varied"
    lines += ["", "Parameter importance (Optuna fANOVA, share of the objective's variance): "
              + (", ".join(f"{name} {value:.3f}" for name, value in shares.items()) if shares else why) + "."]
    suffix = "" if not search.kind.startswith("training ") or len(record.searches[0]) == 1 \
        else f"_{search.kind.split(' ', 1)[1]}"
    figure = record.experiment.analysis_dir / f"param_importance{suffix}.png"
    if figure.is_file():
        lines += ["", f"![Parameter importance]({figure.parent.name}/{figure.name})"]
    return lines


def _param(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plots_section(record: ExperimentRecord, plots: list[Path] | None) -> str:
    lines = ["## Plots", ""]
    files = {p.name for p in plots or []}
    if not files:
        return "\n".join(lines + ["No plots: run with `--save_visualizations`, or `raysum report "
                                  f"{record.path}` to write them into `{PLOTS_DIR}/`."])
    for plot in PLOTS.values():
        if plot.file in files:
            lines += [f"![{plot.caption}]({PLOTS_DIR}/{plot.file})", "", f"*{plot.caption}.*", ""]
    return "\n".join(lines).rstrip()


def checks_section(results) -> str:
    lines = ["## Checks", "", "Computed from the files by raysum's registered checks "
             "(`raysum/report/_checks.py`); a check with no finding is listed as passed.", ""]
    for check, findings in results:
        if findings:
            lines.append(f"- **{check.title}** ({check.name}):")
            lines += [f"  - {f}" for f in findings]
            if check.advice:
                lines.append(f"  - why it matters: {check.advice}")
        else:
            lines.append(f"- {check.title} ({check.name}): no finding")
    return "\n".join(lines)


SECTIONS: list[Callable[[ExperimentRecord], str]] = [
    command_section, config_section, data_section, timeline_section, results_section, comparison_section,
    ensemble_section, tune_section,
]


def render_markdown(record: ExperimentRecord, plots: list[Path] | None) -> str:
    checks = run_checks(record)
    findings = sum(len(f) for _, f in checks)
    body = [text for text in (section(record) for section in SECTIONS) if text]
    body += [plots_section(record, plots), checks_section(checks)]
    # The header is rendered last: it lists what reading the files left out, sections included.
    return "\n\n".join([header_section(record, findings), *body]) + "\n"
