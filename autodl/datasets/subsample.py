"""Stratified subsets of a dataset's training split: the small-data variants of the zoo.

    python -m autodl.datasets subsample --source DIR --n 300 [--seed S] --out DIR

or from Python: `subsample("/tmp/zoo/animals", 300, "/tmp/zoo")`, which writes
/tmp/zoo/animals-n300/ (a dataset named animals-n300; `-sS` is added for a seed other than 0).
The benchmark's `--subsample N ...` uses it to cache subsets beside the zoo data.

- Only the training split is cut; the test split, NAME.solution and the label names are
  copied whole, so scores on a subset compare with those on the source.
- Records are copied byte for byte (nothing is decoded or re-encoded) in the source's order;
  the train metadata gets the new sample_count, the rest of it stays the source's.
- Single-label sets: every class keeps its share of the N records (largest remainders), and
  every class of the source has at least one record when N is at least the number of
  classes (otherwise the N largest classes get one each).
- Multi-label sets: first one record for each label, rarest label first, skipping labels
  already covered (so every label appears when N allows), then the rest drawn at random, which
  keeps label shares in expectation.
- Deterministic given (source, N, seed). The source is only read.
- N must be below the source's training size: a "subset" as large as the source would be
  the source under another name, and a row labelled n1000 that ran on 600 records would
  mislead. Such an N is a one-line error (SubsampleError).
- A finished subset whose build record matches (source, N, seed, and the source's own
  build record) is reused; a stale one, or an interrupted build, is rebuilt; a folder at the
  destination that this module did not make is never touched.
"""
import json
import os
import shutil
import tempfile

import numpy as np

from .. import codec, layout
from ..reader import interleave
from ..records import RecordError, frame, iter_records
from ._common import ZooError

RECORD_FILE = "subsample.json"
SUBSAMPLE_VERSION = 1


class SubsampleError(ZooError):
    """Bad input for a subset: one line; `flag` says which input (n, seed, source, out), so
    each front end can name its own flag."""

    def __init__(self, flag, message):
        super().__init__(message)
        self.flag = flag


def subset_name(source_name, n, seed=0):
    return f"{source_name}-n{n}" + (f"-s{seed}" if seed else "")


def _source(source_dir):
    """(dataset folder, NAME, data folder) of a source dataset, or a one-line error."""
    try:
        data_dir = layout.find_data_dir(source_dir)
        name = layout.task_name(data_dir)
        folder = os.path.dirname(data_dir)
        if not os.path.isfile(layout.solution_path(folder, name)):
            raise layout.DatasetError(f"{layout.solution_path(folder, name)}: solution file "
                                      "is missing")
        layout.split_dir(data_dir, "test")
        return folder, name, data_dir
    except layout.DatasetError as e:
        raise SubsampleError("source", str(e)) from None


def read_train_labels(data_dir):
    """0/1 label matrix [N, C] of the training split, from the records (images not decoded)."""
    rows = []
    try:
        split = layout.split_dir(data_dir, "train")
        spec = layout.read_metadata(split)
        for payload in interleave([iter_records(p) for p in layout.record_files(split)]):
            rows.append(codec.record_labels(codec.parse_record(payload), spec.output_dim) > 0)
    except layout.DatasetError as e:
        raise SubsampleError("source", str(e)) from None
    except (RecordError, codec.RecordDecodeError) as e:
        raise SubsampleError("source", f"{layout.show(split)}: record {len(rows)}: {e}"
                             ) from None
    return np.asarray(rows, bool).reshape(len(rows), spec.output_dim)


def _allocate(counts, n):
    """Records per class: shares of n by largest remainder, at least one per present class
    when n allows, never more than a class holds. counts: records per class."""
    counts = np.asarray(counts, np.int64)
    present = np.flatnonzero(counts)
    take = np.zeros_like(counts)
    if n < len(present):  # one each for the n largest classes (ties: lower index)
        order = sorted(present, key=lambda c: (-counts[c], c))
        take[order[:n]] = 1
        return take
    exact = n * counts / counts.sum()
    take = np.minimum(np.floor(exact).astype(np.int64), counts)
    take[present] = np.maximum(take[present], 1)
    while take.sum() > n:  # the minimum of one pushed us over: trim the most over-served
        over = [c for c in present if take[c] > 1]
        take[max(over, key=lambda c: (take[c] - exact[c], -c))] -= 1
    while take.sum() < n:  # hand out the rest by largest remainder
        room = [c for c in present if take[c] < counts[c]]
        take[max(room, key=lambda c: (exact[c] - take[c], -c))] += 1
    return take


