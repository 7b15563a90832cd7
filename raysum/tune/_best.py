"""The best trial of a search, the same whichever command names it: the best metric, and
among equal scores the trial created first.

Ray's own choice among equal scores follows the order of its trial list, which is the
order of creation in a running search but not in one read back from disk (there it
follows the state file), so ``raysum tune`` and ``raysum analyze`` could name two
different trials of one search. Ties are common in stage-2 searches, where several
decoding or weight choices select the same summaries.
"""

from __future__ import annotations

import math


def creation_number(experiment_tag: str | None) -> float:
    """The trial's number in order of creation: Tune's experiment tag starts with it
    ("3_strategy=voting,..."); inf when it does not."""
    head = str(experiment_tag or "").split("_", 1)[0]
    return int(head) if head.isdigit() else math.inf


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def best_result(results, metric: str, mode: str):
    """The ``ray.tune.Result`` of the best finished trial of ``results`` (a ResultGrid) by its
    last reported ``metric`` (``mode`` max|min), ties to the earliest created; None when no
    trial reported the metric."""
    finished = [r for r in results if r.error is None and _finite((r.metrics or {}).get(metric))]
    if not finished:
        return None
    sign = -1.0 if mode == "max" else 1.0
    return min(finished, key=lambda r: (sign * r.metrics[metric], creation_number(r.metrics.get("experiment_tag"))))
