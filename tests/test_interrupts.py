"""Interrupted commands: Ctrl-C and SIGTERM stop a run without a traceback and name the
command that continues it, which reuses the finished units byte for byte; a resume never
starts from a checkpoint whose save was cut short; the Ray processes of a driver killed
with SIGKILL are ended by the next command; a local Ray listens on loopback only."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from raysum.training.callbacks import CheckpointSeal, is_sealed
from raysum.training.unit import last_complete_checkpoint

RAYSUM = str(Path(sys.executable).with_name("raysum"))
SMALL_RUN = ["--models", "tiny-bart", "--max_train_samples", "60", "--num_beams", "1"]


# --------------------------------------------------------------------------- checkpoints cut short


def _checkpoint(resume_dir: Path, step: int, sealed: bool = True, state: str | None = None) -> Path:
    path = resume_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "trainer_state.json").write_text(state if state is not None else json.dumps({"global_step": step}))
    if sealed:
        CheckpointSeal().on_save(SimpleNamespace(output_dir=str(resume_dir), should_save=True),
                                 SimpleNamespace(global_step=step), None)
    return path


def test_resume_picks_the_newest_sealed_checkpoint(tmp_path):
    resume = tmp_path / "resume"
    _checkpoint(resume, 5)
    newest_complete = _checkpoint(resume, 10)
    torn = _checkpoint(resume, 15, sealed=False, state='{"global_st')  # killed while writing trainer_state.json
    weights_only = resume / "checkpoint-20"  # killed before trainer_state.json
    weights_only.mkdir()
    (weights_only / "model.safetensors").write_bytes(b"")
    copied = _checkpoint(resume, 25, sealed=False)
    (copied / "raysum_complete.json").write_text((newest_complete / "raysum_complete.json").read_text())

    assert is_sealed(newest_complete) and not is_sealed(torn) and not is_sealed(copied)
    assert last_complete_checkpoint(resume) == str(newest_complete)
    assert torn.is_dir()  # only the main process removes what it passes over
    assert last_complete_checkpoint(resume, remove_others=True) == str(newest_complete)
    assert sorted(p.name for p in resume.iterdir()) == ["checkpoint-10", "checkpoint-5"]
    assert last_complete_checkpoint(tmp_path / "empty") is None


# --------------------------------------------------------------------------- the CLI's signal handlers


def test_sigterm_names_the_lock_held_when_it_came_and_exits_143(tmp_path):
    from rich.console import Console

    from raysum.cli._interrupts import Interrupts
    from raysum.errors import Terminated
    from raysum.experiment import layout
    from raysum.experiment.lock import ExperimentLock

    interrupts, console = Interrupts(), Console(record=True, width=400)
    before = signal.getsignal(signal.SIGTERM)  # Ray's own handler when an earlier test started Ray here
    with interrupts.handlers():
        with pytest.raises(Terminated):
            with ExperimentLock(tmp_path, "train", resume=f"raysum train --resume {tmp_path}"):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises at the next bytecode
        assert not (tmp_path / layout.LOCK_FILE).exists()  # released on the way out
        code = interrupts.stop(console)
    assert code == 143 and signal.getsignal(signal.SIGTERM) is before  # restored
    assert console.export_text().rstrip().endswith(f"Continue with:\n  raysum train --resume {tmp_path}")


def test_sigterm_goes_to_a_graceful_sigint_handler_in_place(tmp_path):
    """While Ray Tune runs, its SIGINT handler stops the search after saving its state:
    SIGTERM takes that path too, and the exit code still says SIGTERM."""
    from raysum.cli._interrupts import Interrupts

    interrupts, stops = Interrupts(), []
    with interrupts.handlers():
        mine = signal.signal(signal.SIGINT, lambda sig, frame: stops.append(sig))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        signal.signal(signal.SIGINT, mine)
        os.kill(os.getpid(), signal.SIGINT)  # a second signal does not cut the stop short
        time.sleep(0.1)
    assert stops == [signal.SIGINT] and interrupts.exit_code == 143 and interrupts.resume == []


# --------------------------------------------------------------------------- leftovers of a SIGKILLed command

DRIVER = """
import subprocess, sys, time
from raysum.ray_processes import ProcessRecord

