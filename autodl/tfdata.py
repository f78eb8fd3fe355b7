"""The participant API: AutoDLMetadata and AutoDLDataset over a split folder.

`get_dataset()` is a tf.data.Dataset of (example float32 [T, H, W, C], labels float32 [C]):
DENSE values as stored, COMPRESSED frames decoded to [0, 1]; no shuffle, batch or repeat.
Metadata needs no TensorFlow; TensorFlow is imported only when a dataset is first built.
Where TensorFlow cannot be imported, get_dataset() hands a stand-in instead: it builds the
dataset on first use and, if TensorFlow is still missing then, raises TensorFlowMissing (one
line naming the package). So a submission that never iterates the datasets (ours reads the
records itself) runs on machines without TensorFlow.
"""
import os

from . import layout
from .reader import channel_count


TENSORFLOW_PACKAGE = "tensorflow-cpu"


class TensorFlowMissing(ImportError):
    """A tf.data dataset was used where TensorFlow cannot be imported."""


class AutoDLMetadata:
    def __init__(self, split_dir):
        self._split_dir = os.path.abspath(os.fspath(split_dir))
        self.metadata_ = layout.read_metadata(self._split_dir)

    def get_dataset_name(self):
        """The split folder (its TFRecords lie there; readers in the wild rely on this)."""
        return self._split_dir

    def size(self):
        return self.metadata_.sample_count

    def get_output_size(self):
        return self.metadata_.output_dim

    def get_sequence_size(self):
        return self.metadata_.sequence_size

    def get_bundle_size(self):
        return len(self.metadata_.matrix_spec)

    def get_matrix_size(self, bundle_index=0):
        matrix = self.metadata_.matrix_spec[bundle_index]
        return matrix.row_count, matrix.col_count

    def get_num_channels(self, bundle_index=0):
        return channel_count(self.metadata_.matrix_spec[bundle_index])

    def get_tensor_size(self, bundle_index=0):
        return (*self.get_matrix_size(bundle_index), self.get_num_channels(bundle_index))

    def get_tensor_shape(self, bundle_index=0):
        return (self.get_sequence_size(), *self.get_tensor_size(bundle_index))

    def is_compressed(self, bundle_index=0):
        matrix = self.metadata_.matrix_spec[bundle_index]
        return matrix.format == matrix.COMPRESSED

    def is_sparse(self, bundle_index=0):
        matrix = self.metadata_.matrix_spec[bundle_index]
        return matrix.format == matrix.SPARSE

    def get_label_to_index_map(self):
        return dict(self.metadata_.label_to_index_map)


class AutoDLDataset:
    def __init__(self, split_dir):
        self._split_dir = os.path.abspath(os.fspath(split_dir))
        self._metadata = AutoDLMetadata(self._split_dir)
        self._files = layout.record_files(self._split_dir)
        if self._metadata.is_sparse():
            raise layout.DatasetError(f"{self._split_dir}: SPARSE matrices are not supported")
        self._dataset = None

    def get_metadata(self):
        return self._metadata

    def get_class_labels(self):
        """Class names in index order (from label_to_index_map), or None when absent."""
        mapping = self._metadata.get_label_to_index_map()
        if not mapping:
            return None
        return [name for name, _ in sorted(mapping.items(), key=lambda item: item[1])]

    def get_dataset(self):
        """The same tf.data.Dataset on every call; without TensorFlow, a _DeferredDataset."""
        if self._dataset is None:
            try:
                self._dataset = _build_tf_dataset(self._files, self._metadata)
            except ImportError as error:
                self._dataset = _DeferredDataset(self._files, self._metadata, error)
        return self._dataset

    def get_nth_element(self, n):
        """Record n as numpy (example, labels); walks the dataset, so meant for inspection."""
        for index, (example, labels) in enumerate(self.get_dataset().as_numpy_iterator()):
            if index == n:
                return example, labels
        raise IndexError(f"{self._split_dir}: no record {n} (size {self._metadata.size()})")


class _DeferredDataset:
    """Stands for the tf.data.Dataset where TensorFlow could not be imported: the first use
    (iteration, len(), any attribute) builds it, or raises TensorFlowMissing."""

    def __init__(self, files, metadata, error):
        self._files, self._metadata, self._error = files, metadata, error
        self._built = None

    def _dataset(self):
        if self._built is None:
            try:
                self._built = _build_tf_dataset(self._files, self._metadata)
            except ImportError as error:
                raise TensorFlowMissing(
                    f"the tf.data dataset of {self._metadata.get_dataset_name()} needs "
                    f"TensorFlow, which cannot be imported here ({error}); install it with "
                    f"`pip install {TENSORFLOW_PACKAGE}`, or read the records without it "
                    "(metadata.get_dataset_name() is their folder)") from None
        return self._built

    def __getattr__(self, name):
        # Protocol probes (copy, numpy, ...) are not a use, and our own fields must not
        # recurse while copy or pickle restores them.
        if name.startswith("__") or name in ("_files", "_metadata", "_error", "_built"):
            raise AttributeError(name)
        return getattr(self._dataset(), name)

    def __iter__(self):
        return iter(self._dataset())

    def __len__(self):
        return len(self._dataset())

    def __repr__(self):
        return f"<tf.data dataset of {self._metadata.get_dataset_name()}, not built: " \
               f"no TensorFlow ({self._error})>"


def _build_tf_dataset(files, metadata):
    import tensorflow as tf

    rows, cols = metadata.get_matrix_size()
    channels = metadata.get_num_channels()
    output_dim = metadata.get_output_size()
    context_features = {
        "id": tf.io.FixedLenFeature([], tf.int64),
        "label_index": tf.io.VarLenFeature(tf.int64),
        "label_score": tf.io.VarLenFeature(tf.float32),
    }
    if metadata.is_compressed():
        sequence_features = {"0_compressed": tf.io.VarLenFeature(tf.string)}
    else:
        if rows <= 0 or cols <= 0:
            raise layout.DatasetError(f"{metadata.get_dataset_name()}: DENSE data needs fixed "
                                      "row_count and col_count in metadata.textproto")
        sequence_features = {"0_dense_input": tf.io.FixedLenSequenceFeature(
            [rows * cols * channels], tf.float32)}

    def decode_one(data):
        return tf.io.decode_image(data, channels=channels, dtype=tf.float32,
                                  expand_animations=False)

    def parse(serialized):
        context, sequence = tf.io.parse_single_sequence_example(
            serialized, context_features=context_features, sequence_features=sequence_features)
        if metadata.is_compressed():
            encoded = tf.sparse.to_dense(sequence["0_compressed"], default_value="")[:, 0]
            example = tf.map_fn(decode_one, encoded,
                                fn_output_signature=tf.TensorSpec([None, None, channels],
                                                                  tf.float32))
        else:
            example = tf.reshape(sequence["0_dense_input"], [-1, rows, cols, channels])
        example.set_shape([None, rows if rows > 0 else None, cols if cols > 0 else None,
                           channels])
        indices = tf.sparse.to_dense(context["label_index"])
        scores = tf.sparse.to_dense(context["label_score"])
        scores = tf.cond(tf.size(scores) == tf.size(indices), lambda: scores,
                         lambda: tf.ones_like(indices, tf.float32))
        labels = tf.scatter_nd(indices[:, None], scores, [output_dim])
        return example, labels

    records = tf.data.Dataset.from_tensor_slices(files)
    records = records.interleave(tf.data.TFRecordDataset, cycle_length=len(files),
                                 block_length=1)
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
