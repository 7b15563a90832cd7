"""Ray, in one place: starting or joining a cluster, what a unit's workers ask for, and
launching training units and training-search trials as Ray Train ``TorchTrainer`` runs.

Each unit's ``fit()`` runs inside a zero-CPU Ray task, so several units are in flight at
once and Ray's scheduler starts each unit's worker group when its resources are free.
Ray Train's worker-group start timeout (60 s by default) would fail units that wait
for a busy cluster, so it is raised; an infeasible request cannot wait forever because
:func:`check_resources` refuses it before launch. A trial of a training search is a Tune
function that builds the same unit's ``TorchTrainer`` (Ray Train V2; ``Tuner(trainer)``
is deprecated) with ``TuneReportCallback`` forwarding the unit's reports to Tune.
The ensemble stage after the units (``raysum train``, ``raysum finalize``) is one Ray task
with its own CPU request (:func:`ensemble_task`), so the driver stays light.

Every command that starts Ray calls :func:`init_ray`: ``--ray_address`` (or
``RAY_ADDRESS``, as inside ``ray job submit``) joins a cluster, otherwise a local
instance starts. A local instance listens on 127.0.0.1 only, and its processes are
recorded (:mod:`raysum.ray_processes`) so that none outlives the command, even one
killed with SIGKILL; :func:`shutdown_ray` stops it.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raysum.errors import ConfigError, RaysumError
from raysum.experiment import UnitFiles
from raysum.ray_processes import ProcessRecord

# Ray Train settings for short units: poll finished workers every 0.2 s instead of 2 s,
# skip the preemption watcher actor, and let queued units wait for resources.
TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": str(7 * 24 * 3600),
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
}
CHECKPOINTS_KEPT = 1
PLACEMENT_GROUP_KEY = "worker_placement_group"  # reported by a trial's unit (raysum.tune frees the group)
# Ray takes the address its services listen on from this machine's IP, except where
# clusters are off (its default on macOS and Windows): there every service, agent and
# worker binds 127.0.0.1. The switch is read when ray imports (ray_constants) and by
# each process Ray starts (from the environment).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

_local_record: ProcessRecord | None = None  # the local instance this process started


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
        with _keeping_sigterm_handler():
            ray.init(address=address or os.environ["RAY_ADDRESS"], **kwargs)
    else:
        _start_local(num_cpus=num_cpus or default_num_cpus(), include_dashboard=False, **kwargs)
    return ray.cluster_resources()


def _start_local(**kwargs) -> None:
    """``ray.init`` of a local instance bound to 127.0.0.1, its processes recorded."""
    global _local_record
    import ray

    if _local_record is not None:  # an earlier instance, shut down by ray.shutdown() directly
        _local_record.close()
    record = ProcessRecord().start()
    try:
        with _loopback_only(), _keeping_sigterm_handler():
            ray.init(**kwargs)
    except BaseException:
        record.close()
        raise
    record.settle()
    _local_record = record
    atexit.unregister(shutdown_ray)
    atexit.register(shutdown_ray)  # runs before ray's own atexit shutdown (registered at import)


def shutdown_ray() -> None:
    """Stop Ray as this process uses it: a local instance it started ends with every process
    it recorded (and its record); a joined cluster is disconnected from, which ends this
    driver's tasks and actors there."""
    global _local_record
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    if _local_record is not None:
        _local_record.close()
        _local_record = None


@contextmanager
def _loopback_only():
    import ray._private.ray_constants as ray_constants

    saved_env = {k: os.environ.get(k) for k in LOOPBACK_ENV}
    saved = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(LOOPBACK_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False  # ray was imported before the variable was set
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _keeping_sigterm_handler():
    """``ray.init`` installs SIGTERM handlers that exit at once; a handler the caller installed
    (the raysum CLI's: stop Ray, say how to continue) is put back, and a SIGTERM that Ray's
    handler turned into SystemExit during ``ray.init`` goes to it."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    except SystemExit:
        if not callable(previous):
            raise
        signal.signal(signal.SIGTERM, previous)
        previous(signal.SIGTERM, None)
        raise
    if callable(previous):
        signal.signal(signal.SIGTERM, previous)


def default_num_cpus() -> int:
    """Logical CPUs for a local instance: one per core, at least 2 so a unit never waits on the driver."""
    return max(2, os.cpu_count() or 2)


def per_worker_resources(settings) -> dict[str, float]:
    """Resources of one of a unit's workers (what its ScalingConfig asks for)."""
    res = settings.resources
    return {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if res.use_gpu else {})}


def scaling(settings) -> dict:
    """A unit's ScalingConfig arguments (units and trials alike)."""
    res = settings.resources
    return {"num_workers": res.num_workers, "use_gpu": res.use_gpu,
            "resources_per_worker": per_worker_resources(settings)}


def unit_demand(settings) -> dict[str, float]:
    """What one unit's worker group holds while it runs: its workers' resources together."""
    return {k: v * settings.resources.num_workers for k, v in per_worker_resources(settings).items()}