record = ProcessRecord().start()
agent = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "print(1, flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
agent.stdout.readline()  # it ignores SIGTERM from here on, like Ray's agents
record.settle()
later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # not Ray's
record.refresh()
print(agent.pid, later.pid, flush=True)
time.sleep(600)
"""


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def _running(pid: int, started: float | None = None) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (started is None or process.create_time() == started)
    except psutil.Error:
        return False


def _kill(pids) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def test_the_processes_of_a_killed_command_are_ended_and_no_others(tmp_path, monkeypatch):
    from raysum import ray_processes

    monkeypatch.setenv("RAYSUM_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(ray_processes, "GRACE_S", 0.5)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "RAYSUM_STATE_DIR": str(tmp_path)})
    bystander, other = _sleeper(), _sleeper()
    agent = later = None
    try:
        agent, later = map(int, driver.stdout.readline().split())
        record = tmp_path / "ray" / f"{socket.gethostname()}.{driver.pid}.json"
        assert [p["pid"] for p in json.loads(record.read_text())["processes"]] == [agent]
        # A dead driver whose recorded pid now belongs to another process (another start time),
        # and a live driver (this test) with a process of its own: both are left alone.
        dead_driver = {"pid": driver.pid, "started": psutil.Process(driver.pid).create_time(), "host": socket.gethostname()}
        reused = {"pid": bystander.pid, "started": psutil.Process(bystander.pid).create_time() - 100, "name": "python"}
        (tmp_path / "ray" / "reused.json").write_text(json.dumps({"driver": dead_driver, "processes": [reused]}))
        me = psutil.Process()
        alive = {"pid": me.pid, "started": me.create_time(), "host": socket.gethostname()}
        own = {"pid": other.pid, "started": psutil.Process(other.pid).create_time(), "name": "python"}
        (tmp_path / "ray" / "alive.json").write_text(json.dumps({"driver": alive, "processes": [own]}))

        driver.kill()
        driver.wait(timeout=30)
        assert _running(agent)  # orphaned, and SIGTERM alone would not end it
        notes = ray_processes.end_leftovers()
        assert len(notes) == 1 and "ended 1 Ray process(es)" in notes[0] and str(driver.pid) in notes[0]
        assert not _running(agent)
        assert not record.exists() and not (tmp_path / "ray" / "reused.json").exists()
        assert _running(later)  # started by the driver after Ray was up: not Ray's
        assert _running(bystander.pid) and _running(other.pid) and (tmp_path / "ray" / "alive.json").exists()
        assert ray_processes.end_leftovers() == []
    finally:
        driver.kill()
        _kill([p for p in (agent, later, bystander.pid, other.pid) if p])


def test_nothing_recorded_costs_a_directory_listing(tmp_path, monkeypatch):
    from raysum import ray_processes

    monkeypatch.setenv("RAYSUM_STATE_DIR", str(tmp_path / "never_created"))
    assert ray_processes.end_leftovers() == []


# --------------------------------------------------------------------------- real runs, interrupted


class Command:
    """A `raysum` subprocess in its own session; every process seen in its tree is ended at exit."""

    def __init__(self, args: list[str], state_dir: Path):
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAYSUM_STATE_DIR=str(state_dir), HF_HUB_OFFLINE="1")
        self.process = subprocess.Popen([RAYSUM, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, start_new_session=True)
        self.seen: dict[int, psutil.Process] = {}

    def __enter__(self) -> "Command":
        return self

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        for process in self.seen.values():
            try:
                process.kill()  # psutil checks the start time: a reused pid is not signalled
            except psutil.Error:
                pass

    def look(self) -> list[psutil.Process]:
        """The command's process tree now (remembered for the cleanup)."""
        try:
            tree = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.Error:
            return []
        self.seen.update({p.pid: p for p in tree})
        return tree

    def wait_for(self, condition, what: str, timeout: float = 300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.process.poll() is None, f"exited ({self.process.returncode}) before {what}:\n" + self.output()
            self.look()
            found = condition()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def finish(self, sig: int) -> tuple[int, str]:
        self.look()
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=180)
        return self.process.returncode, err

    def output(self) -> str:
        try:
            out, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            return "(still running)"
        return out[-3000:] + err[-3000:]

    def still_running(self) -> list[str]:
        return [f"{p.pid} {p.name()}" for p in self.seen.values() if _alive(p)]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _experiment(out: Path) -> Path | None:
    found = [p for p in out.glob("*") if p.is_dir() and not p.name.startswith(".")] if out.is_dir() else []
    return found[0] if found else None


