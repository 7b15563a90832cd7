"""The processes of a local Ray instance, written down so that none outlives its command.

A raysum command killed with SIGKILL cannot stop the Ray instance it started. Raylet,
GCS and the workers notice and exit, but Ray's dashboard and runtime-env agents stay,
reparented to init, ignoring SIGTERM and holding their ports. So while a local instance
runs, the processes it consists of are kept in a record,
``$RAYSUM_STATE_DIR/ray/<host>.<driver pid>.json`` (default ``~/.cache/raysum``): every
process that became a descendant of the driver once Ray started, each by pid and start
time (the pair names one process even after its pid is reused), refreshed every
``REFRESH_S`` seconds by a background thread.

Every raysum command begins with :func:`end_leftovers`: for each record of this host
whose driver is gone, the recorded processes still running end (SIGTERM, then SIGKILL
after ``GRACE_S``; by pid and start time, never by name) and the record is deleted.
A command that ends normally stops its instance and deletes its own record. A driver
that joins a cluster records nothing: the cluster's processes are not its own.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from raysum.storage import write_text_atomic

STATE_ENV = "RAYSUM_STATE_DIR"
RECORDS_DIR = "ray"
REFRESH_S = 1.0
GRACE_S = 2.0
# psutil computes a start time from the boot time and the process's start tick: the same
# process gives the same value; anything further apart is another process on a reused pid.
SAME_START_S = 0.05


def state_dir() -> Path:
    """Per-user state: $RAYSUM_STATE_DIR, default ~/.cache/raysum."""
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".cache" / "raysum")


def records_dir() -> Path:
    return state_dir() / RECORDS_DIR


def _entry(process) -> dict:
    return {"pid": process.pid, "started": process.create_time(), "name": process.name()}


def _process(entry: dict):
    """The running process an entry names (same pid, same start time), else None."""
    import psutil

    try:
        process = psutil.Process(int(entry["pid"]))
        if abs(process.create_time() - float(entry["started"])) > SAME_START_S:
            return None  # the pid now belongs to another process
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None


def end_processes(processes: list, grace_s: float | None = None) -> list:
    """SIGTERM, then SIGKILL for those still running after ``grace_s`` (default GRACE_S);
    returns the processes ended."""
    import psutil

    grace_s = GRACE_S if grace_s is None else grace_s
    signalled = []
    for process in processes:
        try:
            process.terminate()  # psutil checks the start time first: a reused pid is not signalled
            signalled.append(process)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(signalled, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return signalled


class ProcessRecord:
    """This driver's record of the local Ray instance it starts: ``start()`` before
    ``ray.init`` (the processes already running are not Ray's), ``settle()`` after it,
    ``close()`` when the instance is shut down.

    Until ``settle()`` every new descendant of the driver is Ray's (it is starting);
    from then on only the descendants of the processes recorded so far are (the workers
    raylet starts), so a process the driver itself starts later is never recorded."""

    def __init__(self):
        import psutil

        self._driver = psutil.Process()
        self._before = {(p.pid, _safe_start(p)) for p in self._driver.children(recursive=True)}
        self.file = records_dir() / f"{socket.gethostname()}.{os.getpid()}.json"
        self._known: dict[int, dict] = {}
        self._settled = False
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_loop, name="raysum-ray-record", daemon=True)

    def start(self) -> "ProcessRecord":
        self._thread.start()
        return self

    def settle(self) -> None:
        """Ray has started: record its processes now; later, only their descendants."""
        self.refresh()
        self._settled = True

    def refresh(self) -> None:
        """Add the new processes, drop those that ended; write the record when it changed."""
        import psutil

        with self._guard:
            known = {pid: e for pid, e in self._known.items() if _process(e) is not None}
            roots = set(known) if self._settled else {self._driver.pid}
            for child in _descendants(roots):
                if child.pid in known:
                    continue
                try:
                    entry = _entry(child)
                except psutil.Error:
                    continue
                if (entry["pid"], entry["started"]) not in self._before:
                    known[child.pid] = entry
            if known != self._known or not self.file.exists():
                self._known = known
                self._write()

    def processes(self) -> list:
        """The recorded processes still running."""
        with self._guard:
            return [p for p in map(_process, self._known.values()) if p is not None]

    def close(self, end: bool = True) -> list:
        """Stop recording; end the recorded processes still running (``end``); delete the record.
        Returns the processes ended."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=REFRESH_S + 1)
        ended = end_processes(self.processes()) if end else []
        self.file.unlink(missing_ok=True)
        return ended

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a failed refresh (disk full) must not end the run
                pass

    def _write(self) -> None:
        record = {"driver": {**_entry(self._driver), "host": socket.gethostname(), "argv": sys.argv},
                  "updated": time.time(), "processes": sorted(self._known.values(), key=lambda e: e["pid"])}
        self.file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.file, json.dumps(record))  # a reader never sees half a record


def _descendants(roots: set[int]) -> list:
    """Every descendant of the processes ``roots`` (one pass over the process table)."""
    import psutil

    children: dict[int, list] = {}
    for process in psutil.process_iter(["ppid"]):
        children.setdefault(process.info["ppid"], []).append(process)
    found, todo = [], list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in roots:
                found.append(child)
                todo.append(child.pid)
    return found


def _safe_start(process) -> float | None:
    try:
        return process.create_time()
    except Exception:  # noqa: BLE001 - gone meanwhile
        return None


def end_leftovers() -> list[str]:
    """End the processes recorded by raysum commands of this host that no longer run, and
    delete their records; one note per record whose processes were ended. Cheap (a directory
    listing) when there is no record."""
    try:
        files = [f for f in records_dir().iterdir() if f.suffix == ".json" and not f.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    host, notes = socket.gethostname(), []
    for file in files:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            driver = record["driver"]
            if driver["host"] != host or _process(driver) is not None:
                continue  # another machine's (a shared home), or a command still running
            left = [p for p in map(_process, record["processes"]) if p is not None]
        except FileNotFoundError:
            continue  # another command cleared it meanwhile
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a record this version writes: left alone
        names = sorted({_name(p) for p in left})
        ended = end_processes(left)
        file.unlink(missing_ok=True)
        if ended:
            notes.append(f"ended {len(ended)} Ray process(es) ({', '.join(names)}) left running by a killed "
                         f"raysum command (pid {driver['pid']})")
    return notes


def _name(process) -> str:
    try:
        return process.name()
    except Exception:  # noqa: BLE001
        return str(process.pid)
