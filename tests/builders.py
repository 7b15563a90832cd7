"""One builder for a fake experiment directory: tests hand it what the pipeline would have
produced and it writes it through raysum's own writer (raysum.experiment.Experiment), so
a fake directory has exactly the layout the stages read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

from raysum.experiment import Experiment, layout, write_json

MODELS = ["tiny-bart", "tiny-llama"]
WORDS = "사람 내일 오후 회의 약속 친구 파티 준비 여행 계획 가방 기차 음식 주문 영화 표".split()


def write_experiment(path: Path, *, config_tree: dict, inputs: dict[str, pd.DataFrame],
                     candidates: pd.DataFrame | None = None, scores: dict | None = None, run: dict | None = None,
                     folds: pd.DataFrame | None = None, augmentation: dict | None = None,
                     units: dict[tuple[str, str], tuple[dict, list[dict]]] | None = None) -> Path:
    """``inputs``: split -> frame (fname, dialogue, references[, topic]); ``units``:
    (model, fold label) -> (unit.json content, metrics rows). Returns ``path``."""
    exp = Experiment(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / layout.CONFIG_JSON, config_tree)
    if run is not None:
        exp.write_run_info(run)
    for split, frame in inputs.items():
        exp.write_input(split, frame)
    if folds is not None:
        exp.write_folds(folds)
    if augmentation is not None:
        exp.write_augmentation(augmentation)
    for (model, label), (info, metrics) in (units or {}).items():
        unit = exp.unit(model, label)
        unit.path.mkdir(parents=True, exist_ok=True)
        unit.write_info(info)
        unit.metrics_file.write_text("".join(json.dumps(row) + "\n" for row in metrics), encoding="utf-8")
    if candidates is not None:
        exp.write_candidates(candidates)
    if scores is not None:
        exp.write_scores(scores)
    return path


def _summary(rng, reference, quality):
    words = reference.split()
    kept = [w if rng.random() < quality else rng.choice(WORDS) for w in words]
    return " ".join(kept)


def finished_experiment(path: Path, decoding_settings: list[dict] | None = None, test_decodings: bool = True) -> Path:
    """A finished 2 models x 2 folds experiment (fake summaries of two qualities): 16 train
    (OOF), 6 dev and 4 test dialogues, candidates, empty scores. With ``decoding_settings``
    (every model's extra settings d1, d2, ...), candidates of each extra label too, of
    another quality: OOF and dev, and test unless not ``test_decodings``."""
    from raysum.config.resolve import resolve

    rng = random.Random(0)
    splits = {"train": 16, "dev": 6, "test": 4}
    frames, rows = {}, []
    quality = {"tiny-bart": 0.85, "tiny-llama": 0.5}
    for split, n in splits.items():
        fnames = [f"{split}_{i}" for i in range(n)]
        refs = [[" ".join(rng.choice(WORDS) for _ in range(8))] for _ in fnames]
        frames[split] = pd.DataFrame({"fname": fnames, "dialogue": ["#Person1#: " + r[0] for r in refs],
                                      "references": refs if split != "test" else [[] for _ in fnames]})
        for i, (fname, ref) in enumerate(zip(fnames, refs)):
            for model in MODELS:
                folds = [i % 2] if split == "train" else [0, 1]
                for fold in folds:
                    rows.append({"split": "oof" if split == "train" else split, "fname": fname, "model": model,
                                 "fold": fold, "tta": "none", "text": _summary(rng, ref[0], quality[model]),
                                 "n_tokens": 8, "logprob": -rng.random()})
    candidates = pd.DataFrame(rows)
    if decoding_settings:
        candidates["decoding"] = "d0"
        extra = _extra_decodings(candidates, frames, decoding_settings, test_decodings)
        candidates = pd.concat([candidates, extra], ignore_index=True)
    candidates["fold"] = candidates["fold"].astype("Int64")
    settings = {"decoding_settings": decoding_settings} if decoding_settings else {}
    cfg = resolve({"models": MODELS, "k_folds": 2, "mode": "full", "seed": 7, **settings})
    write_experiment(path, config_tree=cfg.tree(), inputs=frames, candidates=candidates, scores={})
    return path


def _extra_decodings(candidates: pd.DataFrame, frames: dict, settings: list[dict], test: bool) -> pd.DataFrame:
    """Rows of the labels d1, d2, ...: the d0 rows' dialogues, summaries of another quality."""
    rng = random.Random(1)
    refs = {("oof" if split == "train" else split, f): r[0] if len(r) else " ".join(rng.choice(WORDS) for _ in range(8))
            for split, frame in frames.items() for f, r in zip(frame["fname"], frame["references"])}
    out = []
    for number, _ in enumerate(settings, start=1):
        rows = candidates[candidates["split"].isin(["oof", "dev", "test"] if test else ["oof", "dev"])].copy()
        quality = {"tiny-bart": 0.6, "tiny-llama": 0.9} if number == 1 else {"tiny-bart": 0.4, "tiny-llama": 0.4}
        rows["text"] = [_summary(rng, refs[(s, f)], quality[m]) for s, f, m in zip(rows["split"], rows["fname"],
                                                                                    rows["model"])]
        rows["decoding"] = f"d{number}"
        out.append(rows)
    return pd.concat(out, ignore_index=True)


def stage2_best_config(path: Path, rows: list[dict], run_name: str = "decoding_20260101_000000") -> Path:
    """analysis/best_config.yaml as `raysum analyze` writes it for a stage-2 search on
    ``path``'s candidates whose trials are ``rows`` (params, ``oof`` and ``dev`` scores)."""
    from raysum.storage import write_text_atomic
    from raysum.tune.analysis import best_config_yaml

    trials = pd.DataFrame([{"trial": i, **{f"param/{k}": v for k, v in row.items() if k not in ("oof", "dev")},
                            "oof_competition_score": row["oof"], "dev_competition_score": row["dev"]}
                           for i, row in enumerate(rows)])
    text = best_config_yaml(trials, path / "tune" / run_name)
    return write_text_atomic(path / "analysis" / "best_config.yaml", text)
