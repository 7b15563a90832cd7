"""Ctrl-C and SIGTERM: every command stops the same way, without a traceback.

SIGINT raises KeyboardInterrupt and SIGTERM raises :class:`raysum.errors.Terminated` (a
KeyboardInterrupt), so what stops cleanly on Ctrl-C stops the same way on SIGTERM. The
handler notes which experiment directories the command was writing at that moment (the
locks it held, :mod:`raysum.experiment.lock`); by the time the exception reaches the CLI
those locks are released. :meth:`Interrupts.stop` then shuts Ray down (a local instance
with every process it started), ignoring further signals meanwhile (a second Ctrl-C
cutting the shutdown short would leave Ray running), and names the command that
continues. Exit codes follow the shell's convention: 128 + the signal's number.

While Ray Tune runs (a training search) its own SIGINT handler is in place: the first
Ctrl-C ends the search after Tune saved its state, and the search raises
:class:`raysum.errors.Interrupted`. A SIGTERM then goes to Tune's handler, the same way.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from raysum.errors import Terminated

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Interrupts:
    """``with interrupts.handlers():`` around a command; ``interrupts.stop(...)`` after it was interrupted."""

    def __init__(self):
        self.signal: int | None = None
        self.resume: list[str] = []

    @contextmanager
    def handlers(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only
            return
        previous = {sig: signal.getsignal(sig) for sig in SIGNAL_NAMES}
        for sig in SIGNAL_NAMES:
            signal.signal(sig, self._on_signal)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, frame) -> None:
        if self.signal is not None:
            return  # the first signal is already stopping the command
        locks = sys.modules.get("raysum.experiment.lock")  # not imported yet: no lock is held
        self.signal = signum
        self.resume = [lock.resume for lock in locks.held() if lock.resume] if locks else []
        if signum == signal.SIGTERM:
            on_sigint = signal.getsignal(signal.SIGINT)
            if callable(on_sigint) and on_sigint not in (self._on_signal, signal.default_int_handler):
                on_sigint(signal.SIGINT, frame)  # a graceful stop of its own is in place (Ray Tune's)
                return
            raise Terminated()
        raise KeyboardInterrupt()

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or signal.SIGINT)

    def stop(self, console, message: str | None = None) -> int:
        """Shut Ray down, say what was interrupted and how to continue; returns the exit code."""
        from raysum.launch import shutdown_ray

        if self.signal is None:
            self.signal = signal.SIGINT  # a KeyboardInterrupt that no handler of ours raised
        ignored = {}
        if threading.current_thread() is threading.main_thread():
            ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNAL_NAMES}
        try:
            shutdown_ray()
        finally:
            for sig, handler in ignored.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        console.print(self.text(message), markup=False, highlight=False, soft_wrap=True)
        return self.exit_code

    def text(self, message: str | None = None) -> str:
        head = f"interrupted by {SIGNAL_NAMES.get(self.signal, f'signal {self.signal}')}"
        head += "; Ray is stopped" if "ray" in sys.modules else ""  # a command that used Ray
        if message:
            return f"{head}: {message}"
        if self.resume:
            return (f"{head}. Finished work is kept; a unit that was training continues from its last complete "
                    f"epoch checkpoint. Continue with:\n  {self.resume[0]}")
        return f"{head}; there is nothing to resume (run the command again)"
