"""TFRecord files without TensorFlow: the length-prefixed, CRC32C-checked framing.

Each record is: uint64 length, uint32 masked CRC of those 8 bytes, the payload, and a uint32
masked CRC of the payload (little-endian throughout). TensorFlow checks both CRCs when it
reads, so what we write must carry correct ones.
"""
import os
import struct

import google_crc32c

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


class RecordError(ValueError):
    """A TFRecord file that cannot be read: the message names the file and the offset."""


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(payload: bytes) -> bytes:
    """One record, framed as TensorFlow's TFRecordWriter frames it."""
    header = _LENGTH.pack(len(payload))
    return b"".join((header, _CRC.pack(masked_crc(header)), payload,
                     _CRC.pack(masked_crc(payload))))


def write_records(path, payloads) -> int:
    """Write byte strings as a TFRecord file; returns the number of records."""
    count = 0
    with open(path, "wb") as f:
        for payload in payloads:
            f.write(frame(payload))
            count += 1
    return count


def iter_records(path, verify=True):
    """Yield the payloads of a TFRecord file in order, checking framing (and CRCs if asked)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 12:
            raise RecordError(f"{path}: truncated record header at byte {offset} "
                              f"({end - offset} bytes left, 12 needed)")
        (length,) = _LENGTH.unpack_from(data, offset)
        if verify and _CRC.unpack_from(data, offset + 8)[0] != masked_crc(data[offset:offset + 8]):
            raise RecordError(f"{path}: corrupt record header at byte {offset} (length CRC "
                              "mismatch): not a TFRecord file, or damaged")
        start = offset + 12
        stop = start + length
        if stop + 4 > end:
            raise RecordError(f"{path}: truncated record at byte {offset}: {length} payload "
                              f"bytes announced, {max(0, end - start - 4)} present")
        payload = data[start:stop]
        if verify and _CRC.unpack_from(data, stop)[0] != masked_crc(payload):
            raise RecordError(f"{path}: corrupt record at byte {offset} (payload CRC mismatch)")
        yield payload
        offset = stop + 4

