"""After the units: the candidates table, Korean ROUGE per unit and model, the submission.

Per-unit scoring happens in the driver (kiwipiepy is not needed on GPU workers); the
ensembles, the heavy part, run as the ensemble task (``raysum.launch.ensemble_task``) with
their own CPUs, and the driver writes what the task returns.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from raysum.config.resolve import ResolvedConfig
from raysum.errors import DataError, RaysumError
from raysum.experiment import Experiment, layout, unit_selection, write_parquet
from raysum.experiment.candidates import DECODING_COLUMN as DECODING, normalize
from raysum.generation.decodings import default_decoding
from raysum.pipeline._experiment import Unit
from raysum.pipeline._variants import map_back_labels

KEYS = ("rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score", "n")


def collect_candidates(path: Path, units: list[Unit]) -> pd.DataFrame:
    """Every unit's generated summaries in one table, `candidates.parquet`: every decoding
    setting's (the `decoding` column; a unit from before it had one generated d0 only)."""
    exp = Experiment(path)
    frames = []
    for unit in units:
        files = exp.unit(unit.model, unit.fold)
        if not files.predictions_file.is_file():
            raise RaysumError(f"unit {unit.name} has no predictions ({files.predictions_file})")
        frames.append(files.predictions())
    candidates = normalize(pd.concat(frames, ignore_index=True), exp.units_dir)
    label_maps = exp.label_maps()
    if label_maps is not None:
        candidates = map_back_labels(candidates, label_maps)
    exp.write_candidates(candidates)
    return candidates


def _score(rows: pd.DataFrame, refs: dict[str, list[str]]) -> dict | None:
    from raysum.metrics import score

    rows = rows[rows["fname"].isin(refs)]
    if rows.empty:
        return None
    result = score(rows["text"].tolist(), [refs[f] for f in rows["fname"]])
    return {k: result[k] for k in KEYS}


def score_experiment(path: Path, cfg: ResolvedConfig, units: list[Unit], candidates: pd.DataFrame,
                     notes: list[str] | None = None) -> dict:
    """Per unit: OOF, dev (and test where it has references); per model: all folds' OOF
    together, and the untrained model's dev score; all with the models' own decoding
    settings (d0); `selection`: the epoch whose weights the unit kept (select_best). Units
    with extra decoding settings get `decodings`: each label's settings and OOF/dev scores. Written to `scores.json`. What was left out (a damaged
    baseline) goes into `notes`."""
    exp = Experiment(path)
    if notes is not None:
        exp.notes = notes
    refs = exp.references()
    plain = default_decoding(candidates[candidates["tta"] == "none"])
    scores: dict = {"tokenizer": "kiwi", "units": {}, "models": {}}
    sample = eval_sample_info(cfg, candidates)
    if sample:
        scores["eval_sample"] = sample
    augmentation = exp.augmentation()
    for unit in units:
        rows = plain[(plain["model"] == unit.model) & _fold_mask(plain, unit.fold)]
        entry: dict = {"model": unit.model, "fold": unit.fold}
        for split in ("oof", "dev", "test"):
            result = _score(rows[rows["split"] == split], refs[split])
            if result:
                entry[split] = result
        meta = exp.unit(unit.model, unit.fold).info()
        if meta:
            entry["timing"] = {k: meta.get(k) for k in ("train_s", "generate_s", "train_samples", "steps")}
            entry["node_id"] = meta.get("node_id")
            if unit_selection(meta):  # the epoch whose weights made these summaries
                entry["selection"] = unit_selection(meta)
        if unit.fold_label in augmentation:
            entry["augmentation"] = augmentation[unit.fold_label]
        decodings = _decoding_scores(candidates, unit, meta.get("decodings") if meta else None, refs)
        if decodings:
            entry["decodings"] = decodings
        scores["units"][unit.name] = entry
    for model in cfg.models:
        rows = plain[(plain["model"] == model) & (plain["split"] == "oof")]
        entry = {"oof": _score(rows, refs["oof"])} if not rows.empty else {}
        baseline = _baseline(exp, model, units, refs["dev"])
        if baseline:
            entry["dev_untrained"] = baseline
        scores["models"][model] = entry
    exp.write_scores(scores)
    return scores


def eval_sample_info(cfg: ResolvedConfig, candidates: pd.DataFrame) -> dict | None:
    """Under max_eval_samples: the cap and how many OOF and dev dialogues the scores are over."""
    cap = cfg.experiment.max_eval_samples
    if cap is None:
        return None
    count = {split: int(candidates.loc[candidates["split"] == split, "fname"].nunique()) for split in ("oof", "dev")}
    return {"max_eval_samples": cap, "seed": cfg.experiment.seed, "oof_dialogues": count["oof"],
            "dev_dialogues": count["dev"]}


def eval_sample_text(sample: dict | None) -> str | None:
    """One sentence saying the OOF and dev scores are on a sample (None when they are not)."""
    if not sample:
        return None
    return (f"OOF and dev scores are on a seeded sample of at most {sample['max_eval_samples']} dialogues per unit "
            f"(max_eval_samples): {sample['oof_dialogues']:,} OOF and {sample['dev_dialogues']:,} dev dialogues; "
            "test summaries cover every test dialogue")


