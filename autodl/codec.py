"""One AutoDL record <-> (frames, labels), without TensorFlow.

A record is a SequenceExample: context `id`, `label_index`, `label_score`; feature list
`0_dense_input` (one float list per frame, H*W*C values in H,W,C order) or `0_compressed`
(one encoded JPEG/PNG per frame).
"""
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from .proto import SequenceExample

DENSE_KEY = "0_dense_input"
COMPRESSED_KEY = "0_compressed"
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class RecordDecodeError(ValueError):
    """A record whose payload is not a valid AutoDL SequenceExample."""


def encode_image(frame: np.ndarray, image_format: str, quality: int = 95) -> bytes:
    """Encode one H,W,C uint8 frame as PNG or JPEG bytes."""
    if frame.dtype != np.uint8:
        raise TypeError(f"compressed frames must be uint8, got {frame.dtype}")
    channels = frame.shape[2]
    image = Image.fromarray(frame[:, :, 0] if channels == 1 else frame, _PIL_MODES[channels])
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, format="PNG", compress_level=1)
    elif image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        raise ValueError(f"unknown image format {image_format!r} (png or jpeg)")
    return buffer.getvalue()


# Twins inside the submission (the zip ships skeleton/ only): skeleton/data/decode.py's
# decode_image and skeleton/data/wire.py's parse_record; tests/test_twins.py checks they agree.
def decode_frame(data: bytes, channels: int) -> np.ndarray:
    """Decode JPEG/PNG bytes to an H,W,C uint8 array with the metadata's channel count."""
    try:
        image = Image.open(io.BytesIO(data))
        image = image.convert(_PIL_MODES[channels])
    except (UnidentifiedImageError, OSError, KeyError) as e:
        raise RecordDecodeError(f"undecodable image frame ({e})") from None
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def probe_image(data: bytes):
    """Check that bytes start like an image PIL can read (the header only); returns its size."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise RecordDecodeError(f"undecodable image frame ({e})") from None


def encode_record(record_id: int, label_indices, *, dense_frames=None, compressed_frames=None
                  ) -> bytes:
    """Serialise one record; give float H,W,C frames (DENSE) or encoded bytes (COMPRESSED)."""
    example = SequenceExample()
    context = example.context.feature
    context["id"].int64_list.value.append(int(record_id))
    labels = [int(i) for i in label_indices]
    context["label_index"].int64_list.value.extend(labels)
    context["label_score"].float_list.value.extend([1.0] * len(labels))
    if dense_frames is not None:
        feature_list = example.feature_lists.feature_list[DENSE_KEY].feature
        for frame in dense_frames:
            feature_list.add().float_list.value.extend(
                np.ascontiguousarray(frame, dtype=np.float32).ravel())
    else:
        feature_list = example.feature_lists.feature_list[COMPRESSED_KEY].feature
        for data in compressed_frames:
            feature_list.add().bytes_list.value.append(data)
    # Map entries in key order: otherwise their order follows the string hash seed.
    return example.SerializeToString(deterministic=True)


def parse_record(payload: bytes):
    try:
        return SequenceExample.FromString(payload)
    except Exception as e:  # protobuf raises its own DecodeError type per backend
        raise RecordDecodeError(f"not a SequenceExample ({e})") from None


def record_labels(example, output_dim: int) -> np.ndarray:
    """Dense float32 label vector: label_score scattered at label_index."""
    context = example.context.feature
    indices = list(context["label_index"].int64_list.value) if "label_index" in context else []
    scores = list(context["label_score"].float_list.value) if "label_score" in context else []
    if len(scores) != len(indices):
        scores = [1.0] * len(indices)
    labels = np.zeros(output_dim, np.float32)
    for index, score in zip(indices, scores):
        if not 0 <= index < output_dim:
            raise RecordDecodeError(f"label_index {index} outside 0..{output_dim - 1}")
        labels[index] = score
    return labels


def record_id(example) -> int:
    values = example.context.feature["id"].int64_list.value
    if not values:
        raise RecordDecodeError("record has no id")
    return int(values[0])


def record_frames(example, row_count: int, col_count: int, channels: int) -> np.ndarray:
    """float32 [T, H, W, C]: DENSE values as stored; COMPRESSED decoded to [0, 1]."""
    lists = example.feature_lists.feature_list
    if COMPRESSED_KEY in lists:
        frames = [decode_frame(f.bytes_list.value[0], channels) for f in lists[COMPRESSED_KEY].feature]
        if not frames:
            raise RecordDecodeError("record has no frames")
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise RecordDecodeError(f"frames of one record differ in size: {sorted(shapes)}")
        # Correctly rounded v / 255; TensorFlow's decoder differs from it by at most 1 ulp.
        return np.stack(frames).astype(np.float32) / np.float32(255.0)
    if DENSE_KEY in lists:
        if row_count <= 0 or col_count <= 0:
            raise RecordDecodeError("DENSE records need fixed row_count and col_count")
        frames = [np.asarray(f.float_list.value, np.float32) for f in lists[DENSE_KEY].feature]
        size = row_count * col_count * channels
        if not frames or any(f.size != size for f in frames):
            raise RecordDecodeError(f"dense frames must hold {row_count}x{col_count}x{channels}"
                                    f" = {size} values")
        return np.stack(frames).reshape(len(frames), row_count, col_count, channels)
    raise RecordDecodeError(f"record has neither {DENSE_KEY!r} nor {COMPRESSED_KEY!r}")
