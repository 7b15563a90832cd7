"""One small registry for the families of interchangeable things: ensemble strategies,
TTA strategies, augmentation methods, model architectures.

    STRATEGIES = Registry("ensemble strategy", check=lambda item: callable(item))
    STRATEGIES.register("voting", voting.select)
    STRATEGIES.unknown(["voting", "nope"])   # ["ensemble strategy 'nope' is unknown; ..."]

A registry is a dict (name -> item, in registration order); validation reads the names
from it, so a newly registered name is accepted everywhere at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class Registry(dict):
    """Named items of one kind, with an optional check of what may be registered."""

    def __init__(self, kind: str, check: Callable[[Any], str | None] | None = None):
        super().__init__()
        self.kind = kind
        self.check = check  # returns why an item cannot be registered, or None

    def register(self, name: str, item: Any, *, replace: bool = True) -> None:
        why = self.check(item) if self.check else None
        if why:
            raise TypeError(f"{self.kind} {name!r}: {why}")
        if name in self and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass replace=True to replace it")
        self[name] = item

    def unknown(self, names: Iterable[str], what: str | None = None, choose: str = "choose from") -> list[str]:
        """One problem per name that is not registered."""
        return [f"{what or self.kind} {name!r} is unknown; {choose} {', '.join(self)}"
                for name in names if name not in self]