def stacking_too_small(cfg: ResolvedConfig, candidates: pd.DataFrame, training_dialogues: int) -> str | None:
    """Why stacking cannot learn from a capped OOF sample (None: it can, OOF is not capped, or
    the cap left every training dialogue in it, as an uncapped run would)."""
    from raysum.ensemble.stacking import MIN_OOF_DIALOGUES

    sample = eval_sample_info(cfg, candidates)
    if not sample or sample["oof_dialogues"] >= min(MIN_OOF_DIALOGUES, training_dialogues):
        return None
    return (f"stacking needs at least {MIN_OOF_DIALOGUES} out-of-fold dialogues; max_eval_samples="
            f"{sample['max_eval_samples']} left {sample['oof_dialogues']}")


def _decoding_scores(candidates: pd.DataFrame, unit: Unit, settings: dict | None, refs: dict) -> dict:
    """{label: {settings, oof, dev}} of a unit that generated with several decoding settings."""
    rows = candidates[(candidates["model"] == unit.model) & _fold_mask(candidates, unit.fold)
                      & (candidates["tta"] == "none")]
    labels = sorted(rows[DECODING].unique()) if DECODING in rows.columns else []
    if len(labels) < 2:
        return {}
    out = {}
    for label in labels:
        mine = rows[rows[DECODING] == label]
        entry = {"settings": (settings or {}).get(label)}
        for split in ("oof", "dev"):
            result = _score(mine[mine["split"] == split], refs[split])
            if result:
                entry[split] = result
        out[label] = entry
    return out


def _fold_mask(df: pd.DataFrame, fold: int | None) -> pd.Series:
    return df["fold"].isna() if fold is None else df["fold"] == fold


def _baseline(exp: Experiment, model: str, units: list[Unit], dev_refs: dict) -> dict | None:
    for unit in units:
        baseline = exp.unit(model, unit.fold).baseline() if unit.model == model else None
        if baseline is not None:
            return _score(baseline.query("split == 'dev'"), dev_refs)
    return None


def ensemble_weights(cfg: ResolvedConfig) -> dict[str, float] | None:
    weights = cfg.experiment.ensemble_weights
    return dict(zip(cfg.models, weights)) if weights else None


def run_ensembles(path: Path, cfg: ResolvedConfig, candidates: pd.DataFrame, scores: dict,
                  strategies: list[str] | None = None, *, on_ray: bool = True) -> pd.DataFrame | None:
    """Every ensemble strategy evaluated on OOF and dev next to the best single unit (into
    scores.json), on the candidates of the models' own decoding settings (d0); returns the
    test selections of the configured strategy. ``on_ray``: as the ensemble task, with
    its own CPUs (Ray started); else in this process (``raysum ensemble``, one strategy)."""
    from raysum.ensemble import NEEDS_OOF, STRATEGIES, canonical, ensemble_stage
    from raysum.launch import cluster_nodes, ensemble_cpus, run_ensemble

    own = default_decoding(candidates)
    has_oof = (own["split"] == "oof").any()
    too_small = has_oof and stacking_too_small(cfg, own, len(Experiment(path).references()["oof"])) is not None
    chosen = canonical(cfg.experiment.ensemble_strategy)
    strategies = strategies or [s for s in STRATEGIES if (has_oof or s not in NEEDS_OOF)
                                and not (too_small and s == "stacking")]
    request = {"experiment": str(path), "strategies": strategies, "submit": chosen,
               "weights": ensemble_weights(cfg), "seed": cfg.experiment.seed}
    if on_ray:
        result = run_ensemble({**request, "cpus": ensemble_cpus(cfg.experiment.ensemble_cpus, cluster_nodes())})
        scores["ensemble_task"] = result["task"]
    else:
        result = ensemble_stage(path, strategies, submit=chosen, weights=request["weights"], seed=request["seed"])
    ensembles = scores.setdefault("ensembles", {})
    for strategy, entry in result["ensembles"].items():
        ensembles[strategy] = entry
        if strategy == "weighted_avg" and request["weights"]:
            entry["weights"] = request["weights"]
    scores["ensemble_strategy"] = chosen
    Experiment(path).write_scores(scores)
    return result["test"]


def write_submission(path: Path, cfg: ResolvedConfig, candidates: pd.DataFrame, scores: dict,
                     force: bool = False) -> tuple[str, Path | None]:
    """submission.csv from the configured ensemble's test selections (the ensemble task): why
    it was chosen, and where a previous, different submission was kept (None: none, or ``force``)."""
    from raysum.ensemble import CHOSEN_BY_TEXT, chosen_by

    exp = Experiment(path)
    selections = run_ensembles(path, cfg, candidates, scores)
    test = exp.read_input("test")
    strategy = scores["ensemble_strategy"]
    submission = _selection_frame(selections, test["fname"].tolist(), strategy)
    kept = exp.write_submission(submission, force=force)
    result = scores["ensembles"][strategy]
    best = result["best_single"]
    why = (f"ensemble {strategy}: dev competition_score {result['dev']['competition_score']:.2f} vs best single unit "
           f"{best['unit']} (chosen by {CHOSEN_BY_TEXT[chosen_by(best)]}) {best['dev']['competition_score']:.2f}")
    scores["submission"] = {"strategy": strategy, "reason": why}
    if "auto" in result:  # what auto chose among the single unit and the ensembles, and why
        why = f"{why}; auto: {result['auto']['reason']}"
        scores["submission"].update(reason=why, chosen=result["auto"]["chosen"])
    exp.write_scores(scores)
    return why, kept