def _unit_dir(out: Path, label: str) -> Path | None:
    path = _experiment(out)
    return path / "units" / "tiny-bart" / label if path else None


def _sealed_steps(unit_dir: Path) -> list[int]:
    return sorted(int(p.name.rsplit("-", 1)[1]) for p in (unit_dir / "resume").glob("checkpoint-*") if is_sealed(p))


def _training(out: Path, label: str) -> bool:
    unit = _unit_dir(out, label)
    return bool(unit and (unit / "metrics.jsonl").is_file() and (unit / "metrics.jsonl").read_text().strip())


def _digest(unit_dir: Path) -> dict[str, str]:
    return {name: hashlib.sha256((unit_dir / name).read_bytes()).hexdigest()
            for name in ("unit.json", "predictions.parquet", "metrics.jsonl", "checkpoint/model.safetensors")}


@pytest.mark.slow
def test_ctrl_c_mid_unit_then_resume_reuses_the_finished_unit(tmp_path, small_data):
    """k-fold, one unit at a time (--num_cpus 1, in either order): Ctrl-C once one unit is
    done and the other sealed its first epoch checkpoint; the resume keeps the finished
    unit byte for byte and continues the other from its checkpoint."""
    out = tmp_path / "out"
    args = ["train", "--mode", "kfold", "--k_folds", "2", *SMALL_RUN, "--epochs", "3", "--num_cpus", "1",
            "--dev_data", small_data["dev"], "--test_data", small_data["test"], "--output_dir", str(out)]
    with Command(args, tmp_path / "state") as run:
        def one_done_one_checkpointed():
            for done, running in (("fold0", "fold1"), ("fold1", "fold0")):
                done_dir, running_dir = _unit_dir(out, done), _unit_dir(out, running)
                if done_dir and (done_dir / "unit.json").is_file() and _sealed_steps(running_dir):
                    return done, running, _sealed_steps(running_dir)[0]
            return None

        done, running, checkpoint_step = run.wait_for(one_done_one_checkpointed,
                                                      "a finished unit and the other's first sealed checkpoint")
        kept = _digest(_unit_dir(out, done))
        code, err = run.finish(signal.SIGINT)
        path = _experiment(out)
        assert code == 130, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert f"raysum train --resume {path}\n" in err, err[-3000:]
        assert run.still_running() == []  # Ray was shut down with the driver
        assert list((tmp_path / "state" / "ray").glob("*.json")) == []  # and its record deleted
        assert not (_unit_dir(out, running) / "unit.json").exists(), "interrupted too late"

    resumed = subprocess.run([RAYSUM, "train", "--resume", str(path)], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "RAYSUM_STATE_DIR": str(tmp_path / "state"), "HF_HUB_OFFLINE": "1"})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"reusing 1 finished unit(s): tiny-bart/{done}" in resumed.stdout
    assert _digest(_unit_dir(out, done)) == kept
    unit = json.loads((_unit_dir(out, running) / "unit.json").read_text())
    assert unit["status"] == "done" and unit["resumed_from_step"] >= checkpoint_step > 0
    assert (path / "submission.csv").is_file()
    assert list((tmp_path / "state" / "ray").glob("*.json")) == []  # a clean exit deletes its record


