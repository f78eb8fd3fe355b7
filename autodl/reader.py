"""Read an AutoDL split without TensorFlow: records in harness order, decoded to numpy.

Several sample* files are interleaved one record at a time (the order tf.data's interleave
gives with block length 1), so record k here is row k of the solution.
"""
import itertools

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


def check_split(split_dir) -> int:
    """Check a split's metadata and record framing (CRCs included); returns its size.

    Catches truncated or corrupt files and a sample_count that disagrees with the records,
    before any submission code runs.
    """
    spec = layout.read_metadata(split_dir)
    total = 0
    for path in layout.record_files(split_dir):
        try:
            total += sum(1 for _ in iter_records(path, verify=True))
        except RecordError as e:
            raise layout.DatasetError(str(e)) from None
    if total != spec.sample_count:
        raise layout.DatasetError(f"{split_dir}/{layout.METADATA_FILE}: sample_count is "
                                  f"{spec.sample_count} but the record files hold {total}")
    return total