def _selection_frame(selections: pd.DataFrame, fnames: list[str], strategy: str) -> pd.DataFrame:
    rows = selections[selections["split"] == "test"]
    by_name = dict(zip(rows["fname"], rows["text"]))
    missing = [f for f in fnames if f not in by_name]
    if missing:
        raise RaysumError(f"ensemble {strategy} selected no test summary for {len(missing)} fname(s): {missing[:5]}")
    return pd.DataFrame({"fname": fnames, "summary": [by_name[f] for f in fnames]})


def predict_new_file(path: Path, test_file: str, output: str | None, ray_address: str | None,
                     console: Console, force: bool = False) -> Path:
    """Every trained unit generates for `test_file`; the submission uses the experiment's chosen
    unit. A previous, different submission at the target is kept beside it unless `force`."""
    from raysum.data import load_dataset, parse_columns, parse_split_map
    from raysum.launch import init_ray, predict_with_units
    from raysum.pipeline._experiment import plan_units
    from raysum.pipeline._variants import tta_predict_paths, write_tta_inputs

    exp = Experiment(path)
    cfg = exp.resolved()
    if not exp.has_scores():
        raise RaysumError(f"{path} has no {layout.SCORES}: finish it first (raysum train --resume {path})")
    scores = exp.scores()
    # The experiment's data settings say which split and columns its data has.
    split_map, columns = parse_split_map(cfg.experiment.data_split_map)[0], parse_columns(cfg.experiment.data_columns)[0]
    test = load_dataset(test_file, split=split_map["test"], columns=columns)
    if test.empty:
        raise DataError("no dialogues", test_file)
    units = [u for u in plan_units(cfg) if exp.unit(u.model, u.fold).done()]
    out_dir = exp.prediction_dir(Path(test_file).stem)
    out_dir.mkdir(parents=True, exist_ok=True)
    input_path = write_parquet(out_dir / layout.PREDICT_INPUT, test[["fname", "dialogue"]])
    init_ray(ray_address or cfg.experiment.ray_address, cfg.experiment.num_cpus)
    if cfg.experiment.use_tta:
        write_tta_inputs(exp, cfg, {"test": test}, folder=out_dir)
    predict = {"test": str(input_path)}
    predict.update({k: v for k, v in tta_predict_paths(exp, cfg, None, folder=out_dir).items()
                    if k.startswith("test|")})
    jobs = [(u.name, exp.unit(u.model, u.fold).path, cfg.models[u.model], u.fold) for u in units]
    candidates = predict_with_units(jobs, predict, out_dir)
    console.print(f"{len(jobs)} unit(s) generated for {input_path.name}")
    candidates = pd.concat([_oof_candidates(exp), candidates], ignore_index=True)
    if cfg.experiment.use_tta:
        candidates = map_back_labels(candidates, exp.label_maps(out_dir))
    exp.write_candidates(candidates[candidates["split"] == "test"], out_dir / layout.CANDIDATES)
    selections = _select_for_new_file(exp, cfg, candidates, test, scores["ensemble_strategy"])
    submission = _selection_frame(selections, test["fname"].tolist(), scores["ensemble_strategy"])
    target = Path(output) if output else out_dir / layout.SUBMISSION
    kept = exp.write_submission(submission, target, force=force)
    console.print(f"[bold green]submission[/] {target}: {len(submission)} summaries, "
                  f"ensemble {scores['ensemble_strategy']} of {len(units)} unit(s)")
    if kept:
        console.print(f"the previous {target.name} is kept as {kept} (--force replaces it without keeping)")
    return target


def _oof_candidates(exp: Experiment) -> pd.DataFrame:
    """The experiment's out-of-fold candidates (the models' own decoding settings): what
    stacking's meta-model learns from."""
    candidates = default_decoding(exp.candidates())
    return candidates[candidates["split"] == "oof"]


def _select_for_new_file(exp: Experiment, cfg: ResolvedConfig, candidates: pd.DataFrame, test: pd.DataFrame,
                         strategy: str) -> pd.DataFrame:
    from raysum.ensemble import prepare, select

    # The new file is this run's test split; its fnames may also name training dialogues.
    dialogues = {**exp.dialogues(), "test": dict(zip(test["fname"], test["dialogue"]))}
    prepared = prepare(candidates, dialogues)
    weights = ensemble_weights(cfg) if strategy == "weighted_avg" else None
    return select(prepared, strategy, weights=weights, references=exp.references()["oof"], seed=cfg.experiment.seed)
