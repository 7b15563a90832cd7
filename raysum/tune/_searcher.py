"""OptunaSearch for a search that can be interrupted and restored.

Tune writes its experiment state one last time on Ctrl-C, but the searcher's state file
can be older: a trial suggested in between is in the experiment state (so a restore
runs it again) and unknown to the restored OptunaSearch, whose ``on_trial_result``
then raises KeyError and ends the resumed search. Such a trial's reports are not told
to Optuna (its study misses one observation); Tune still records them, and the best
trial is read from Tune's results.
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class RestorableOptunaSearch(OptunaSearch):
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._ot_trials:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._ot_trials:
            super().on_trial_complete(trial_id, result, error)
