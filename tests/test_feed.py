"""The held-out split (skeleton/feed.py): its size on small and large sets."""
import types

import numpy as np
import pytest

from skeleton.config import load_config
from skeleton.feed import DataFeed

DATA = load_config("image").data


def _split(total, loaded, is_sorted=False):
    """A feed of `total` records, `loaded` of them read, split as at the first train()."""
    metadata = types.SimpleNamespace(get_output_size=lambda: 3, size=lambda: total)
    feed = DataFeed(metadata)
    feed.store = types.SimpleNamespace(size=loaded)
    feed.sorted = is_sorted
    feed._split(DATA)
    return feed


@pytest.mark.parametrize("total, loaded, expected", [
    (100, 100, 33),       # a third of what is loaded at most
    (300, 300, 100),      # 10% would be 30: at least valid_min
    (2099, 1100, 209),    # 10%
    (60000, 6000, 512),   # at most valid_max
])
def test_held_out_size_on_small_and_large_sets(total, loaded, expected):
    feed = _split(total, loaded)
    assert len(feed.valid_idx) == expected
    both = np.concatenate([feed.valid_idx, feed.train_idx])
    assert sorted(both) == list(range(loaded))  # disjoint, and every loaded example is used


def test_the_held_out_draw_does_not_hang_on_how_much_the_first_read_got():
    """The first read is time-sliced: 400 or 700 of 1000 records. Both runs hold out the same
    100 examples (before, a permutation of what was loaded: two different sets)."""
    short, long = _split(1000, 400), _split(1000, 700)
    assert len(short.valid_idx) == 100
    assert list(short.valid_idx) == list(long.valid_idx)
    assert list(long.train_idx) == [i for i in range(700) if i not in set(long.valid_idx)]
    assert short.valid_idx.max() >= 150  # a draw, not the first ones


def test_a_sorted_set_draws_its_held_out_examples_from_all_of_it():
    feed = _split(3000, 3000, is_sorted=True)  # classes in blocks: the first ones are one class
    assert len(feed.valid_idx) == 300 and feed.valid_idx.max() > 2700
