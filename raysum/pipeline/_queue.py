"""Which units are launched when: all at once on a cluster that can grow, as room frees up
on a local instance.

Each launched unit starts its own Ray processes (the fit task, Ray Train's controller and
its helper actors, the worker group), and a waiting unit's controller polls for its
resources. On a local instance nothing can add room, and units launched long before
their resources are free only take CPU from the units that run: on the 2-core machine
the demo's six units launched together began training 30-55 s after launch (20-25 s
this way). There the units that fit are launched first, and once each has started
training one more unit is launched behind it, whose controller is up and waiting when a
place frees (it then skips the ~10 s of starting one); a finished fit task's process
runs the next unit's fit task. Units go in plan order. On a joined cluster every unit
is launched at once: the worker groups that wait are what its autoscaler adds nodes for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from raysum.launch import UnitJob


@dataclass
class UnitQueue:
    """Units waiting for launch; ``capacity`` None launches every one at once."""

    launch: Callable[[str, dict], UnitJob]  # (unit name, unit config) -> the job in flight
    capacity: dict[str, float] | None
    waiting: list[tuple[str, dict, dict[str, float]]] = field(default_factory=list)  # name, config, demand
    in_flight: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> demand, in launch order
    training: set[str] = field(default_factory=set)  # units in flight that have started

    def add(self, name: str, config: dict, demand: dict[str, float]) -> None:
        self.waiting.append((name, config, demand))

    def launch_ready(self) -> list[UnitJob]:
        """Launch, in order, the waiting units that fit next to those in flight (the first
        one always: it waits for Ray as before), and one more behind each unit that trains."""
        jobs = []
        while self.waiting and (self.capacity is None or self._fits(self.in_flight.values(), self.waiting[0][2])
                                or self._queued() < len(self.training)):
            name, config, demand = self.waiting.pop(0)
            self.in_flight[name] = demand
            jobs.append(self.launch(name, config))
        return jobs

    def started(self, name: str) -> list[UnitJob]:
        """A unit in flight began training: one more may wait behind it."""
        if name in self.in_flight:
            self.training.add(name)
        return self.launch_ready()

    def finished(self, name: str) -> list[UnitJob]:
        """A unit ended (done or failed): its room goes to the units waiting."""
        self.in_flight.pop(name, None)
        self.training.discard(name)
        return self.launch_ready()

    def _queued(self) -> int:
        """Units in flight without room yet (placed in launch order)."""
        placed: list[dict[str, float]] = []
        for demand in self.in_flight.values():
            if self._fits(placed, demand):
                placed.append(demand)
        return len(self.in_flight) - len(placed)

    def _fits(self, placed: Iterable[dict[str, float]], demand: dict[str, float]) -> bool:
        placed = list(placed)
        if not placed:
            return True
        used = {key: sum(d.get(key, 0.0) for d in placed) for key in demand}
        return all(used[key] + need <= self.capacity.get(key, 0.0) + 1e-9 for key, need in demand.items())
