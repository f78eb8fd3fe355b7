"""Write AutoDL datasets: numpy arrays, image files or frame sequences plus labels in,
a DATASET_DIR/NAME.data folder with train/test splits, NAME.solution and NAME_label.name out.

The folder is built beside its destination and renamed into place at the end, so an
interrupted write never leaves something that looks like a finished dataset.
"""
import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import codec, layout
from .proto import DataSpecification, MatrixSpec
from .records import frame

FORMATS = ("dense", "png", "jpeg")
_MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 4, "RGBA": 4, "CMYK": 3}


def _as_frames(x):
    """One example as a list of frames: arrays become [H,W,C]; bytes/paths stay encoded."""
    if isinstance(x, np.ndarray):
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim == 3:
            return [x]
        if x.ndim == 4:
            return list(x)
        raise ValueError(f"an example array must be HxW, HxWxC or TxHxWxC, got {x.shape}")
    if isinstance(x, (bytes, bytearray, str, os.PathLike)):
        return [x]
    return [f[:, :, None] if isinstance(f, np.ndarray) and f.ndim == 2 else f for f in x]


def _encoded_bytes(item):
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    with open(item, "rb") as f:
        return f.read()


def _label_indices(y, output_dim):
    """Class indices of one example: an int, a list/tuple/set of ints (multi-label), or a
    0/1 numpy vector of length output_dim (multi-hot)."""
    if isinstance(y, np.ndarray) and y.ndim == 1:
        if y.size != output_dim:
            raise ValueError(f"a multi-hot label vector must have {output_dim} entries, "
                             f"got {y.size}")
        indices = np.flatnonzero(y).tolist()
    elif isinstance(y, (int, np.integer)) or (isinstance(y, np.ndarray) and y.ndim == 0):
        indices = [int(y)]
    else:
        indices = sorted({int(i) for i in y})
    for i in indices:
        if not 0 <= i < output_dim:
            raise ValueError(f"label {i} outside 0..{output_dim - 1}")
    return indices


@dataclass
class _SplitStats:
    count: int = 0
    max_frames: int = 0
    sizes: set = field(default_factory=set)
    channels: set = field(default_factory=set)
    labels: list = field(default_factory=list)


def _frame_geometry(item):
    """(H, W, C) of an array frame or of encoded image bytes (from the header alone)."""
    if isinstance(item, np.ndarray):
        return item.shape
    image = Image.open(io.BytesIO(item))
    return image.size[1], image.size[0], _MODE_CHANNELS.get(image.mode, 3)


def _encode_example(record_id, x, indices, image_format, quality, stats):
    frames = _as_frames(x)
    if not frames:
        raise ValueError(f"record {record_id}: an example needs at least one frame")
    if image_format == "dense":
        frames = [np.asarray(f, np.float32) for f in frames]
        payload = codec.encode_record(record_id, indices, dense_frames=frames)
        geometry = [f.shape for f in frames]
    else:
        encoded = []
        for f in frames:
            if isinstance(f, np.ndarray):
                if f.dtype != np.uint8:
                    raise TypeError(f"record {record_id}: {image_format} frames must be uint8 "
                                    f"arrays (got {f.dtype}); scale them to 0..255 first")
                encoded.append(codec.encode_image(f, image_format, quality))
            else:
                encoded.append(_encoded_bytes(f))
        payload = codec.encode_record(record_id, indices, compressed_frames=encoded)
        geometry = [_frame_geometry(f if isinstance(f, np.ndarray) else e)
                    for f, e in zip(frames, encoded)]
    stats.count += 1
    stats.max_frames = max(stats.max_frames, len(frames))
    stats.sizes.update((h, w) for h, w, _ in geometry)
    stats.channels.update(c for _, _, c in geometry)
    return payload


def _write_split(split_path, name, split, xs, ys, *, output_dim, image_format, first_id,
                 shards, quality, progress, total):
    os.makedirs(split_path)
    suffix = "" if shards == 1 else "-{:05d}-of-{:05d}".format
    files = [open(os.path.join(split_path, f"sample-{name}-{split}"
                               f"{suffix(i, shards) if shards > 1 else ''}.tfrecord"), "wb")
             for i in range(shards)]
    stats = _SplitStats()
    try:
        pairs = zip(xs, ys, strict=True)  # fewer examples than labels is an error
        if progress:
            pairs = tqdm(pairs, total=total, desc=f"{name}/{split}", unit="rec", leave=False)
        for k, (x, y) in enumerate(pairs):
            indices = _label_indices(y, output_dim)
            stats.labels.append(indices)
            # Test records carry no labels: those live in NAME.solution alone.
            payload = _encode_example(first_id + k, x, indices if split == "train" else [],
                                      image_format, quality, stats)
            # Round-robin sharding: interleaved reading gives back the written order.
            files[k % shards].write(frame(payload))
    finally:
        for f in files:
            f.close()
    return stats


