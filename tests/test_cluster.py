"""raysum on a real multi-node Ray cluster on this machine: a head (0 CPUs) and two worker
nodes (node_a, node_b: 1 CPU each), experiments submitted with `ray job submit`, one worker
node killed while units run, a stage-2 search joining the cluster, finalize as a job, and
the cluster stopped without touching other Ray processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from raysum.cluster import LocalCluster, down, stop_node, up
from raysum.cluster.local import group_pids
from raysum.training.callbacks import is_sealed

from builders import finished_experiment, stage2_best_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
RAYSUM = str(Path(sys.executable).parent / "raysum")
EXTRA = [{"num_beams": 1}, {"length_penalty": 1.4}]  # decoding settings d1, d2 of a finished experiment
BEST_TRIALS = [  # a stage-2 search's trials: the second is the best
    {"strategy": "voting", "weights.tiny-bart": 0.5, "weights.tiny-llama": 0.5, "decoding.tiny-bart": "d0",
     "decoding.tiny-llama": "d0", "oof": 50.0, "dev": 50.0},
    {"strategy": "weighted_avg", "weights.tiny-bart": 0.2, "weights.tiny-llama": 0.9, "decoding.tiny-bart": "d2",
     "decoding.tiny-llama": "d1", "oof": 60.0, "dev": 55.0}]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster")
    local = up(state, workers=2, worker_cpus=1, head_cpus=0)
    yield local
    if (state / "cluster.json").is_file():
        down(state)


def _client_env(cluster: LocalCluster) -> dict:
    return {**os.environ, **cluster.client_env()}


def _submit(cluster: LocalCluster, args: list[str], wait: bool, submission_id: str,
            raysum_command: str = "train") -> subprocess.CompletedProcess:
    command = [RAY, "job", "submit", "--submission-id", submission_id, "--working-dir", str(ROOT),
               *([] if wait else ["--no-wait"]), "--", "raysum", raysum_command, *args]
    return subprocess.run(command, env=_client_env(cluster), capture_output=True, text=True, timeout=600)


JOB_ENDINGS = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}


def _job_status(cluster: LocalCluster, submission_id: str) -> str:
    """The job's status as `ray job status` says it (on stderr): "Job 'ID' succeeded|failed|was
    stopped" once it ended, "Status for job 'ID': RUNNING" before."""
    done = subprocess.run([RAY, "job", "status", submission_id], env=_client_env(cluster), capture_output=True,
                          text=True, timeout=120)
    text, job = done.stdout + done.stderr, re.escape(submission_id)
    ended = re.search(rf"Job '{job}' (succeeded|failed|was stopped)", text)
    if ended:
        return JOB_ENDINGS[ended.group(1)]
    running = re.search(rf"Status for job '{job}': (\w+)", text)
    return running.group(1) if running else "UNKNOWN"


def _job_logs(cluster: LocalCluster, submission_id: str) -> str:
    return subprocess.run([RAY, "job", "logs", submission_id], env=_client_env(cluster), capture_output=True,
                          text=True, timeout=120).stdout[-6000:]


