"""The data feed: everything the scheduler reads, and nothing it decides.

open(): scan the first records (profile, kind, config, input size), start the in-memory
store (with a second, larger view for a pretrained trunk when the images are larger than
the network's input), read what the quick model needs and split off the held-out examples.
read_more() goes on reading in slices while training runs; read_test() reads the test set
once, in each stored view; reread() reads a split again at another size, for the transfer
stage's larger features.
"""
import itertools
import logging
import os

import numpy as np

from .config import load_configs
from .data.decode import iter_examples, iter_records
from .data.profile import first_side, input_size, scan, transfer_size
from .data.store import ExampleStore, FrameAdapter

log = logging.getLogger("skeleton")


class DataFeed:
    def __init__(self, metadata, configs=None):
        self.metadata = metadata
        self.configs = configs or load_configs()  # {kind: Config}; the kind picks one
        self.cfg = None
        self.classes = metadata.get_output_size()
        self.total = metadata.size()
        self.store = None
        self.test_x = None    # the test set at the network's size
        self.test_x2 = None   # ... and at the second view's, when there is one

    # -- the first read --------------------------------------------------------------------
    def open(self, dataset, time_left=None):
        """Scan, size, read the first slice and split. Sets profile, kind, cfg, shape,
        transfer_shape, store, train_idx, valid_idx and sorted; returns self. `time_left`
        (seconds) sizes the pretrained trunk's view by its estimated cost."""
        examples = iter_examples(dataset, self.metadata)
        probe = self.configs["image"].data.scan_records  # the kind is not known yet
        first = list(itertools.islice(examples, probe))
        if not first:
            raise ValueError(f"{self.metadata.get_dataset_name()}: no training records")
        self.profile = scan(first, self.classes, self.metadata.is_compressed(0))
        self.kind = "video" if self.profile.is_video else "image"
        self.cfg = cfg = self.configs[self.kind]
        data = cfg.data
        self.shape = input_size(self.profile, data)
        second, second_max = self._second_view(time_left)
        self.store = ExampleStore(itertools.chain(first, examples),
                                  FrameAdapter(self.profile, *self.shape), self.classes,
                                  data.cache_max_mb * 2 ** 20, second, second_max)
        self.sorted = self.profile.looks_sorted(data.sorted_unseen_ratio)
        held = data.holdout_first
        if held > self.store.size:  # the caller's held-out records, whole, before training
            self.store.fill(max_records=held - self.store.size)
        if self.sorted:  # the first records say nothing of the rest: read everything
            self.store.fill()
        else:
            self.store.fill(max_records=cfg.quick.train_records,
                            max_seconds=cfg.quick.read_seconds)
        self._split(data)
        log.info("profile %s; input %s; loaded %d/%d; valid %d; sorted %s", self.profile,
                 self.shape, self.store.size, self.total, len(self.valid_idx), self.sorted)
        return self

    def _second_view(self, time_left):
        """The adapter (and how many examples) for a pretrained trunk's larger input, when
        transfer is on and the images are larger than the network's input; else (None, 0)."""
        tcfg = self.cfg.transfer
        self.transfer_shape = None
        if not tcfg.enabled:
            return None, 0
        from .device import gpu_present
        frames, height, width = self.shape
        data = self.cfg.data
        # The first head needs the held-out, probe and test examples; the test set is not
        # known yet: assume it as large as the other two.
        examples = 2 * (self._held_out_size(data) + min(self.total, tcfg.probe_records))
        seconds = tcfg.first_head_fraction * (time_left or tcfg.assumed_budget_s)
        valid_max = max(data.valid_max, data.holdout_first)
        stored = min(self.total, tcfg.max_train_records + valid_max)
        side = first_side(examples, stored, seconds, min(frames, tcfg.max_frames), tcfg,
                          gpu_present())
        self.transfer_shape = transfer_size(self.profile.height, self.profile.width, side,
                                            tcfg)
        native = self.profile.height <= height and self.profile.width <= width
        if native or (self.transfer_shape[0] <= height and self.transfer_shape[1] <= width):
            return None, 0  # the stored images are as large as needed: resized on the fly
        second = FrameAdapter(self.profile, frames, *self.transfer_shape)
        return second, tcfg.max_train_records + valid_max

    def _held_out_size(self, data):
        """How many examples to hold out: the caller's (holdout_first), else valid_ratio of
        the set, within valid_min-valid_max."""
        if data.holdout_first > 0:
            return min(data.holdout_first, self.total)
        return min(max(int(data.valid_ratio * self.total), data.valid_min),
                   data.valid_max)

    def _split(self, data):
        """Held-out examples: valid_ratio of the set, but at least valid_min (small sets: every
        choice is made on these examples) and at most valid_max and a third of what is loaded.
        The first ones on large sets (file order is as good as random there); on small or
        sorted sets a draw that does not hang on how many records the first, time-sliced read
        got: the examples with the smallest of fixed random keys among the first 3 x the
        held-out size (all of a sorted set, which is read whole), so two runs on the same data
        hold out the same examples. With holdout_first > 0 the caller chose them: exactly the
        first that many records (open() reads them all first), whatever the order says."""
        if data.holdout_first > 0:
            n_valid = min(data.holdout_first, self.store.size)
            self.valid_idx = np.arange(n_valid)
            self.train_idx = np.arange(n_valid, self.store.size)
            return
        shuffle = self.sorted or self.total < data.shuffle_below
        size = self.store.size
        wanted = self._held_out_size(data)
        n_valid = min(wanted, size // 3)
        if shuffle:
            pool = size if self.sorted else min(size, 3 * wanted)
            keys = np.random.default_rng(0).random(pool)
            held_out = np.argsort(keys, kind="stable")[:n_valid]
        else:
            held_out = np.arange(n_valid)
        self.valid_idx = np.sort(held_out)
        self.train_idx = np.setdiff1d(np.arange(size), self.valid_idx)

    # -- reading on ------------------------------------------------------------------------
    def read_more(self, seconds):
        """Read another slice of training records (all new ones train)."""
        if self.store.exhausted:
            return
        before = self.store.size
        self.store.fill(max_seconds=seconds)
        self.train_idx = np.concatenate([self.train_idx, np.arange(before, self.store.size)])

    @property
    def has_second(self):
        return self.store.x2 is not None

    def arrays(self, second=False):
        """(x, y) of the stored examples, in the second view if asked (it may hold fewer)."""
        return self.store.second_arrays() if second else self.store.arrays()

    def train_indices(self, second=False):
        """The training examples a view holds (the second view may hold fewer)."""
        if not second:
            return self.train_idx
        return self.train_idx[self.train_idx < len(self.store.second_arrays()[0])]

    def valid_predictions(self, predict, second=False):
        """predict(x_valid) in the given view; None without held-out data."""
        if len(self.valid_idx) == 0:
            return None
        return predict(self.arrays(second)[0][self.valid_idx])

    def valid_labels(self):
        return self.store.arrays()[1][self.valid_idx]

    # -- the test set ----------------------------------------------------------------------
    def read_test(self, dataset):
        """The test set, once, at the network's size (and at the second view's)."""
        if self.test_x is not None:
            return
        adapter, second = self.store.adapter, self.store.second
        frames, frames2 = [], []
        for x, _ in iter_examples(dataset, _TestMetadata(self.metadata)):
            frames.append(adapter(x))
            if second is not None:
                frames2.append(second(x))
        if second is not None:
            self.test_x2 = (np.stack(frames2) if frames2
                            else np.zeros((0, *self.store.x2.shape[1:]), np.uint8))
        self.test_x = (np.stack(frames) if frames
                       else np.zeros((0, *self.store.x.shape[1:]), np.uint8))

    def test_view(self, second=False):
        return self.test_x2 if second and self.test_x2 is not None else self.test_x

    def reread(self, test, shape):
        """The training (or test) records once more, in the stored order, as uint8 frames at
        `shape` (frames, height, width), one at a time: features at a larger side than the
        stored views need, without keeping those images (the fast reader only)."""
        metadata = _TestMetadata(self.metadata) if test else self.metadata
        adapter = FrameAdapter(self.profile, *shape)
        return (adapter(x) for x, _ in iter_records(metadata))


class _TestMetadata:
    """The train metadata, pointed at the test split folder for the fast reader."""

    def __init__(self, train_metadata):
        self._train = train_metadata
        # The test split lies beside the train split (the protocol's layout).
        train_dir = train_metadata.get_dataset_name()
        self._dir = os.path.join(os.path.dirname(train_dir.rstrip("/")), "test")

    def get_dataset_name(self):
        return self._dir

    def __getattr__(self, name):
        return getattr(self._train, name)
