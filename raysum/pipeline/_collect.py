"""After the units: the candidates table, Korean ROUGE per unit and model, the submission.

Scoring happens here, in the driver (kiwipiepy is not needed on GPU workers).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from rich.console import Console

from raysum.config.resolve import ResolvedConfig
from raysum.errors import DataError, RaysumError
from raysum.generation.decodings import COLUMN as DECODING, DEFAULT as DEFAULT_DECODING, default_decoding
from raysum.pipeline._experiment import Unit
from raysum.pipeline._variants import LABEL_MAPS, map_back_labels

CANDIDATE_COLUMNS = ["split", "fname", "model", "fold", "tta", "decoding", "text", "n_tokens", "logprob"]
KEYS = ("rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score", "n")


def collect_candidates(path: Path, units: list[Unit]) -> pd.DataFrame:
    """Every unit's generated summaries in one table, `candidates.parquet`: every decoding
    setting's (the `decoding` column; a unit from before it had one generated d0 only)."""
    frames = []
    for unit in units:
        file = path / "units" / unit.model / unit.fold_label / "predictions.parquet"
        if not file.is_file():
            raise RaysumError(f"unit {unit.name} has no predictions ({file})")
        frame = pd.read_parquet(file)
        if DECODING not in frame.columns:
            frame[DECODING] = DEFAULT_DECODING
        frames.append(frame)
    candidates = pd.concat(frames, ignore_index=True)[CANDIDATE_COLUMNS]
    candidates["fold"] = candidates["fold"].astype("Int64")
    maps_file = path / "inputs" / LABEL_MAPS
    if maps_file.is_file():
        candidates = map_back_labels(candidates, pd.read_parquet(maps_file))
    candidates.to_parquet(path / "candidates.parquet", index=False)
    return candidates


def _references(path: Path) -> dict[str, dict[str, list[str]]]:
    refs = {}
    for split, file in (("oof", "train"), ("dev", "dev"), ("test", "test")):
        df = pd.read_parquet(path / "inputs" / f"{file}.parquet")
        refs[split] = {f: list(r) for f, r in zip(df["fname"], df["references"]) if len(r)}
    return refs


def _score(rows: pd.DataFrame, refs: dict[str, list[str]]) -> dict | None:
    from raysum.metrics import score

    rows = rows[rows["fname"].isin(refs)]
    if rows.empty:
        return None
    result = score(rows["text"].tolist(), [refs[f] for f in rows["fname"]])
    return {k: result[k] for k in KEYS}


