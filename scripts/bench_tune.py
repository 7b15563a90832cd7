"""Time the stage-2 ensemble search (raysum tune) on a competition-sized experiment.

    .venv/bin/python scripts/bench_tune.py                          # 499 dev x 12, 800 OOF x 3, 200 trials
    .venv/bin/python scripts/bench_tune.py --trials 400 --max_concurrent 1 --tokenizer kiwi

Builds a finished-experiment directory from scripts/bench_ensemble.py's synthetic
candidates (dev: 499 dialogues x 12 candidates = 3 models x 4 folds; OOF: 800 x 3),
then runs ``search_ensemble`` with search_spaces/ensemble.yaml and prints the one-time
preparation, the Tune search's wall time and trials per minute (search only: Tuner.fit
from start to end, Ray start-up excluded), and the best trial next to the best single
unit. ``--repeat`` runs the search again on the same Ray instance (warm actors).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ensemble import build_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# bench_ensemble's model names -> presets, so the experiment's config resolves (a preset name
# with a dot, llama-3.2-korean-3b, does not survive config.json: see the report).
PRESETS = {"kobart": "kobart", "llama-3b": "tiny-llama", "qwen3-4b": "qwen3-4b"}


def write_experiment(path: Path, n_dev: int, n_oof: int, seed: int) -> None:
    from raysum.config.resolve import resolve

    candidates, dialogues, references = build_table(n_dev, n_oof, seed)
    candidates["model"] = candidates["model"].map(PRESETS)
    (path / "inputs").mkdir(parents=True)
    for split, file in (("oof", "train"), ("dev", "dev")):
        fnames = list(references[split])
        pd.DataFrame({"fname": fnames, "dialogue": [dialogues[f] for f in fnames],
                      "references": [references[split][f] for f in fnames]}).to_parquet(path / "inputs" / f"{file}.parquet")
    pd.DataFrame({"fname": pd.Series([], dtype=str), "dialogue": pd.Series([], dtype=str),
                  "references": pd.Series([], dtype=object)}).to_parquet(path / "inputs" / "test.parquet")
    candidates.to_parquet(path / "candidates.parquet", index=False)
    cfg = resolve({"models": list(PRESETS.values()), "k_folds": 4, "mode": "full", "seed": seed})
    (path / "config.json").write_text(json.dumps(cfg.tree(), ensure_ascii=False), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", type=int, default=499)
    parser.add_argument("--oof", type=int, default=800)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_cpus", type=int, default=None)
    parser.add_argument("--max_concurrent", type=int, default=None)
    parser.add_argument("--tokenizer", default="whitespace", choices=["kiwi", "whitespace"],
                        help="ROUGE tokens (whitespace by default: the trial rate does not depend on it)")
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "ensemble.yaml"),
                        help="search space file (a weighted_avg-only space times the trials that compute)")
    parser.add_argument("--repeat", type=int, default=1, help="searches on the same Ray instance")
    args = parser.parse_args()

    from raysum.tune.ensemble_search import search_ensemble

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_experiment"
        started = time.perf_counter()
        write_experiment(path, args.dev, args.oof, args.seed)
        print(f"experiment written in {time.perf_counter() - started:.1f} s: {path}")
        for i in range(args.repeat):
            started = time.perf_counter()
            result = search_ensemble(path, args.space, trials=args.trials,
                                     seed=args.seed, num_cpus=args.num_cpus, max_concurrent=args.max_concurrent,
                                     tokenizer=args.tokenizer)
            total = time.perf_counter() - started
            timing = result["timing"]
            print(f"run {i + 1}: {result['trials']} trials, {result['errors']} errors; prepare + precompute "
                  f"{timing['prepare_s']:.1f} s, search {timing['search_s']:.1f} s = "
                  f"{timing['trials_per_minute']:.1f} trials/minute; whole call {total:.1f} s")
            best, single = result["best"], result["best_single"]
            print(f"  best {best['strategy']} {best['weights'] or ''}: OOF {result['oof']['competition_score']:.2f}, "
                  f"dev {result['dev']['competition_score']:.2f}; best single {single['unit']} dev "
                  f"{single['dev']['competition_score']:.2f}")


if __name__ == "__main__":
    main()
