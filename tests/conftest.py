"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import pandas as pd
import pytest

from raysum.data import bundled_data


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