def _experiment(out: Path) -> Path:
    (path,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return path


def _attempts(unit_dir: Path) -> list[dict]:
    file = unit_dir / "attempts.jsonl"
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.is_file() else []


def test_ray_job_submit_runs_units_on_both_workers(cluster, small_data, tmp_path):
    """The embedded-default full run (tiny-bart x 5 folds, 300 training dialogues) through
    `ray job submit --working-dir <repo>`: artifacts written, units spread over node_a and node_b."""
    out = tmp_path / "out"
    job = f"raysum-e2e-{uuid.uuid4().hex[:8]}"
    result = _submit(cluster, ["--mode", "full", "--max_train_samples", "300", "--epochs", "1", "--num_beams", "2", "--dev_data", small_data["dev"],
                               "--test_data", small_data["test"], "--output_dir", str(out), "--experiment_name",
                               "job"], wait=True, submission_id=job)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout.lower()
    path = _experiment(out)
    for name in ("scores.json", "submission.csv", "candidates.parquet"):
        assert (path / name).is_file(), name
    submission = pd.read_csv(path / "submission.csv")
    assert submission["fname"].tolist() == pd.read_csv(small_data["test"])["fname"].tolist()
    workers = {cluster.node("node_a").node_id: "node_a", cluster.node("node_b").node_id: "node_b"}
    ran_on = {}
    for fold in range(5):
        unit = json.loads((path / "units" / "tiny-bart" / f"fold{fold}" / "unit.json").read_text())
        assert unit["status"] == "done"
        ran_on[fold] = workers.get(unit["node_id"], f"not a worker: {unit['node_id']}")
    assert set(ran_on.values()) == {"node_a", "node_b"}, ran_on
    run = json.loads((path / "run.json").read_text())
    assert run["command_line"][-2:] == ["--experiment_name", "job"]


def test_killed_worker_node_units_resume_on_the_survivor(cluster, small_data, tmp_path):
    """node_b is killed (SIGKILL to its whole process group) while one of its units trains and
    after that unit saved an epoch checkpoint: Ray Train restarts the unit's worker on node_a
    (--max_failures), the unit resumes from the checkpoint and the experiment finishes."""
    out = tmp_path / "out"
    job = f"raysum-kill-{uuid.uuid4().hex[:8]}"
    result = _submit(cluster, ["--mode", "full", "--k_folds", "2", "--max_train_samples", "300", "--epochs", "3",
                               "--num_beams", "2", "--max_failures", "2", "--dev_data", small_data["dev"],
                               "--test_data", small_data["test"], "--output_dir", str(out), "--experiment_name",
                               "kill"], wait=False, submission_id=job)
    assert result.returncode == 0, result.stdout + result.stderr
    node_a, node_b = cluster.node("node_a"), cluster.node("node_b")

    # The victim is a unit on node_b that saved its first epoch's checkpoint (of 3): it has two
    # epochs and its generation left, so it cannot finish before node_b is killed. Files are
    # polled often; the job's status (a CLI call of a second or more) only every 5 s.
    victim, deadline, status_due = None, time.time() + 300, 0.0
    while victim is None and time.time() < deadline:
        for unit_dir in out.glob("*/units/tiny-bart/fold*"):
            on_b = [a for a in _attempts(unit_dir) if a["node_id"] == node_b.node_id]
            saved = [c for c in (unit_dir / "resume").glob("checkpoint-*") if is_sealed(c)]
            if on_b and len(saved) == 1 and not (unit_dir / "unit.json").exists():
                victim = unit_dir
        if victim is None and time.time() > status_due:
            assert _job_status(cluster, job) not in ("FAILED", "STOPPED"), _job_logs(cluster, job)
            status_due = time.time() + 5
        time.sleep(0.1)
    assert victim is not None, "no unit on node_b reached an epoch checkpoint:\n" + _job_logs(cluster, job)
    checkpoint_step = max(int(p.name.rsplit("-", 1)[1]) for p in (victim / "resume").glob("checkpoint-*")
                          if is_sealed(p))
    stop_node(node_b, kill=True)
    assert group_pids(node_b.pid) == []

    deadline = time.time() + 300
    while (status := _job_status(cluster, job)) not in ("SUCCEEDED", "FAILED", "STOPPED") and time.time() < deadline:
        time.sleep(2)
    assert status == "SUCCEEDED", _job_logs(cluster, job)
    unit = json.loads((victim / "unit.json").read_text())
    attempts = _attempts(victim)
    assert [a["node_id"] for a in attempts] == [node_b.node_id, node_a.node_id]
    assert unit["node_id"] == node_a.node_id and unit["resumed_from_step"] >= checkpoint_step > 0
    assert (_experiment(out) / "submission.csv").is_file()


def test_stage2_search_joins_the_cluster_at_ray_address(cluster, tmp_path):
    """`raysum tune` on cached candidates (a decoding space searched jointly with the ensemble
    space) from a shell on this machine with --ray_address: it joins the cluster instead of
    starting a local Ray, and its trials run on the worker nodes (the head has no CPU)."""
    path = finished_experiment(tmp_path / "20260101_000000_search", decoding_settings=EXTRA)
    env = _client_env(cluster)
    env.pop("RAY_ADDRESS")  # the flag alone names the cluster
    done = subprocess.run([RAYSUM, "tune", "--space", str(ROOT / "search_spaces" / "decoding.yaml"),
                           "--ensemble_space", str(ROOT / "search_spaces" / "ensemble.yaml"), "--experiment",
                           str(path), "--ray_address", cluster.gcs_address, "--trials", "4", "--json"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout)
    ray_info = summary["ray"]
    # Ray names the GCS by the machine's address, not the 127.0.0.1 the cluster was given: the port tells
    assert ray_info.pop("address").rsplit(":", 1)[1] == cluster.gcs_address.rsplit(":", 1)[1]
    # the cluster's nodes, not a local instance of one node (an earlier test may have killed a worker node)
    assert ray_info["joined"] is True and ray_info["nodes"] >= 2 and ray_info["cpus"] >= 1 and ray_info["gpus"] == 0
    assert summary["trials"] == 4 and summary["errors"] == 0
    assert (path / "tune" / "decoding_best.json").is_file()


def test_finalize_as_a_job_runs_its_ensemble_on_a_worker(cluster, tmp_path):
    """`ray job submit --working-dir <repo> -- raysum finalize DIR --config FILE`: the job's
    driver runs on the head (0 CPUs) and the ensemble task on a worker node; the driver
    writes the submission. A job needs no --output_dir (`raysum config show` as a job)."""
    path = finished_experiment(tmp_path / "20260101_000000_final", decoding_settings=EXTRA)
    best = stage2_best_config(path, BEST_TRIALS)
    job = f"raysum-finalize-{uuid.uuid4().hex[:8]}"
    result = _submit(cluster, [str(path), "--config", str(best)], wait=True, submission_id=job,
                     raysum_command="finalize")
    assert result.returncode == 0 and "succeeded" in result.stdout.lower(), result.stdout[-6000:] + result.stderr
    submission = pd.read_csv(path / "submission.csv")
    assert submission["fname"].tolist() == pd.read_parquet(path / "inputs" / "test.parquet")["fname"].tolist()
    final = json.loads((path / "scores.json").read_text())["final"]
    assert final["strategy"] == "weighted_avg" and final["from"]["strategy"].startswith(f"--config {best}")
    assert {m: d["label"] for m, d in final["decodings"].items()} == {"tiny-bart": "d2", "tiny-llama": "d1"}
    workers = {cluster.node("node_a").node_id, cluster.node("node_b").node_id}
    assert final["ensemble_task"]["node_id"] in workers and final["ensemble_task"]["cpus"] == 1

    shown = _submit(cluster, ["show", "--models", "tiny-bart"], wait=True,
                    submission_id=f"raysum-show-{uuid.uuid4().hex[:8]}", raysum_command="config")
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr
    default = str(Path.home() / "raysum-outputs")
    assert f'output_dir: "{default}"  # default inside a Ray job' in shown.stdout
    assert "inside a Ray job, experiment directories go to" in shown.stdout


def test_down_ends_only_its_own_nodes(cluster):
    """`down` ends the cluster's process groups and removes their temp dirs; Ray processes
    it did not start (another user's `ray.init`, a stand-in process here) keep running."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        ours = [n for n in cluster.nodes if group_pids(n.pid)]
        assert ours, "the cluster's nodes should still be running"
        down(cluster.state_dir)
        assert all(group_pids(n.pid) == [] for n in cluster.nodes)
        assert not any(Path(n.temp_dir).exists() for n in cluster.nodes)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