def choose(labels, n, seed=0):
    """Sorted indices of n training records: stratified (single-label) or covering every
    label (multi-label); see the module docstring."""
    labels = np.asarray(labels, bool)
    total = len(labels)
    if not 1 <= n < total:
        raise SubsampleError("n", f"{n} is not between 1 and {total - 1}: the source's "
                                  f"training split holds {total} records")
    rng = np.random.default_rng([seed, n, total])
    if (labels.sum(axis=1) == 1).all():  # single-label
        classes = labels.argmax(axis=1)
        take = _allocate(np.bincount(classes, minlength=labels.shape[1]), n)
        picked = [rng.choice(np.flatnonzero(classes == c), size=k, replace=False)
                  for c, k in enumerate(take) if k]
        return np.sort(np.concatenate(picked))
    chosen = np.zeros(total, bool)
    for c in sorted(np.flatnonzero(labels.any(axis=0)), key=lambda c: (labels[:, c].sum(), c)):
        if chosen.sum() == n:
            break
        if not (chosen & labels[:, c]).any():
            chosen[rng.choice(np.flatnonzero(labels[:, c]))] = True
    rest = rng.choice(np.flatnonzero(~chosen), size=n - chosen.sum(), replace=False)
    chosen[rest] = True
    return np.flatnonzero(chosen)


def _fingerprint(folder, data_dir):
    """What identifies the source's contents: its zoo build record when it has one, else the
    sizes and times of its train record files."""
    try:
        with open(os.path.join(folder, "zoo_build.json"), encoding="utf-8") as f:
            return {"zoo_build": json.load(f)}
    except (OSError, ValueError):
        files = layout.record_files(os.path.join(data_dir, "train"))
        return {"train_files": [[os.path.basename(p), os.path.getsize(p),
                                 int(os.path.getmtime(p))] for p in files]}


def _record(folder, data_dir, n, seed):
    return {"subsample_version": SUBSAMPLE_VERSION, "source": folder, "n": n, "seed": seed,
            **_fingerprint(folder, data_dir)}


def _write_train(source_split, dest_split, name, indices):
    os.makedirs(dest_split)
    wanted = set(int(i) for i in indices)
    with open(os.path.join(dest_split, f"sample-{name}-train.tfrecord"), "wb") as f:
        payloads = interleave([iter_records(p) for p in layout.record_files(source_split)])
        for k, payload in enumerate(payloads):
            if k in wanted:
                f.write(frame(payload))
    spec = layout.read_metadata(source_split)
    spec.sample_count = len(wanted)
    with open(os.path.join(dest_split, layout.METADATA_FILE), "w", encoding="utf-8") as f:
        f.write(layout.format_metadata(spec))


def subsample(source_dir, n, out_dir, seed=0, force=False):
    """Write the subset of n training records of source_dir as OUT_DIR/SOURCE-nN; returns
    (path, built): built is False when a matching subset was already there."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise SubsampleError("n", f"{n!r} is not a whole number")
    if not isinstance(seed, int) or seed < 0:
        raise SubsampleError("seed", f"{seed!r} is not a non-negative integer")
    n = int(n)
    folder, name, data_dir = _source(source_dir)
    new_name = subset_name(name, n, seed)
    out_dir = os.path.abspath(os.fspath(out_dir))
    dest = os.path.join(out_dir, new_name)
    if os.path.realpath(dest) == os.path.realpath(folder):
        raise SubsampleError("out", f"{dest}: the subset would replace its source")
    record = _record(folder, data_dir, n, seed)
    if os.path.exists(dest):
        try:
            with open(os.path.join(dest, RECORD_FILE), encoding="utf-8") as f:
                done = json.load(f)
        except (OSError, ValueError):
            raise SubsampleError("out", f"{dest}: exists but was not made by subsample (no "
                                        f"{RECORD_FILE}); remove it or write elsewhere"
                                 ) from None
        same = {key: done.get(key) for key in record} == record
        if same and not force and os.path.isfile(
                layout.solution_path(dest, new_name)):
            return dest, False
    labels = read_train_labels(data_dir)
    indices = choose(labels, n, seed)
    os.makedirs(out_dir, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{new_name}.building-", dir=out_dir)
    try:
        built = os.path.join(stage, new_name)
        new_data = os.path.join(built, f"{new_name}.data")
        _write_train(os.path.join(data_dir, "train"), os.path.join(new_data, "train"),
                     new_name, indices)
        shutil.copytree(os.path.join(data_dir, "test"), os.path.join(new_data, "test"))
        shutil.copyfile(layout.solution_path(folder, name),
                        layout.solution_path(built, new_name))
        if os.path.isfile(layout.label_names_path(folder, name)):
            shutil.copyfile(layout.label_names_path(folder, name),
                            layout.label_names_path(built, new_name))
        with open(os.path.join(built, RECORD_FILE), "w", encoding="utf-8") as f:
            json.dump({**record, "name": new_name, "source_train_size": len(labels),
                       "label_counts": labels[indices].sum(axis=0).tolist()}, f, indent=1)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(built, 0o777 & ~umask)
        if os.path.exists(dest):  # a stale subset of ours: moved into the stage, then removed
            os.rename(dest, os.path.join(stage, "replaced"))
        os.rename(built, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest, True
