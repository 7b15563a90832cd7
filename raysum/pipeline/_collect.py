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
from raysum.pipeline._experiment import Unit

CANDIDATE_COLUMNS = ["split", "fname", "model", "fold", "tta", "text", "n_tokens", "logprob"]
KEYS = ("rouge1", "rouge2", "rougeL", "rouge_sum", "competition_score", "n")


def collect_candidates(path: Path, units: list[Unit]) -> pd.DataFrame:
    """Every unit's generated summaries in one table, `candidates.parquet`."""
    frames = []
    for unit in units:
        file = path / "units" / unit.model / unit.fold_label / "predictions.parquet"
        if not file.is_file():
            raise RaysumError(f"unit {unit.name} has no predictions ({file})")
        frames.append(pd.read_parquet(file))
    candidates = pd.concat(frames, ignore_index=True)[CANDIDATE_COLUMNS]
    candidates["fold"] = candidates["fold"].astype("Int64")
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
    together, and the untrained model's dev score. Written to `scores.json`."""
    refs = _references(path)
    plain = candidates[candidates["tta"] == "none"]
    scores: dict = {"tokenizer": "kiwi", "units": {}, "models": {}}
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


def _fold_mask(df: pd.DataFrame, fold: int | None) -> pd.Series:
    return df["fold"].isna() if fold is None else df["fold"] == fold


def _baseline(path: Path, model: str, units: list[Unit], dev_refs: dict) -> dict | None:
    for unit in units:
        file = path / "units" / model / unit.fold_label / "baseline.parquet"
        if unit.model == model and file.is_file():
            return _score(pd.read_parquet(file).query("split == 'dev'"), dev_refs)
    return None


def choose_unit(scores: dict) -> tuple[str, str]:
    """The unit whose test summaries become the submission, and why."""
    units = scores["units"]
    split = "oof" if any("oof" in u for u in units.values()) else "dev"
    ranked = sorted((u[split]["competition_score"], name) for name, u in units.items() if split in u)
    if not ranked:
        raise RaysumError("no unit has a score to choose the submission by")
    best_score, best = ranked[-1]
    split_text = "out-of-fold" if split == "oof" else "dev"
    return best, (f"best single unit {best} by {split_text} competition_score {best_score:.2f} "
                  "(ensembles are not available yet)")


def write_submission(path: Path, candidates: pd.DataFrame, scores: dict) -> str:
    best, why = choose_unit(scores)
    test = pd.read_parquet(path / "inputs" / "test.parquet")
    submission = _submission_frame(candidates, best, scores["units"][best], test["fname"].tolist())
    submission.to_csv(path / "submission.csv", index=False)
    scores["submission"] = {"unit": best, "reason": why}
    (path / "scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=1), encoding="utf-8")
    return why


def _submission_frame(candidates: pd.DataFrame, unit_name: str, unit: dict, fnames: list[str]) -> pd.DataFrame:
    rows = candidates[(candidates["split"] == "test") & (candidates["model"] == unit["model"])
                      & (candidates["tta"] == "none") & _fold_mask(candidates, unit["fold"])]
    by_name = dict(zip(rows["fname"], rows["text"]))
    missing = [f for f in fnames if f not in by_name]
    if missing:
        raise RaysumError(f"unit {unit_name} has no test summary for {len(missing)} fname(s): {missing[:5]}")
    return pd.DataFrame({"fname": fnames, "summary": [by_name[f] for f in fnames]})


def predict_new_file(path: Path, test_file: str, output: str | None, ray_address: str | None,
                     console: Console) -> Path:
    """Every trained unit generates for `test_file`; the submission uses the experiment's chosen unit."""
    from raysum.data import load_dataset
    from raysum.pipeline._experiment import load_resolved, plan_units, unit_done
    from raysum.pipeline._ray import init_ray
    from raysum.pipeline._ray import predict_units

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
    candidates = predict_units(path, cfg, units, input_path, out_dir, console)
    candidates.to_parquet(out_dir / "candidates.parquet", index=False)
    best = scores["submission"]["unit"]
    submission = _submission_frame(candidates, best, scores["units"][best], test["fname"].tolist())
    target = Path(output) if output else out_dir / "submission.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    submission.to_csv(target, index=False)
    console.print(f"[bold green]submission[/] {target}: {len(submission)} summaries from {best}")
    return target
