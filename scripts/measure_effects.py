#!/usr/bin/env python
"""Measured effect of ensembles, TTA and augmentation on the embedded default (not run in CI).

    HF_HUB_OFFLINE=1 python scripts/measure_effects.py [--seeds 42 43 44] [--output_dir outputs/effects]

For each seed: one run of tiny-bart/tiny-llama/tiny-qwen3 x 2 folds with TTA on
(paraphrase + reorder); "no TTA" rows use the same run's candidates without the TTA
variants, so ensembles and TTA reuse the trained units. One more run per seed adds
augmentation (speaker_swap + paraphrase + synonym, ratio 0.3): only it retrains.
Prints a Markdown table of dev competition_score, mean +- sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pandas as pd

STRATEGIES = ("voting", "weighted_avg", "stacking")


def run(seed: int, output_dir: str, augmentation: bool) -> Path:
    from raysum.config.resolve import resolve
    from raysum.config.validate import validate
    from raysum.pipeline import run_experiment

    cli = {"mode": "full", "models": ["tiny-bart", "tiny-llama", "tiny-qwen3"], "k_folds": 2, "fold_seed": 42,
           "seed": seed, "ensemble_strategy": "stacking", "use_tta": True,
           "tta_strategies": ["paraphrase", "reorder"], "tta_num_aug": 1, "output_dir": output_dir,
           "experiment_name": f"effects_s{seed}{'_aug' if augmentation else ''}"}
    if augmentation:
        cli.update({"use_augmentation": True, "augmentation_methods": ["speaker_swap", "paraphrase", "synonym"],
                    "augmentation_ratio": 0.3})
    return run_experiment(validate(resolve(cli)), command_line=["measure_effects.py"])


def evaluate(path: Path, with_tta: bool) -> dict:
    """Dev scores of the best single unit and of each strategy, on this run's candidates."""
    from raysum.ensemble import evaluate as evaluate_strategy
    from raysum.ensemble import prepare
    from raysum.pipeline._collect import _dialogues, _references

    candidates = pd.read_parquet(path / "candidates.parquet")
    if not with_tta:
        candidates = candidates[candidates["tta"] == "none"]
    refs = _references(path)
    prepared = prepare(candidates, _dialogues(path))
    out = {}
    for strategy in STRATEGIES:
        result = evaluate_strategy(prepared, strategy, references_by_split={"oof": refs["oof"], "dev": refs["dev"]},
                                   seed=0)
        out[strategy] = result["dev"]["competition_score"]
        out["best single unit"] = result["best_single"]["dev"]["competition_score"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--output_dir", default="outputs/effects")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    for seed in args.seeds:
        base = run(seed, args.output_dir, augmentation=False)
        aug = run(seed, args.output_dir, augmentation=True)
        for label, path, tta in (("no TTA", base, False), ("TTA", base, True), ("augmentation, no TTA", aug, False),
                                 ("augmentation + TTA", aug, True)):
            for method, value in evaluate(path, tta).items():
                rows.setdefault(f"{label} | {method}", []).append(value)
        print(json.dumps({k: v[-1] for k, v in rows.items()}), flush=True)
    print(f"\n| setting | selection | dev competition_score (mean +- sd over seeds {', '.join(map(str, args.seeds))}) |")
    print("| --- | --- | --- |")
    for key, values in rows.items():
        setting, method = key.split(" | ")
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {setting} | {method} | {statistics.mean(values):.2f} +- {sd:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
