"""Freeing the worker group of a training trial that Tune ended early.

When Tune stops a trial (ASHA), it kills the trial's actor, so Ray Train's controller
dies without removing its worker group's placement group. Train's cleaner actor, which
should, asks the state API whether the controller lives; without a dashboard, or with
several Ray instances on one host, that call fails, the group stays reserved and the
next trials wait for its cores forever. Each trial's unit reports the id of its worker
group, and this driver-side callback removes the group once Tune is done with the trial.
"""

from __future__ import annotations

from ray.tune import Callback

from raysum.launch import PLACEMENT_GROUP_KEY


class WorkerGroupRelease(Callback):
    def on_trial_complete(self, iteration, trials, trial, **info):
        remove_group((trial.last_result or {}).get(PLACEMENT_GROUP_KEY))

    def on_trial_error(self, iteration, trials, trial, **info):
        remove_group((trial.last_result or {}).get(PLACEMENT_GROUP_KEY))


def remove_group(group_id: str | None) -> None:
    """Remove a placement group by id unless it is gone already (a finished unit's is)."""
    if not group_id:
        return
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    group = PlacementGroup(PlacementGroupID.from_hex(group_id))
    if placement_group_table(group).get("state") not in (None, "REMOVED"):
        remove_placement_group(group)
