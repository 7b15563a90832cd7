"""Errors raysum raises for bad input: each carries every problem found, not just the first."""

from __future__ import annotations


class RaysumError(Exception):
    """Base class: an error a user can fix; the CLI prints it without a traceback.

    Exit codes: 2 for bad input (configuration, data), 1 for anything else (a unit failed).
    """

    exit_code = 1


class ConfigError(RaysumError):
    """The resolved configuration is invalid; ``problems`` lists every reason."""

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class DataError(RaysumError):
    """A dataset file cannot be used; ``problems`` lists every reason (with row numbers)."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, path: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = f"invalid data in {path}:" if path else "invalid data:"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))


class NotAvailableYet(RaysumError):
    """A flag or feature that the parser accepts but that raysum cannot run yet."""

    exit_code = 2


class Interrupted(RaysumError):
    """A command stopped by Ctrl-C or SIGTERM after saving what continuing needs (the
    message says how); the CLI exits 130 (143 after SIGTERM)."""

    exit_code = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by the CLI's handler: what stops cleanly on Ctrl-C stops the same way."""
