#!/usr/bin/env python
"""Ray's overhead per unit on CPU: the same tiny unit in-process and through a TorchTrainer.

    HF_HUB_OFFLINE=1 python scripts/bench_ray_overhead.py [--model tiny-bart] [--train 200] [--repeats 2]

Prints wall seconds of each path side by side (Ray start-up reported apart), and the
time inside the unit (setup + train + generate) so the remainder is Ray's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def make_inputs(root: Path, n_train: int) -> dict:
    from raysum.data import bundled_data, load_dataset

    train = load_dataset(bundled_data("train")).head(n_train)
    dev = load_dataset(bundled_data("dev")).head(40)
    frame = lambda df: pd.DataFrame({"fname": df["fname"], "dialogue": df["dialogue"],  # noqa: E731
                                     "summary": [r[0] for r in df["references"]]})
    frame(train).to_parquet(root / "train.parquet")
    frame(dev).to_parquet(root / "dev.parquet")
    return {"train_path": str(root / "train.parquet"), "eval_path": str(root / "dev.parquet"),
            "predict": {"dev": str(root / "dev.parquet")}}


def unit_config(root: Path, name: str, model: str, inputs: dict) -> dict:
    from raysum.config import load_preset

    settings = dataclasses.replace(load_preset(model), epochs=1)
    return {"unit_dir": str(root / name), "model": dataclasses.asdict(settings), "fold": 0, "seed": 42,
            "tokenizer_cache": str(root / "tok"), "resume": True, **inputs}


def inside(unit_dir: str) -> float:
    info = json.loads((Path(unit_dir) / "unit.json").read_text())
    return info["finished_at"] - info["started_at"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-bart")
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from raysum.config import load_preset
    from raysum.pipeline._ray import init_ray, launch_unit
    from raysum.training import run_unit

    root = Path(tempfile.mkdtemp(prefix="raysum-bench-"))
    inputs = make_inputs(root, args.train)
    torch.set_num_threads(1)  # a Ray worker with 1 CPU runs with one thread: same here
    rows = []
    for i in range(args.repeats):
        cfg = unit_config(root, f"inproc{i}", args.model, inputs)
        t = time.perf_counter()
        run_unit(cfg)
        rows.append(("in-process", i, time.perf_counter() - t, inside(cfg["unit_dir"])))
    t = time.perf_counter()
    init_ray(num_cpus=2)
    ray_init_s = time.perf_counter() - t
    import ray

    settings = load_preset(args.model)
    for i in range(args.repeats):
        cfg = unit_config(root, f"ray{i}", args.model, inputs)
        t = time.perf_counter()
        ray.get(launch_unit(f"bench/{i}", cfg, settings, root / "ray").ref)
        rows.append(("TorchTrainer", i, time.perf_counter() - t, inside(cfg["unit_dir"])))
    ray.shutdown()

    print(f"\nunit: {args.model}, {args.train} training dialogues, 1 epoch, 40 generated; ray.init {ray_init_s:.1f} s")
    print(f"{'path':<14}{'run':>4}{'wall s':>9}{'in unit s':>11}{'overhead s':>12}")
    for path, i, wall, unit_s in rows:
        print(f"{path:<14}{i:>4}{wall:>9.1f}{unit_s:>11.1f}{wall - unit_s:>12.1f}")
    best = {p: min(w for q, _, w, _ in rows if q == p) for p in ("in-process", "TorchTrainer")}
    print(f"best wall: in-process {best['in-process']:.1f} s, TorchTrainer {best['TorchTrainer']:.1f} s, "
          f"ratio {best['TorchTrainer'] / best['in-process']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