# Listeners allowed off loopback while a unit trains, each with the reason it cannot be bound there.
KNOWN_EXPOSED = {
    "ray::RayTrainWorker": "torch.distributed's TCPStore: rank 0 of a unit's worker group serves the group's "
                           "rendezvous store on the wildcard address; torch has no bind-address option for it "
                           "(only a pre-bound socket, master_listen_fd, which Ray Train's process-group setup "
                           "does not pass)",
}


def _loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _listeners(processes) -> list[tuple[str, str, int]]:
    found = []
    for process in processes:
        try:
            found += [(process.name(), c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    return found


@pytest.mark.slow
def test_sigterm_mid_unit_exits_143_and_stops_ray(tmp_path, small_data):
    out = tmp_path / "out"
    args = ["train", "--mode", "single", *SMALL_RUN, "--epochs", "2", "--dev_data", small_data["dev"],
            "--test_data", small_data["test"], "--output_dir", str(out)]
    with Command(args, tmp_path / "state") as run:
        run.wait_for(lambda: _training(out, "full"), "the unit's first metrics line")
        listeners = _listeners(run.look())
        code, err = run.finish(signal.SIGTERM)
        assert code == 143, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert "interrupted by SIGTERM" in err and f"raysum train --resume {_experiment(out)}\n" in err, err[-3000:]
        assert run.still_running() == []
    exposed = [entry for entry in listeners if not _loopback(entry[1])]
    assert {name for name, _, _ in listeners} >= {"gcs_server", "raylet", "ray::DashboardAgent"}
    assert all(name in KNOWN_EXPOSED for name, _, _ in exposed), exposed
    assert len(exposed) <= 1, exposed  # the one worker's store


@pytest.mark.slow
def test_ray_left_by_a_sigkilled_run_is_ended_by_the_next_command(tmp_path, small_data):
    state, out = tmp_path / "state", tmp_path / "out"
    args = ["train", "--mode", "single", *SMALL_RUN, "--epochs", "2", "--dev_data", small_data["dev"],
            "--test_data", small_data["test"], "--output_dir", str(out)]
    with Command(args, state) as run:
        run.wait_for(lambda: _training(out, "full"), "the unit's first metrics line")
        record = state / "ray" / f"{socket.gethostname()}.{run.process.pid}.json"
        time.sleep(1.5)  # one more refresh of the record: the unit's workers are in it
        recorded = json.loads(record.read_text())["processes"]
        assert {"gcs_server", "raylet"} <= {p["name"] for p in recorded}
        run.finish(signal.SIGKILL)
        time.sleep(2)  # raylet, GCS and workers notice the driver is gone; the agents do not
        survivors = [p for p in recorded if _running(p["pid"], p["started"])]

        after = subprocess.run([RAYSUM, "config", "show", "--models", "tiny-bart"], capture_output=True, text=True,
                               timeout=120, env={**os.environ, "RAYSUM_STATE_DIR": str(state)})
        assert after.returncode == 0, after.stderr[-3000:]
        assert [p for p in recorded if _running(p["pid"], p["started"])] == []
        assert not record.exists()
        if survivors:
            assert f"left running by a killed raysum command (pid {run.process.pid})" in after.stderr, after.stderr
        assert run.still_running() == []


@pytest.mark.slow
def test_a_local_ray_listens_on_loopback_only(tmp_path, monkeypatch, ray_shutdown):
    import ray

    from raysum.launch import init_ray, shutdown_ray

    assert not ray.is_initialized()
    monkeypatch.setenv("RAYSUM_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    record = tmp_path / "ray" / f"{socket.gethostname()}.{os.getpid()}.json"
    try:
        init_ray(num_cpus=2)
        assert ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid()  # a worker, by value
        driver = psutil.Process()
        own, listeners = _listeners([driver]), _listeners([driver, *driver.children(recursive=True)])
        recorded = json.loads(record.read_text())["processes"]
    finally:
        shutdown_ray()
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, listeners
    assert any(name.startswith("ray::") and name not in ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
               for name in names) and own  # the workers and the driver themselves
    assert [entry for entry in listeners if not _loopback(entry[1])] == []
    assert recorded and not record.exists()
    assert [p for p in recorded if _running(p["pid"], p["started"])] == []
