"""Read an AutoDL split without TensorFlow: records in harness order, decoded to numpy.

Several sample* files are interleaved one record at a time (the order tf.data's interleave
gives with block length 1), so record k here is row k of the solution.
"""
import itertools
import os

import numpy as np

from . import codec, layout
from .records import RecordError, iter_records


def channel_count(matrix) -> int:
    """A MatrixSpec's channels: -1 in the file means 3 for compressed images, else 1."""
    if matrix.num_channels > 0:
        return matrix.num_channels
    return 3 if matrix.format == matrix.COMPRESSED else 1


def interleave(iterables):
    """Round-robin over iterables, dropping each one as it runs out."""
    sentinel = object()
    for items in itertools.zip_longest(*iterables, fillvalue=sentinel):
        for item in items:
            if item is not sentinel:
                yield item


def iter_split(split_dir, verify=True):
    """Yield (id, frames float32 [T,H,W,C], labels float32 [C]) for every record of a split."""
    spec = layout.read_metadata(split_dir)
    files = layout.record_files(split_dir)
    matrix = spec.matrix_spec[0]
    if matrix.format == matrix.SPARSE:
        raise layout.DatasetError(f"{split_dir}: SPARSE matrices are not supported")
    channels = channel_count(matrix)
    payloads = interleave([iter_records(path, verify) for path in files])
    for index, payload in enumerate(payloads):
        try:
            example = codec.parse_record(payload)
            yield (codec.record_id(example),
                   codec.record_frames(example, matrix.row_count, matrix.col_count, channels),
                   codec.record_labels(example, spec.output_dim))
        except codec.RecordDecodeError as e:
            raise layout.DatasetError(f"{split_dir}: record {index}: {e}") from None


def read_split(split_dir, verify=True):
    """All records of a split: (ids int64 [N], list of frame arrays, labels float32 [N, C])."""
    ids, frames, labels = [], [], []
    for record_id, x, y in iter_split(split_dir, verify):
        ids.append(record_id)
        frames.append(x)
        labels.append(y)
    spec = layout.read_metadata(split_dir)
    return (np.asarray(ids, np.int64), frames,
            np.stack(labels) if labels else np.zeros((0, spec.output_dim), np.float32))


def check_record(payload, matrix, channels, output_dim):
    """Raise RecordDecodeError if a record's contents do not fit the metadata: no id, a label
    outside the classes, dense frames of the wrong size, compressed frames that are not
    images (only their headers are read: decoding every frame would take minutes)."""
    example = codec.parse_record(payload)
    codec.record_id(example)
    codec.record_labels(example, output_dim)
    lists = example.feature_lists.feature_list
    if codec.COMPRESSED_KEY in lists:
        frames = lists[codec.COMPRESSED_KEY].feature
        if not frames:
            raise codec.RecordDecodeError("record has no frames")
        for frame in frames:
            if not frame.bytes_list.value:
                raise codec.RecordDecodeError("empty compressed frame")
            codec.probe_image(frame.bytes_list.value[0])
    elif codec.DENSE_KEY in lists:
        codec.record_frames(example, matrix.row_count, matrix.col_count, channels)
    else:
        raise codec.RecordDecodeError(f"record has neither {codec.DENSE_KEY!r} nor "
                                      f"{codec.COMPRESSED_KEY!r}")


def check_split(split_dir) -> int:
    """Check a split's metadata, record framing (CRCs included) and record contents; returns
    its size.

    Catches truncated or corrupt files, records that do not fit the metadata and a
    sample_count that disagrees with the records, before any submission code runs.
    """
    spec = layout.read_metadata(split_dir)
    matrix = spec.matrix_spec[0]
    if matrix.format == matrix.SPARSE:
        raise layout.DatasetError(f"{split_dir}: SPARSE matrices are not supported")
    channels = channel_count(matrix)
    total = 0
    for path in layout.record_files(split_dir):
        index = 0
        try:
            for index, payload in enumerate(iter_records(path, verify=True)):
                check_record(payload, matrix, channels, spec.output_dim)
                total += 1
        except RecordError as e:
            raise layout.DatasetError(layout.show(str(e))) from None
        except codec.RecordDecodeError as e:
            raise layout.DatasetError(f"{layout.show(path)}: record {index}: {e}") from None
    if total != spec.sample_count:
        raise layout.DatasetError(f"{split_dir}/{layout.METADATA_FILE}: sample_count is "
                                  f"{spec.sample_count} but the record files hold {total}")
    return total



def check_splits(data_dir):
    """Check both splits, and that they agree; returns {split: size}."""
    sizes, dims = {}, {}
    for split in layout.SPLITS:
        path = layout.split_dir(data_dir, split)
        sizes[split] = check_split(path)
        dims[split] = layout.read_metadata(path).output_dim
        if sizes[split] == 0:
            raise layout.DatasetError(f"{layout.show(path)}: the {split} split holds no "
                                      "records; there is nothing to "
                                      f"{'predict' if split == 'test' else 'learn from'}")
    if dims["train"] != dims["test"]:
        raise layout.DatasetError(
            f"{layout.show(os.path.join(data_dir, 'test', layout.METADATA_FILE))}: output_dim "
            f"is {dims['test']} but the train split's is {dims['train']}")
    return sizes
