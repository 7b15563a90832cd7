"""Launching units: on a local instance what fits, plus one waiting behind each unit that
trains; everything at once on a cluster that can grow; the unit's TorchTrainer without the
dataset actor."""

from __future__ import annotations

from raysum.pipeline._queue import UnitQueue


def _queue(capacity, demands):
    launched = []
    queue = UnitQueue(lambda name, config: launched.append(name) or name, capacity)
    for i, demand in enumerate(demands):
        queue.add(f"u{i}", {"i": i}, demand)
    return queue, launched


def test_a_local_instance_runs_what_fits_then_one_more_behind_each_unit_that_trains():
    queue, launched = _queue({"CPU": 2.0}, [{"CPU": 1.0}] * 6)
    assert queue.launch_ready() == ["u0", "u1"]  # nothing more while their processes start
    assert queue.started("u0") == ["u2"]  # u2's controller starts and waits for room
    assert queue.started("u0") == []
    assert queue.started("u1") == ["u3"]
    assert queue.finished("u1") == []  # u2 takes u1's room, u3 still waits
    assert list(queue.in_flight) == ["u0", "u2", "u3"]
    assert queue.started("u2") == ["u4"]  # u3 and u4 wait behind u0 and u2
    assert queue.finished("u0") == [] and queue.started("u3") == ["u5"]
    for name in ("u2", "u3", "u4", "u5"):
        assert queue.finished(name) == []
    assert launched == [f"u{i}" for i in range(6)]  # plan order
    assert queue.started("u9") == []  # a unit not in flight changes nothing


def test_units_that_fit_nowhere_together_go_one_at_a_time_and_mixed_demands_are_summed():
    queue, _ = _queue({"CPU": 2.0}, [{"CPU": 2.0}] * 3)
    assert queue.launch_ready() == ["u0"]
    assert queue.started("u0") == ["u1"]  # u1 waits for all of u0's room
    assert queue.finished("u0") == [] and queue.started("u1") == ["u2"]

    gpu_unit, cpu_unit = {"CPU": 2.0, "GPU": 1.0}, {"CPU": 1.0}
    queue, _ = _queue({"CPU": 4.0, "GPU": 1.0}, [gpu_unit, gpu_unit, cpu_unit, cpu_unit])
    assert queue.launch_ready() == ["u0"]  # u1 needs u0's GPU
    assert queue.started("u0") == ["u1"]  # u2 would need a 5th CPU next to both
    assert queue.finished("u0") == ["u2", "u3"]  # u1 gets the GPU, both 1-CPU units fit beside it


def test_a_cluster_that_can_grow_gets_every_unit_at_once():
    queue, _ = _queue(None, [{"CPU": 4.0}] * 5)
    assert queue.launch_ready() == ["u0", "u1", "u2", "u3", "u4"]


def test_capacity_is_fixed_only_for_a_local_instance_this_process_started():
    from raysum.launch import fixed_capacity, unit_demand
    from raysum.config import load_preset

    assert fixed_capacity() is None  # no Ray here (a joined cluster also gives None: it may autoscale)
    assert unit_demand(load_preset("tiny-bart")) == {"CPU": 1.0}


def test_the_unit_trainer_starts_no_dataset_actor_but_keeps_the_placement_group_cleaner():
    from ray.train import ScalingConfig
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    from raysum.launch import unit_trainer_class

    trainer = unit_trainer_class()(lambda config: None, train_loop_config={},
                                   scaling_config=ScalingConfig(num_workers=1))
    kinds = [type(cb) for cb in trainer._create_default_callbacks()]
    assert DatasetsCallback not in kinds
    assert PlacementGroupCleanerCallback in kinds  # a controller that dies still frees its workers' resources
