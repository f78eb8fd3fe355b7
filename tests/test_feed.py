"""The held-out split (skeleton/feed.py): its size on small and large sets."""
import types

import numpy as np
import pytest

from skeleton.config import load_config
from skeleton.feed import DataFeed

DATA = load_config("image")["data"]


@pytest.mark.parametrize("total, loaded, expected", [
    (100, 100, 33),       # a third of what is loaded at most
    (300, 300, 100),      # 10% would be 30: at least valid_min
    (2099, 1100, 209),    # 10%
    (60000, 6000, 512),   # at most valid_max
])
def test_held_out_size_on_small_and_large_sets(total, loaded, expected):
    metadata = types.SimpleNamespace(get_output_size=lambda: 3, size=lambda: total)
    feed = DataFeed(metadata)
    feed.store = types.SimpleNamespace(size=loaded)
    feed.sorted = False
    feed._split(DATA)
    assert len(feed.valid_idx) == expected
    both = np.concatenate([feed.valid_idx, feed.train_idx])
    assert sorted(both) == list(range(loaded))  # disjoint, and every loaded example is used
