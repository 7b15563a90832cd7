"""A multi-node Ray cluster on one machine: a head on 127.0.0.1 and N worker nodes, each
a `ray start --block` process of its own, for trying `ray job submit` and node failures
without a cloud.

Every node gets its own temp dir, its own process group and free ports, so the cluster
never touches another Ray instance on the machine: `ray stop` would end every Ray process
of the user, `down` ends only the process groups `up` recorded in `<state>/cluster.json`.
A `ray.init()` without an address does not attach to it either (Ray looks for the last
cluster in its default temp dir, and this cluster's address is written into its own).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from raysum.errors import RaysumError
from raysum.storage import write_text_atomic

STATE_FILE = "cluster.json"
HOST = "127.0.0.1"
# Small object stores: several nodes share this machine's /dev/shm.
OBJECT_STORE_BYTES = 200 * 1024 * 1024
TOKEN_FILE = "auth_token"
# A stopped node goes at once (nothing serves traffic to drain).
NODE_ENV = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


@dataclass
class LocalNode:
    """One `ray start --block` process: its process group is the node."""

    name: str
    pid: int
    temp_dir: str
    log: str
    resources: dict
    num_cpus: float
    node_id: str | None = None


@dataclass
class LocalCluster:
    gcs_address: str
    dashboard_url: str
    state_dir: str
    nodes: list[LocalNode] = field(default_factory=list)

    @property
    def head(self) -> LocalNode:
        return self.nodes[0]

    def node(self, name: str) -> LocalNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def client_env(self) -> dict[str, str]:
        """Environment for Ray clients of this cluster (`ray job submit`, the state API):
        its address and its own authentication token."""
        return {"RAY_ADDRESS": self.dashboard_url, "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(Path(self.state_dir) / TOKEN_FILE)}

    def save(self) -> None:
        write_text_atomic(Path(self.state_dir) / STATE_FILE, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, state_dir: str | Path) -> "LocalCluster":
        path = Path(state_dir) / STATE_FILE
        if not path.is_file():
            raise RaysumError(f"no local cluster recorded in {state_dir} (no {STATE_FILE}); start one with "
                              "`raysum cluster up`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["nodes"] = [LocalNode(**n) for n in data["nodes"]]
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise RaysumError(f"{path} is damaged ({type(exc).__name__}: {exc}); stop the nodes it recorded by "
                              f"their process ids if they still run, then delete {path}") from None


def worker_names(count: int) -> list[str]:
    """node_a, node_b, ...: each worker's custom resource, so work can be pinned to it."""
    return [f"node_{chr(ord('a') + i)}" for i in range(count)]


