"""The held-out split (skeleton/feed.py): its size on small and large sets, and the
caller's own held-out records (data.holdout_first, fit --valid)."""
import os
import types

import numpy as np
import pytest

from skeleton.config import load_config, load_configs
from skeleton.feed import DataFeed

DATA = load_config("image").data


def _split(total, loaded, is_sorted=False, data=DATA):
    """A feed of `total` records, `loaded` of them read, split as at the first train()."""
    metadata = types.SimpleNamespace(get_output_size=lambda: 3, size=lambda: total)
    feed = DataFeed(metadata)
    feed.store = types.SimpleNamespace(size=loaded)
    feed.sorted = is_sorted
    feed._split(data)
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


@pytest.mark.parametrize("total, loaded, is_sorted, n", [
    (1000, 400, False, 30),     # a large set would hold out its first records anyway
    (300, 300, False, 250),     # a small one would draw at random, at most a third
    (3000, 3000, True, 21),     # a sorted one would draw from all of it
    (60000, 6000, False, 900),  # more than valid_max
])
def test_holdout_first_holds_out_exactly_the_first_records(total, loaded, is_sorted, n):
    feed = _split(total, loaded, is_sorted, DATA.replace(holdout_first=n))
    assert list(feed.valid_idx) == list(range(n))
    assert list(feed.train_idx) == list(range(n, loaded))  # never trained on
    assert feed._held_out_size(DATA.replace(holdout_first=n)) == n


def test_holdout_first_is_off_by_default():
    assert DATA.holdout_first == 0  # the harness path: the feed draws its own


def test_open_reads_the_held_out_records_first_and_keeps_them_out(tmp_path):
    """Through open() on a written dataset: the first read (here 10 records) is shorter than
    the held-out set (40), which is read whole first; reading on adds training records only;
    the held-out labels are those of the first 40 records."""
    from autodl.tfdata import AutoDLMetadata
    from autodl.writer import write_dataset
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    images = list(rng.integers(0, 256, (200, 12, 12, 1)).astype(np.float32) / 255)
    path = write_dataset(tmp_path / "a", "a", (images, labels), (images[:5], labels[:5]),
                         output_dim=3, image_format="dense")
    metadata = AutoDLMetadata(os.path.join(path, "a.data", "train"))
    overrides = {"data": {"holdout_first": 40, "shuffle_below": 0},
                 "quick": {"train_records": 10, "read_seconds": 60.0},
                 "transfer": {"enabled": False}}
    feed = DataFeed(metadata, load_configs(overrides)).open(None)
    assert not feed.sorted and feed.store.size >= 40
    assert list(feed.valid_idx) == list(range(40))
    assert np.array_equal(feed.valid_labels().argmax(axis=1), labels[:40])
    feed.read_more(60.0)
    assert feed.store.size == 200
    assert list(feed.train_idx) == list(range(40, 200))