def score_experiment(path: Path, cfg: ResolvedConfig, units: list[Unit], candidates: pd.DataFrame) -> dict:
    """Per unit: OOF, dev (and test where it has references); per model: all folds' OOF
    together, and the untrained model's dev score; all with the models' own decoding
    settings (d0). Units with extra decoding settings get `decodings`: each label's
    settings and OOF/dev scores. Written to `scores.json`."""
    refs = _references(path)
    plain = default_decoding(candidates[candidates["tta"] == "none"])
    scores: dict = {"tokenizer": "kiwi", "units": {}, "models": {}}
    aug_file = path / "inputs" / "augmentation.json"
    augmentation = json.loads(aug_file.read_text(encoding="utf-8")) if aug_file.is_file() else {}
    for unit in units:
        rows = plain[(plain["model"] == unit.model) & _fold_mask(plain, unit.fold)]
        entry: dict = {"model": unit.model, "fold": unit.fold}
        for split in ("oof", "dev", "test"):
            result = _score(rows[rows["split"] == split], refs[split])
            if result:
                entry[split] = result
        info = path / "units" / unit.model / unit.fold_label / "unit.json"
        if info.is_file():
            meta = json.loads(info.read_text(encoding="utf-8"))
            entry["timing"] = {k: meta.get(k) for k in ("train_s", "generate_s", "train_samples", "steps")}
            entry["node_id"] = meta.get("node_id")
        if unit.fold_label in augmentation:
            entry["augmentation"] = augmentation[unit.fold_label]
        decodings = _decoding_scores(candidates, unit, meta.get("decodings") if info.is_file() else None, refs)
        if decodings:
            entry["decodings"] = decodings
        scores["units"][unit.name] = entry
    for model in cfg.models:
        rows = plain[(plain["model"] == model) & (plain["split"] == "oof")]
        entry = {"oof": _score(rows, refs["oof"])} if not rows.empty else {}
        baseline = _baseline(path, model, units, refs["dev"])
        if baseline:
            entry["dev_untrained"] = baseline
        scores["models"][model] = entry
    (path / "scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=1), encoding="utf-8")
    return scores


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


def _baseline(path: Path, model: str, units: list[Unit], dev_refs: dict) -> dict | None:
    for unit in units:
        file = path / "units" / model / unit.fold_label / "baseline.parquet"
        if unit.model == model and file.is_file():
            return _score(pd.read_parquet(file).query("split == 'dev'"), dev_refs)
    return None


def _dialogues(path: Path) -> dict[str, str]:
    out = {}
    for file in ("train", "dev", "test"):
        df = pd.read_parquet(path / "inputs" / f"{file}.parquet", columns=["fname", "dialogue"])
        out.update(zip(df["fname"], df["dialogue"]))
    return out


def ensemble_weights(cfg: ResolvedConfig) -> dict[str, float] | None:
    weights = cfg.experiment.ensemble_weights
    return dict(zip(cfg.models, weights)) if weights else None


def run_ensembles(path: Path, cfg: ResolvedConfig, candidates: pd.DataFrame, scores: dict,
                  strategies: list[str] | None = None) -> pd.DataFrame:
    """Every ensemble strategy evaluated on OOF and dev next to the best single unit (into
    scores.json), on the candidates of the models' own decoding settings (d0); returns the
    selections of the configured strategy."""
    from raysum.config.validate import ENSEMBLE_STRATEGIES, canonical_strategy
    from raysum.ensemble import evaluate, prepare

    candidates = default_decoding(candidates)
    refs = _references(path)
    references = {"oof": refs["oof"], "dev": refs["dev"]}
    has_oof = (candidates["split"] == "oof").any()
    chosen = canonical_strategy(cfg.experiment.ensemble_strategy)
    strategies = strategies or [s for s in ENSEMBLE_STRATEGIES if has_oof or s != "stacking"]
    prepared = prepare(candidates, _dialogues(path))
    ensembles, selections = scores.setdefault("ensembles", {}), None
    for strategy in strategies:
        weights = ensemble_weights(cfg) if strategy == "weighted_avg" else None
        result = evaluate(prepared, strategy, weights=weights, references_by_split=references, seed=cfg.experiment.seed)
        ensembles[strategy] = {k: v for k, v in result.items() if k not in ("selections", "strategy")}
        if weights:
            ensembles[strategy]["weights"] = weights
        if strategy == chosen:
            selections = result["selections"]
    scores["ensemble_strategy"] = chosen
    (path / "scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=1), encoding="utf-8")
    return selections


def write_submission(path: Path, cfg: ResolvedConfig, candidates: pd.DataFrame, scores: dict) -> str:
    """submission.csv from the configured ensemble's test selections."""
    selections = run_ensembles(path, cfg, candidates, scores)
    test = pd.read_parquet(path / "inputs" / "test.parquet")
    strategy = scores["ensemble_strategy"]
    submission = _selection_frame(selections, test["fname"].tolist(), strategy)
    submission.to_csv(path / "submission.csv", index=False)
    result = scores["ensembles"][strategy]
    best = result["best_single"]
    why = (f"ensemble {strategy}: dev competition_score {result['dev']['competition_score']:.2f} vs best single unit "
           f"{best['unit']} (chosen by out-of-fold score) {best['dev']['competition_score']:.2f}")
    scores["submission"] = {"strategy": strategy, "reason": why}
    (path / "scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=1), encoding="utf-8")
    return why


def _selection_frame(selections: pd.DataFrame, fnames: list[str], strategy: str) -> pd.DataFrame:
    rows = selections[selections["split"] == "test"]
    by_name = dict(zip(rows["fname"], rows["text"]))
    missing = [f for f in fnames if f not in by_name]
    if missing:
        raise RaysumError(f"ensemble {strategy} selected no test summary for {len(missing)} fname(s): {missing[:5]}")
    return pd.DataFrame({"fname": fnames, "summary": [by_name[f] for f in fnames]})


def predict_new_file(path: Path, test_file: str, output: str | None, ray_address: str | None,
                     console: Console) -> Path:
    """Every trained unit generates for `test_file`; the submission uses the experiment's chosen unit."""
    from raysum.data import load_dataset
    from raysum.pipeline._experiment import load_resolved, plan_units, unit_done
    from raysum.pipeline._ray import init_ray, predict_units
    from raysum.pipeline._variants import write_tta_inputs

    cfg = load_resolved(path)
    scores_file = path / "scores.json"
    if not scores_file.is_file():
        raise RaysumError(f"{path} has no scores.json: finish it first (raysum train --resume {path})")
    scores = json.loads(scores_file.read_text(encoding="utf-8"))
    test = load_dataset(test_file)
    if test.empty:
        raise DataError("no dialogues", test_file)
    units = [u for u in plan_units(cfg) if unit_done(path / "units" / u.model / u.fold_label)]
    out_dir = path / "predictions" / Path(test_file).stem
    out_dir.mkdir(parents=True, exist_ok=True)
    input_path = out_dir / "input.parquet"
    test[["fname", "dialogue"]].to_parquet(input_path, index=False)
    init_ray(ray_address or cfg.experiment.ray_address, cfg.experiment.num_cpus)
    if cfg.experiment.use_tta:
        write_tta_inputs(out_dir, cfg, {"test": test})
    candidates = predict_units(path, cfg, units, input_path, out_dir, console)
    candidates = pd.concat([_oof_candidates(path), candidates], ignore_index=True)
    if cfg.experiment.use_tta:
        candidates = map_back_labels(candidates, pd.read_parquet(out_dir / LABEL_MAPS))
    candidates[candidates["split"] == "test"].to_parquet(out_dir / "candidates.parquet", index=False)
    selections = _select_for_new_file(path, cfg, candidates, test, scores["ensemble_strategy"])
    submission = _selection_frame(selections, test["fname"].tolist(), scores["ensemble_strategy"])
    target = Path(output) if output else out_dir / "submission.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    submission.to_csv(target, index=False)
    console.print(f"[bold green]submission[/] {target}: {len(submission)} summaries, "
                  f"ensemble {scores['ensemble_strategy']} of {len(units)} unit(s)")
    return target


def _oof_candidates(path: Path) -> pd.DataFrame:
    """The experiment's out-of-fold candidates (the models' own decoding settings): what
    stacking's meta-model learns from."""
    candidates = default_decoding(pd.read_parquet(path / "candidates.parquet"))
    return candidates[candidates["split"] == "oof"]


def _select_for_new_file(path: Path, cfg: ResolvedConfig, candidates: pd.DataFrame, test: pd.DataFrame,
                         strategy: str) -> pd.DataFrame:
    from raysum.ensemble import prepare, select

    dialogues = {**_dialogues(path), **dict(zip(test["fname"], test["dialogue"]))}
    prepared = prepare(candidates, dialogues)
    weights = ensemble_weights(cfg) if strategy == "weighted_avg" else None
    return select(prepared, strategy, weights=weights, references=_references(path)["oof"], seed=cfg.experiment.seed)