def up(state_dir: str | Path, workers: int = 2, worker_cpus: float = 1, head_cpus: float = 0,
       port: int | None = None, dashboard_port: int | None = None, timeout_s: float = 120) -> LocalCluster:
    """Start the head and `workers` worker nodes; returns when every node is alive.
    `head_cpus` 0 keeps units off the head (it runs the job drivers and the units' zero-CPU
    fit tasks); each worker gets `worker_cpus` logical CPUs and a resource named after it."""
    state = Path(state_dir).resolve()
    if (state / STATE_FILE).is_file():
        raise RaysumError(f"{state} already records a cluster; `raysum cluster down --state {state}` first")
    state.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    dashboard_port = dashboard_port or free_port()
    cluster = LocalCluster(gcs_address=f"{HOST}:{port}", dashboard_url=f"http://{HOST}:{dashboard_port}",
                           state_dir=str(state))
    _write_token(state / TOKEN_FILE)
    try:
        head_flags = ["--head", f"--port={port}", "--include-dashboard=true", f"--dashboard-host={HOST}",
                      f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={free_port()}"]
        cluster.nodes.append(_start_node(cluster, "head", head_cpus, {}, head_flags))
        cluster.save()
        _wait_for_nodes(cluster, 1, timeout_s)
        for name in worker_names(workers):
            cluster.nodes.append(_start_node(cluster, name, worker_cpus, {name: 1},
                                             [f"--address={cluster.gcs_address}"]))
            cluster.save()
        _wait_for_nodes(cluster, len(cluster.nodes), timeout_s)
    except BaseException:
        down(state)
        raise
    cluster.save()
    return cluster


def _write_token(path: Path) -> None:
    """The cluster's own token (Ray's token authentication, as `ray get-auth-token --generate`
    makes), readable by the user only: no shared ~/.ray/auth_token is created or used."""
    write_text_atomic(path, secrets.token_hex(32))  # its temporary file is created readable by the user only


def _start_node(cluster: LocalCluster, name: str, num_cpus: float, resources: dict, flags: list[str]) -> LocalNode:
    temp_dir = tempfile.mkdtemp(prefix=f"rs-{name}-", dir="/tmp")  # short: Ray's socket paths have a length limit
    log = Path(cluster.state_dir) / f"{name}.log"
    command = [_ray_cli(), "start", "--block", f"--node-ip-address={HOST}", f"--num-cpus={num_cpus:g}",
               "--num-gpus=0", f"--resources={json.dumps(resources)}", f"--temp-dir={temp_dir}",
               f"--object-store-memory={OBJECT_STORE_BYTES}", f"--dashboard-agent-listen-port={free_port()}",
               "--disable-usage-stats", *flags]
    env = {**os.environ, **cluster.client_env(), **NODE_ENV}
    env.pop("RAY_ADDRESS")  # a node joins through --address
    # Job entrypoints (`python ...`, `raysum ...`) resolve in this Python's environment, as if activated.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)  # its own process group: `down` ends exactly this node
    return LocalNode(name=name, pid=process.pid, temp_dir=temp_dir, log=str(log), resources=resources,
                     num_cpus=num_cpus)


def _ray_cli() -> str:
    """The `ray` next to this Python, so nodes run the same Ray as the caller."""
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.is_file() else (shutil.which("ray") or "ray")


def _wait_for_nodes(cluster: LocalCluster, count: int, timeout_s: float) -> None:
    """Wait until the first `count` nodes report "Ray runtime started."; record each node's
    Ray node id from its raylet's command line (no dashboard call: it may need a token)."""
    deadline = time.time() + timeout_s
    for node in cluster.nodes[:count]:
        while not (_started(node) and node.node_id):
            if _exited(node.pid):
                raise RaysumError(f"Ray node {node.name} exited while starting; its log {node.log}:\n"
                                  + _tail(node.log))
            if time.time() > deadline:
                raise RaysumError(f"Ray node {node.name} did not start in {timeout_s:.0f} s; its log {node.log}:\n"
                                  + _tail(node.log))
            node.node_id = raylet_node_id(node.pid)
            time.sleep(0.5)


def _started(node: LocalNode) -> bool:
    return "Ray runtime started." in Path(node.log).read_text(errors="replace")


def raylet_node_id(pgid: int) -> str | None:
    """The node id on the command line of the raylet in process group `pgid`."""
    for pid in group_pids(pgid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if args and args[0].endswith("/raylet"):
            for arg in args:
                if arg.startswith("--node_id="):
                    return arg.split("=", 1)[1]
    return None


def down(state_dir: str | Path, grace_s: float = 20) -> list[str]:
    """End the nodes recorded in `state_dir` (workers first, then the head) and remove
    their temp dirs. Returns the names of the nodes that were still running."""
    cluster = LocalCluster.load(state_dir)
    stopped = []
    for node in reversed(cluster.nodes):
        if stop_node(node, grace_s):
            stopped.append(node.name)
        shutil.rmtree(node.temp_dir, ignore_errors=True)
    (Path(state_dir) / STATE_FILE).unlink()
    return stopped


def stop_node(node: LocalNode, grace_s: float = 20, kill: bool = False) -> bool:
    """End one node's process group: SIGTERM (Ray cleans up its processes), SIGKILL after
    `grace_s`; `kill` sends SIGKILL at once, as a machine failure would. False if it was gone."""
    if _exited(node.pid) and not _group_alive(node.pid):
        return False
    _signal_group(node.pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.time() + grace_s
    while _group_alive(node.pid) and time.time() < deadline:
        time.sleep(0.2)
    if _group_alive(node.pid):
        _signal_group(node.pid, signal.SIGKILL)
        while _group_alive(node.pid) and time.time() < deadline + 10:
            time.sleep(0.2)
    _exited(node.pid)
    return True


def group_pids(pgid: int) -> list[int]:
    """Processes of a process group (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _group_alive(pgid: int) -> bool:
    return bool(group_pids(pgid))


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _exited(pid: int) -> bool:
    """True when `pid` is gone; reaps it when it is our child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    except ChildProcessError:
        pass  # not our child (a later `down`): ask the kernel
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return stat[0] == "Z"
    except OSError:
        return True


def _tail(path: str, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
