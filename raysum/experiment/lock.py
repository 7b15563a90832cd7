"""One writer per experiment directory.

Every command that writes into an experiment directory (a run, a resume, an ensemble, a
candidate search, predict, report) holds ``DIR/.raysum.lock`` while it writes. The lock
file says who holds it (pid, host, command, since when); it is created with O_EXCL, so
two commands can never both hold it. A lock left by a process that no longer exists on
this host (killed with SIGKILL, a crashed machine) is stale: it is removed with a note.
A lock held by a live process, or by another host (whose processes cannot be checked
from here), refuses the second writer with a message saying who holds it.

The locks this process holds are known (:func:`held`): the command line names the
experiment to resume when a run is interrupted.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from raysum.errors import RaysumError
from raysum.experiment import layout

_HELD: list["ExperimentLock"] = []


class LockedError(RaysumError):
    """Another command is writing to the experiment directory."""


def _alive(pid: int, started: float | None) -> bool:
    """Whether process ``pid`` exists and is the one that took the lock (not a reused pid)."""
    try:
        import psutil

        process = psutil.Process(pid)
        return started is None or abs(process.create_time() - started) < 2
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    except Exception:  # psutil.NoSuchProcess, AccessDenied on a dead zombie
        return False


def _process_started() -> float | None:
    try:
        import psutil

        return psutil.Process(os.getpid()).create_time()
    except Exception:  # noqa: BLE001 - without psutil only the pid is checked
        return None


class ExperimentLock:
    """``with ExperimentLock(path, "train"):`` holds ``path/.raysum.lock`` for the block."""

    def __init__(self, path: str | Path, command: str, resume: str | None = None):
        self.path = Path(path)
        self.command = command
        # What to run to continue after an interruption (None: nothing to continue).
        self.resume = resume
        self.notes: list[str] = []
        self._owned = False

    @property
    def file(self) -> Path:
        return self.path / layout.LOCK_FILE

    def acquire(self) -> "ExperimentLock":
        if any(lock.path == self.path and lock._owned for lock in _HELD):
            return self  # this process already writes here (a resume calling the ensemble step)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "argv": sys.argv, "since": time.time(), "process_started": _process_started()}
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_or_clear()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(record))
            self._owned = True
            _HELD.append(self)
            return self
        raise LockedError(f"{self.path}: could not take {layout.LOCK_FILE} (another command took it meanwhile)")

    def _refuse_or_clear(self) -> None:
        try:
            holder = json.loads(self.file.read_text(encoding="utf-8"))
            pid, host = int(holder["pid"]), str(holder["host"])
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (ValueError, KeyError, TypeError, OSError):
            raise LockedError(f"{self.file} is damaged; if no raysum command is writing to {self.path}, "
                              "delete that file and run again") from None
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
        who = f"pid {pid} on {host} (raysum {holder.get('command', '?')}, since {since})"
        if host == socket.gethostname() and not _alive(pid, holder.get("process_started")):
            self.file.unlink(missing_ok=True)
            self.notes.append(f"removed a stale lock of {who}: that process no longer exists")
            return
        if host != socket.gethostname():
            raise LockedError(f"{self.path} is being written by {who}; wait for it to end. If that process is "
                              f"gone, delete {self.file} (a process on another host cannot be checked from here)")
        raise LockedError(f"{self.path} is being written by {who}; wait for it to end or stop it first "
                          "(two commands writing one experiment directory would overwrite each other's files)")

    def release(self) -> None:
        if not self._owned:
            return
        self._owned = False
        if self in _HELD:
            _HELD.remove(self)
        try:
            holder = json.loads(self.file.read_text(encoding="utf-8"))
            if holder.get("pid") == os.getpid():
                self.file.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def held() -> list[ExperimentLock]:
    """The experiment locks this process holds, oldest first."""
    return list(_HELD)