def _metadata(stats, output_dim, image_format, channels, label_names):
    spec = DataSpecification(is_sequence=False, sample_count=stats.count,
                             sequence_size=max(stats.max_frames, 1), output_dim=output_dim)
    (height, width), = stats.sizes if len(stats.sizes) == 1 else ((-1, -1),)
    spec.matrix_spec.add(
        col_count=width, row_count=height, is_sequence_col=False, is_sequence_row=False,
        has_locality_col=True, has_locality_row=True,
        format=MatrixSpec.DENSE if image_format == "dense" else MatrixSpec.COMPRESSED,
        num_channels=channels)
    for index, label in enumerate(label_names or ()):
        spec.label_to_index_map[label] = index
    return spec


def write_dataset(dest, name, train, test, *, output_dim=None, image_format="dense",
                  label_names=None, num_channels=None, shards=1, quality=95, overwrite=False,
                  progress=False):
    """Write an AutoDL dataset folder at `dest` and return its path.

    train, test: (xs, ys). xs: arrays (HxW, HxWxC or TxHxWxC; float for dense, uint8 for
    png/jpeg), encoded image bytes, image file paths, or lists of those (video frames). ys: a
    class index, a collection of indices (multi-label) or a 0/1 vector per example.
    image_format: 'dense' (float values stored as given), 'png' or 'jpeg' (COMPRESSED; bytes
    and files are stored as they are).
    """
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {FORMATS}, got {image_format!r}")
    if not name or "/" in name or name.endswith(".data"):
        raise ValueError(f"invalid dataset name {name!r}")
    for label in label_names or ():
        if "\n" in str(label) or "\r" in str(label):
            raise ValueError(f"label name {label!r} holds a line break (NAME_label.name has "
                             "one name a line)")
    dest = os.path.abspath(os.fspath(dest))
    if os.path.exists(dest) and not overwrite:
        raise FileExistsError(f"{dest}: already exists (pass overwrite=True to replace it)")
    (train_x, train_y), (test_x, test_y) = train, test
    train_y, test_y = list(train_y), list(test_y)
    if output_dim is None:
        output_dim = len(label_names) if label_names else _infer_output_dim(train_y + test_y)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.partial-", dir=parent)
    try:
        data_dir = os.path.join(work, f"{name}.data")
        common = dict(output_dim=output_dim, image_format=image_format, shards=shards,
                      quality=quality, progress=progress)
        # Test first: test ids are 0..n_test-1 and train ids continue after them.
        test_stats = _write_split(os.path.join(data_dir, "test"), name, "test", test_x, test_y,
                                  first_id=0, total=len(test_y), **common)
        train_stats = _write_split(os.path.join(data_dir, "train"), name, "train", train_x,
                                   train_y, first_id=test_stats.count, total=len(train_y),
                                   **common)
        channels = num_channels or _single_channel_count(train_stats.channels |
                                                         test_stats.channels)
        for split, stats in (("train", train_stats), ("test", test_stats)):
            if stats.count == 0:
                raise ValueError(f"the {split} split is empty")
            spec = _metadata(stats, output_dim, image_format, channels, label_names)
            with open(os.path.join(data_dir, split, layout.METADATA_FILE), "w") as f:
                f.write(layout.format_metadata(spec))
        solution = np.zeros((test_stats.count, output_dim), np.int8)
        for row, indices in enumerate(test_stats.labels):
            solution[row, indices] = 1
        np.savetxt(os.path.join(work, f"{name}.solution"), solution, fmt="%d")
        if label_names:
            with open(os.path.join(work, f"{name}_label.name"), "w") as f:
                f.write("".join(f"{label}\n" for label in label_names))
        # mkdtemp folders are private (0700); give the dataset the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dest


def _infer_output_dim(ys):
    highest = -1
    for y in ys:
        if isinstance(y, np.ndarray) and y.ndim == 1:
            return y.size
        flat = np.ravel(np.asarray(list(y) if isinstance(y, (set, frozenset)) else y))
        if flat.size:
            highest = max(highest, int(flat.max()))
    return highest + 1


def _single_channel_count(channels):
    if len(channels) != 1:
        raise ValueError(f"examples mix channel counts {sorted(channels)}: convert them to one "
                         "count or pass num_channels")
    return channels.pop()
