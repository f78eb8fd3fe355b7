"""Records -> numpy examples: float32 [T, H, W, C] and a dense label vector.

The fast path reads the split folder's TFRecords (metadata.get_dataset_name() is that
folder); if it fails for any reason, the tf.data.Dataset the harness handed us is used.
Both give the same tensors (tests/test_skeleton_data.py).
"""
import io
import logging

import numpy as np
from PIL import Image

from . import wire

log = logging.getLogger("skeleton")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


# Twin of autodl/codec.py decode_frame (the zip ships skeleton/ only); tests/test_twins.py.
def decode_image(data, channels):
    image = Image.open(io.BytesIO(data)).convert(_MODES.get(channels, "RGB"))
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


class RecordDecoder:
    def __init__(self, metadata):
        self.rows, self.cols = metadata.get_matrix_size(0)
        self.channels = metadata.get_num_channels(0)
        self.classes = metadata.get_output_size()
        self.compressed = metadata.is_compressed(0)

    def labels(self, indices):
        vector = np.zeros(self.classes, np.float32)
        vector[[i for i in indices if 0 <= i < self.classes]] = 1.0
        return vector

    def frames(self, raw):
        """uint8 [T,H,W,C] for compressed frames, float32 [T,H,W,C] for dense ones."""
        if self.compressed:
            return np.stack([decode_image(b, self.channels) for b in raw])
        return np.stack(raw).reshape(len(raw), self.rows, self.cols, self.channels)


def iter_records(metadata, decoder=None):
    """(frames, labels) of the split folder's records, in the harness's order, from the fast
    path alone (a second read of the same records, skeleton/transfer.py, needs no tf.data)."""
    decoder = decoder or RecordDecoder(metadata)
    for payload in wire.iter_payloads(metadata.get_dataset_name()):
        indices, raw = wire.parse_record(payload)
        yield decoder.frames(raw), decoder.labels(indices)


def iter_examples(dataset, metadata):
    """Yield (frames, labels); frames uint8 (compressed, 0..255) or float32 (dense, as stored).

    Tries the fast path first; falls back to tf.data from the record where it failed.
    """
    decoder = RecordDecoder(metadata)
    done = 0
    try:
        for example in iter_records(metadata, decoder):
            done += 1
            yield example
        return
    except Exception as e:  # anything unexpected: the harness's dataset is the reference
        log.warning("fast reader failed after %d records (%s); using tf.data", done, e)
    for index, (x, y) in enumerate(dataset.as_numpy_iterator()):
        if index < done:
            continue
        if decoder.compressed:  # tf.data decodes to [0, 1]; keep our uint8 convention
            x = np.rint(x * 255.0).astype(np.uint8)
        yield x, y