def fixed_capacity() -> dict[str, float] | None:
    """The resources units share where no node can be added: those of a local instance this
    process started. None on a joined cluster, whose autoscaler adds nodes for the worker
    groups that wait for them."""
    import ray

    if _local_record is None or not ray.is_initialized():
        return None
    return ray.cluster_resources()


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


def ray_summary() -> dict:
    """Where this command's Ray work runs: the cluster's GCS address, whether it was joined
    (else a local instance this process started), its alive nodes and their CPUs and GPUs."""
    import ray

    nodes = cluster_nodes()
    return {"address": ray.get_runtime_context().gcs_address, "joined": _local_record is None,
            "nodes": len(nodes), "cpus": sum(n.get("CPU", 0) for n in nodes),
            "gpus": sum(n.get("GPU", 0) for n in nodes)}


def concurrent_units(settings, cluster: dict, cap: int | None) -> int:
    """Units whose worker groups fit on the cluster at once (at least 1, at most `cap`)."""
    workers = settings.resources.num_workers
    slots = [int(cluster.get(k, 0) // (v * workers)) for k, v in per_worker_resources(settings).items() if v > 0]
    fit = max(1, min(slots) if slots else 1)
    return min(fit, cap) if cap else fit


# --------------------------------------------------------------------------- units


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
        UnitFiles(config["unit_dir"]).record_attempt(config["node_id"], time.time(), config.get("settings"))
    run_unit(config, report=report)


@dataclass
class UnitJob:
    """A unit in flight: its name, directory and the Ray reference of its fit task."""

    name: str
    unit_dir: Path
    ref: Any


def launch_unit(name: str, config: dict, settings, storage_path: str) -> UnitJob:
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
        name, config, scaling(settings), storage_path)
    return UnitJob(name=name, unit_dir=Path(config["unit_dir"]), ref=ref)


def _fit_unit(name: str, config: dict, scaling_args: dict, storage_path: str) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    run_name = name.replace("/", "_")
    trainer = unit_trainer_class()(
        train_unit,
        train_loop_config=config,
        scaling_config=ScalingConfig(**scaling_args),
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


def unit_trainer_class():
    """``TorchTrainer`` without the dataset actor: Ray Train starts a ``DatasetManager``
    actor for every run, datasets or not, and it lives until Ray stops (a process, ~3 s of
    CPU to start, per unit). Units pass no Ray datasets, so its callback is left out. With
    a Ray whose callback is elsewhere the plain ``TorchTrainer`` runs, actor and all."""
    from ray.train.torch import TorchTrainer

    try:
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    except ImportError:
        return TorchTrainer
    if not hasattr(TorchTrainer, "_create_default_callbacks"):  # Train V1 (RAY_TRAIN_V2_ENABLED=0)
        return TorchTrainer

    class UnitTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            if self.datasets:
                return callbacks
            return [cb for cb in callbacks if not isinstance(cb, DatasetsCallback)]

    return UnitTorchTrainer


def predict_with_units(jobs: list[tuple[str, Path, object, int | None]], predict: dict[str, str], out_dir: Path,
                       decodings: dict[str, dict[str, dict]] | None = None):
    """Finished units generate for new inputs (``predict``: "split" or "split|variant" ->
    parquet), each a Ray task with its unit's resources; ``jobs`` = (name, unit_dir,
    settings, fold). ``decodings``: unit name -> {label: decoding settings} to generate
    with instead of the model's own (``predict_unit``). Returns the candidates of every
    unit in one DataFrame."""
    import pandas as pd
    import ray

    from raysum.experiment.candidates import read as read_candidates
    from raysum.training import predict_unit

    refs = []
    for name, unit_dir, settings, fold in jobs:
        res = settings.resources
        task = ray.remote(predict_unit).options(
            num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker if res.use_gpu else 0,
            name=f"predict:{name}")
        output = out_dir / f"{name.replace('/', '_')}.parquet"
        config = {"unit_dir": str(unit_dir), "model": asdict(settings), "fold": fold, "predict": predict,
                  "output_path": str(output)}
        if decodings and decodings.get(name):
            config["decodings"] = decodings[name]
        refs.append((output, task.remote(config)))
    for _, ref in refs:
        ray.get(ref)
    return pd.concat([read_candidates(out, action="run raysum predict again") for out, _ in refs], ignore_index=True)


# --------------------------------------------------------------------------- the ensemble stage

# The default request's cap: Kiwi tokenizes with one thread per CPU of the task, while
# pairwise ROUGE and the stacking fit run on one thread, so more CPUs mostly sit idle.
ENSEMBLE_CPUS_MAX = 8


def ensemble_cpus(requested: int | None, nodes: list[dict]) -> float:
    """CPUs of the ensemble task: ``requested`` (ensemble_cpus), else sized to the
    cluster's CPU pool: every CPU of its largest node, at most ENSEMBLE_CPUS_MAX (1 where
    no node has a CPU yet, which an autoscaler adds). Never more than one node has, and
    the driver holds no CPU, so the task cannot wait on the command that waits for it."""
    if requested:
        return float(requested)
    largest = max((node.get("CPU", 0) for node in nodes), default=0)
    if largest >= 1:
        return float(min(ENSEMBLE_CPUS_MAX, int(largest)))
    return largest or 1.0


def ensemble_problems(requested: int | None, nodes: list[dict]) -> list[str]:
    """ensemble_cpus that no node of the cluster offers (the task would wait forever)."""
    if requested and not any(node.get("CPU", 0) >= requested for node in nodes):
        return [f"ensemble_cpus {requested}: no node of the cluster has {requested} CPUs (cluster nodes: "
                + "; ".join(_node_text(n) for n in nodes) + "); give fewer or leave it out (default: the "
                f"CPUs of the largest node, at most {ENSEMBLE_CPUS_MAX})"]
    return []


def start_ensemble_ray(address: str | None, num_cpus: int | None, requested: int | None) -> float:
    """Ray for a command whose ensemble stage runs as a task (``raysum finalize``): joined or
    started, the task's CPUs sized and checked before any work. Returns the CPUs."""
    init_ray(address, num_cpus)
    nodes = cluster_nodes()
    problems = ensemble_problems(requested, nodes)
    if problems:
        raise ConfigError(problems)
    return ensemble_cpus(requested, nodes)


def ensemble_task(request: dict) -> dict:
    """The ensemble stage's Ray task: ``raysum.ensemble.ensemble_stage`` with Kiwi's
    threads set to the task's CPUs; ``task`` in the result says where it ran and how long."""
    import ray

    from raysum.ensemble import ensemble_stage
    from raysum.metrics import set_kiwi_threads

    started = time.perf_counter()
    set_kiwi_threads(max(1, int(request["cpus"])))
    result = ensemble_stage(request["experiment"], request["strategies"], submit=request.get("submit"),
                            weights=request.get("weights"), decodings=request.get("decodings"),
                            seed=request.get("seed", 0))
    context = ray.get_runtime_context() if ray.is_initialized() else None
    result["task"] = {"node_id": context.get_node_id() if context else None, "pid": os.getpid(),
                      "cpus": request["cpus"], "seconds": round(time.perf_counter() - started, 2)}
    return result


def run_ensemble(request: dict) -> dict:
    """Run :func:`ensemble_task` on the cluster with ``request["cpus"]`` CPUs and wait for
    its result; Ray must be started. A RaysumError of the task is raised as it is."""
    import ray
    from ray.exceptions import RayTaskError

    task = ray.remote(ensemble_task).options(num_cpus=request["cpus"], name="ensemble")
    try:
        return ray.get(task.remote(request))
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, RaysumError):
            raise cause from None
        last = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:300]
        raise RaysumError(f"the ensemble task failed ({type(cause).__name__}: {last})") from exc


