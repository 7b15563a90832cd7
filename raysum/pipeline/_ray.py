"""Units on Ray: one Ray Train `TorchTrainer` per (model, fold), scheduled by Ray itself.

Each unit's `fit()` runs inside a zero-CPU Ray task, so several units are in flight at
once and Ray's scheduler starts each unit's worker group when its resources are free.
Ray Train's worker-group start timeout (60 s by default) would fail units that wait
for a busy cluster, so it is raised; an infeasible request cannot wait forever because
`check_resources` refuses it before launch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raysum.errors import ConfigError, RaysumError

# Ray Train settings for short units: poll finished workers every 0.2 s instead of 2 s,
# skip the preemption watcher actor, and let queued units wait for resources.
TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": str(7 * 24 * 3600),
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
}
CHECKPOINTS_KEPT = 1
ATTEMPTS_FILE = "attempts.jsonl"


def _apply_train_env() -> None:
    for key, value in TRAIN_ENV.items():
        os.environ.setdefault(key, value)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> dict:
    """Attach to a cluster (`address`, or RAY_ADDRESS as inside `ray job submit`) or start a
    local instance with `num_cpus` logical CPUs. Returns the cluster's total resources."""
    _apply_train_env()
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    env_vars = {k: os.environ[k] for k in TRAIN_ENV}
    kwargs["runtime_env"] = {"env_vars": env_vars}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], **kwargs)
    else:
        ray.init(num_cpus=num_cpus or default_num_cpus(), include_dashboard=False, **kwargs)
    return ray.cluster_resources()


def default_num_cpus() -> int:
    """Logical CPUs for a local instance: one per core, at least 2 so a unit never waits on the driver."""
    return max(2, os.cpu_count() or 2)


def per_worker_resources(settings) -> dict[str, float]:
    """Resources of one of a unit's workers (what its ScalingConfig asks for)."""
    res = settings.resources
    return {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if res.use_gpu else {})}


def check_resources(models: dict, nodes: list[dict]) -> None:
    """Refuse, before launch, a unit whose workers fit on no node of the cluster."""
    problems = []
    for name, settings in models.items():
        res, per_worker = settings.resources, per_worker_resources(settings)
        fitting = [n for n in nodes if all(n.get(k, 0) >= v for k, v in per_worker.items())]
        slots = sum(int(min(n.get(k, 0) // v if v else 1e9 for k, v in per_worker.items())) for n in fitting)
        if not fitting or slots < res.num_workers:
            have_gpu = sum(n.get("GPU", 0) for n in nodes)
            need = ", ".join(f"{v:g} {k}" for k, v in per_worker.items())
            reason = (f"the cluster has no GPU (preset {name} sets resources.use_gpu: true; for a CPU run use a "
                      f"tiny-* preset or --set models.{name}.resources.use_gpu=false)"
                      if res.use_gpu and not have_gpu else
                      f"no node offers {need} for each of {res.num_workers} worker(s)")
            problems.append(f"model {name}: {reason}; cluster nodes: "
                            + "; ".join(_node_text(n) for n in nodes))
    if problems:
        raise ConfigError(problems)


def _node_text(node: dict) -> str:
    return ", ".join(f"{node.get(k, 0):g} {k}" for k in ("CPU", "GPU"))


def cluster_nodes() -> list[dict]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def train_unit(config: dict) -> None:
    """The Ray Train worker entry: the typed unit body with Ray's report hook."""
    import ray.train

    from raysum.training import run_unit

    def report(metrics: dict, checkpoint_dir: str | None = None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        metrics = {**metrics, "node_id": ray.get_runtime_context().get_node_id()}
        ray.train.report(metrics, checkpoint=checkpoint)

    config = dict(config)
    config["node_id"] = ray.get_runtime_context().get_node_id()
    if ray.train.get_context().get_world_rank() == 0:
        _record_attempt(Path(config["unit_dir"]), config["node_id"])
    run_unit(config, report=report)


def _record_attempt(unit_dir: Path, node_id: str) -> None:
    """One line per start of the unit's workers (a restart after a node died adds one):
    where the unit ran, also while it runs."""
    import json
    import time

    unit_dir.mkdir(parents=True, exist_ok=True)
    with (unit_dir / ATTEMPTS_FILE).open("a", encoding="utf-8") as out:
        out.write(json.dumps({"node_id": node_id, "started_at": time.time()}) + "\n")


@dataclass
class UnitRun:
    """A unit in flight: its name, directory and the Ray reference of its fit task."""

    name: str
    unit_dir: Path
    ref: Any


def launch_unit(name: str, config: dict, settings, storage_path: str) -> UnitRun:
    """Start one unit's TorchTrainer.fit() in a zero-CPU task; returns at once.

    The task is pinned to the driver's node, and Ray Train puts the unit's controller next
    to it: only the unit's workers go where the resources are, so losing a worker node
    costs the workers alone, which the controller restarts elsewhere (max_failures)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    fit = ray.remote(num_cpus=0, max_retries=0)(_fit_unit)
    env_vars = {k: os.environ.get(k, v) for k, v in TRAIN_ENV.items()}
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    ref = fit.options(name=f"unit:{name}", runtime_env={"env_vars": env_vars}, scheduling_strategy=here).remote(
        name, config, _scaling(settings), storage_path)
    return UnitRun(name=name, unit_dir=Path(config["unit_dir"]), ref=ref)


def _scaling(settings) -> dict:
    res = settings.resources
    return {"num_workers": res.num_workers, "use_gpu": res.use_gpu,
            "resources_per_worker": per_worker_resources(settings)}


def _fit_unit(name: str, config: dict, scaling: dict, storage_path: str) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run_name = name.replace("/", "_")
    trainer = TorchTrainer(
        train_unit,
        train_loop_config=config,
        scaling_config=ScalingConfig(**scaling),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            failure_config=FailureConfig(max_failures=config.get("max_failures", 0)),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise RaysumError(f"unit {name} failed: {result.error}")
    return dict(result.metrics or {})


def predict_units(path: Path, cfg, units: list, input_path: Path, out_dir: Path, console):
    """A DataFrame of candidates: each trained unit generates for one new input file, as Ray tasks with the unit's resources."""
    import pandas as pd
    import ray

    from raysum.training import predict_unit

    from raysum.pipeline._variants import tta_predict_paths

    predict = {"test": str(input_path)}
    predict.update({k: v for k, v in tta_predict_paths(out_dir, cfg, None).items() if k.startswith("test|")})
    refs = []
    for unit in units:
        settings = cfg.models[unit.model]
        res = settings.resources
        task = ray.remote(predict_unit).options(
            num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker if res.use_gpu else 0,
            name=f"predict:{unit.name}")
        output = out_dir / f"{unit.model}_{unit.fold_label}.parquet"
        from dataclasses import asdict

        refs.append((output, task.remote({
            "unit_dir": str(path / "units" / unit.model / unit.fold_label),
            "model": asdict(settings), "fold": unit.fold, "predict": predict, "output_path": str(output)})))
    for _, ref in refs:
        ray.get(ref)
    console.print(f"{len(refs)} unit(s) generated for {input_path.name}")
    return pd.concat([pd.read_parquet(out) for out, _ in refs], ignore_index=True)
