"""Fixtures shared by the tests: small data, and Ray (started here or by the code under test)
shut down after each use."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import pandas as pd
import pytest

from raysum.data import bundled_data


@pytest.fixture(scope="session", autouse=True)
def _raysum_state_dir(tmp_path_factory):
    """Records of the local Ray instances started in-process go to a temporary directory, not ~/.cache/raysum."""
    if "RAYSUM_STATE_DIR" not in os.environ:
        os.environ["RAYSUM_STATE_DIR"] = str(tmp_path_factory.mktemp("raysum_state"))
    yield


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> dict:
    """Bundled data cut down: 24 dev and 24 test dialogues as CSV paths (train is sampled by the run)."""
    root = tmp_path_factory.mktemp("data")
    paths = {}
    for split in ("dev", "test"):
        path = root / f"{split}.csv"
        pd.read_csv(bundled_data(split)).head(24).to_csv(path, index=False)
        paths[split] = str(path)
    return paths


@contextmanager
def _ray_session():
    try:
        yield
    finally:
        import ray

        ray.shutdown()


@pytest.fixture(scope="session")
def ray_session():
    """A context manager for code under test that starts Ray itself (the CLI): Ray is shut
    down when the block ends, failed or not, so the next test starts its own."""
    return _ray_session


@pytest.fixture
def ray_shutdown(ray_session):
    """Ray started by the test's code is shut down after the test."""
    with ray_session():
        yield


@pytest.fixture
def local_ray(ray_session):
    """A local Ray with 4 logical CPUs (like Ray's `ray_start_4_cpus`): on 2 cores a trial or
    driver holding a CPU never starves the worker it waits for."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with ray_session():
        yield


@pytest.fixture(autouse=True)
def _only_slow_tests_start_ray(request):
    """`-m "not slow"` is the fast suite: a test that leaves Ray running must be marked slow."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and request.node.get_closest_marker("slow") is None and ray.is_initialized():
        ray.shutdown()
        pytest.fail("this test started Ray: mark it @pytest.mark.slow")