# --------------------------------------------------------------------------- training-search trials


def trial_unit(config: dict) -> None:
    """The Ray Train worker of a trial: the unit, reporting metrics only (Tune needs no
    copy of the trial's weights; they stay in the unit directory) and the placement
    group of its worker group (freed by raysum.tune if Tune stops the trial)."""
    import ray.train
    from ray.util import get_current_placement_group

    from raysum.training import run_unit

    group = get_current_placement_group()
    where = {PLACEMENT_GROUP_KEY: group.id.hex()} if group is not None else {}

    def report(metrics: dict, checkpoint_dir: str | None = None) -> None:
        ray.train.report({**metrics, **where})

    run_unit(config, report=report)


def fit_trial(unit: dict, trial_id: str, scaling_args: dict, storage_path: str) -> None:
    """Inside a Tune trial: the unit's TorchTrainer, its reports forwarded to Tune."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        trial_unit,
        train_loop_config=unit,
        scaling_config=ScalingConfig(**scaling_args),
        run_config=RunConfig(name=trial_id, storage_path=storage_path, callbacks=[TuneReportCallback()],
                             failure_config=FailureConfig(max_failures=0)),
    )
    trainer.fit()  # raises TrainingFailedError when the unit fails: the trial errors


def translate_on_ray(models: list[str], texts: list[str], console=None) -> dict[str, str]:
    """``texts`` through the translator chain as Ray tasks, all at once: one task per GPU of
    the cluster (each loads the checkpoints once and translates its share in batches), else
    up to 4 one-CPU tasks. Each task gets every n-th text of the length-sorted list, so the
    shares are alike. Returns {text: translation}; a line per finished task."""
    import ray

    from raysum.augment import translate_chunk

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    tasks = max(1, min(len(texts), gpus if gpus else min(4, max(1, cpus - 1))))
    ordered = sorted(texts, key=len)
    shares = [ordered[i::tasks] for i in range(tasks)]
    remote = ray.remote(translate_chunk).options(num_cpus=1, num_gpus=1 if gpus else 0, name="back_translation")
    pending = {remote.remote(list(models), share): share for share in shares}
    done: dict[str, str] = {}
    started = time.perf_counter()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        share = pending.pop(ready[0])
        done.update(zip(share, ray.get(ready[0])))
        if console is not None:
            console.print(f"back-translation: {len(done)}/{len(texts)} pieces translated "
                          f"({tasks - len(pending)}/{tasks} task(s), {'GPU' if gpus else 'CPU'}, "
                          f"{time.perf_counter() - started:.0f} s)")
    return done
