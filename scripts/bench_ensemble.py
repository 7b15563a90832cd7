"""Time the ensembles on a competition-sized candidates table.

    .venv/bin/python scripts/bench_ensemble.py               # 499 dev x 12, 800 OOF x 3
    .venv/bin/python scripts/bench_ensemble.py --dev 200 --oof 400 --seed 1

The table is built from the bundled Korean data (raysum/resources/data/train.csv):
the first ``--dev`` dialogues form a dev split with 12 candidates each (3 models x 4
folds), the next ``--oof`` an OOF split with 3 candidates each (one per model, as
k-fold gives). A candidate is the dialogue's summary perturbed like a model output:
words dropped, neighbours swapped, a clause from another summary pasted in, the end cut
off, with a noise level per model (so models differ in quality) and a log-prob that
follows the noise loosely. Prints Kiwi's one-time initialisation (excluded from the
total), then prepare, voting, weighted_avg and stacking (fit + predict) and their
total, then ``evaluate`` of each strategy with its dev score next to the best single
unit and the oracle (the best candidate per dialogue).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from raysum import metrics
from raysum.ensemble import evaluate, prepare, select

TRAIN_CSV = Path(__file__).resolve().parents[1] / "raysum" / "resources" / "data" / "train.csv"
# Per model: (share of words dropped, chance of a pasted clause, chance of a cut end).
MODELS = {"kobart": (0.10, 0.15, 0.10), "llama-3b": (0.20, 0.30, 0.20), "qwen3-4b": (0.30, 0.45, 0.30)}
FOLDS = 4


def perturb(text: str, other: str, noise: tuple[float, float, float], rng: random.Random) -> tuple[str, float]:
    """A plausible model output of ``text``, and how much was changed (0 = nothing)."""
    drop, paste, cut = noise
    words = text.split()
    kept = [w for w in words if rng.random() > drop] or words[:1]
    changed = 1 - len(kept) / len(words)
    if len(kept) > 2:
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    if rng.random() < paste:
        clause = other.split()[: rng.randint(3, 6)]
        kept[rng.randrange(len(kept) + 1) : 0] = clause
        changed += 0.3
    if rng.random() < cut and len(kept) > 6:
        kept = kept[: int(len(kept) * 0.6)]
        changed += 0.3
    return " ".join(kept), changed


def build_table(n_dev: int, n_oof: int, seed: int):
    """(candidates, dialogues, references_by_split) as the pipeline would hand them over."""
    data = pd.read_csv(TRAIN_CSV)
    if n_dev + n_oof > len(data):
        raise SystemExit(f"{TRAIN_CSV.name} has {len(data)} dialogues; ask for at most that many in all")
    rng = random.Random(seed)
    rows, dialogues, references = [], {}, {"dev": {}, "oof": {}}
    summaries = data["summary"].tolist()
    for i, (fname, dialogue, summary) in enumerate(zip(data["fname"], data["dialogue"], summaries)):
        if i >= n_dev + n_oof:
            break
        split = "dev" if i < n_dev else "oof"
        dialogues[fname] = dialogue
        references[split][fname] = [summary]
        for m, (model, noise) in enumerate(MODELS.items()):
            folds = range(FOLDS) if split == "dev" else [i % FOLDS]
            for fold in folds:
                other = summaries[rng.randrange(len(summaries))]
                text, changed = perturb(summary, other, noise, rng)
                logprob = -0.6 - 0.1 * m - changed + rng.gauss(0, 0.3)
                rows.append((split, fname, model, fold, "none", text, len(text), logprob))
    columns = ["split", "fname", "model", "fold", "tta", "text", "n_tokens", "logprob"]
    candidates = pd.DataFrame(rows, columns=columns).astype({"fold": "Int64"})
    return candidates, dialogues, references


def _timed(label: str, fn, timings: dict):
    start = time.perf_counter()
    out = fn()
    timings[label] = time.perf_counter() - start
    print(f"  {label:<28} {timings[label]:7.2f} s", flush=True)
    return out


def _oracle(prepared, split: str) -> float:
    mask = prepared.split_mask(split)
    quality = pd.Series(prepared.reference_rouge[mask].mean(axis=1), index=prepared.pool_of[mask])
    return float(quality.groupby(level=0).max().mean() * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", type=int, default=499, help="dev dialogues (12 candidates each)")
    parser.add_argument("--oof", type=int, default=800, help="OOF dialogues (3 candidates each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    candidates, dialogues, references = build_table(args.dev, args.oof, args.seed)
    counts = candidates.groupby("split").size().to_dict()
    print(f"candidates: {counts} ({len(candidates)} in all), {len(dialogues)} dialogues")
    timings: dict[str, float] = {}
    metrics.clear_cache()
    _timed("kiwi init (excluded)", lambda: metrics.tokenize("초기화"), timings)
    prepared = _timed("prepare", lambda: prepare(candidates, dialogues), timings)
    _timed("voting", lambda: select(prepared, "voting"), timings)
    weights = dict.fromkeys(MODELS, 1.0)
    _timed("weighted_avg", lambda: select(prepared, "weighted_avg", weights=weights), timings)
    _timed("stacking (fit + predict)", lambda: select(prepared, "stacking", references=references["oof"]), timings)
    total = sum(v for k, v in timings.items() if not k.startswith("kiwi"))
    print(f"  {'total':<28} {total:7.2f} s  (budget 10 s)")

    print("evaluate (scores every selection and every unit; not in the total):")
    results = {}
    for strategy in ("voting", "weighted_avg", "stacking"):
        results[strategy] = _timed(
            strategy, lambda s=strategy: evaluate(prepared, s, references_by_split=references), timings
        )
    best = results["voting"]["best_single"]
    scored = prepare(candidates, dialogues, references_by_split=references)
    print(f"dev competition_score (oracle {_oracle(scored, 'dev'):.2f}):")
    print(f"  best single unit {best['unit']:<16} {best['dev']['competition_score']:6.2f}")
    for strategy, result in results.items():
        print(f"  {strategy:<33} {result['dev']['competition_score']:6.2f}"
              f"   (oof {result['oof']['competition_score']:.2f})")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
