"""Decoded, resized training (and test) examples kept in memory as uint8 [N, T, H, W, C].

uint8 keeps a 60000-image set under 50 MB; values are mapped to 0..255 once (compressed
frames already are; dense values are min-max scaled with the scanned range when they are
not already in [0, 1]).
"""
import time

import numpy as np
from PIL import Image

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class FrameAdapter:
    """One example's frames -> uint8 [T, H, W, C] at the network's input size."""

    def __init__(self, profile, frames, height, width):
        self.frames, self.height, self.width = frames, height, width
        self.channels = profile.channels
        self.compressed = profile.compressed
        low, high = profile.value_min, profile.value_max
        if profile.compressed or (low >= -0.01 and high <= 1.01):
            self.low, self.high = 0.0, 1.0
        else:  # min-max with the scanned range (original: only when not already ~[0, 1])
            self.low, self.high = low, high if high > low else low + 1.0

    def __call__(self, x):
        t = len(x)
        index = np.linspace(0, t - 1, self.frames).round().astype(int) if t != self.frames \
            else np.arange(t)
        x = x[index]
        if x.dtype != np.uint8:
            x = np.clip((x - self.low) * (255.0 / (self.high - self.low)), 0, 255)
            x = np.rint(x).astype(np.uint8)
        if x.shape[3] != self.channels:  # a stray frame with other channels: match the set
            x = x[..., :self.channels] if x.shape[3] > self.channels else \
                np.repeat(x[..., :1], self.channels, axis=3)
        if x.shape[1:3] != (self.height, self.width):
            x = np.stack([self._resize(frame) for frame in x])
        return x

    def _resize(self, frame):
        size = (self.width, self.height)
        if self.channels in _MODES:
            image = Image.fromarray(frame[..., 0] if self.channels == 1 else frame,
                                    _MODES[self.channels])
            out = np.asarray(image.resize(size, Image.BILINEAR, reducing_gap=2.0))
            return out[..., None] if out.ndim == 2 else out
        return np.stack([np.asarray(Image.fromarray(frame[..., c]).resize(size, Image.BILINEAR))
                         for c in range(frame.shape[2])], axis=-1)


def _grow(array, rows):
    return np.concatenate([array, np.zeros((rows - len(array), *array.shape[1:]), array.dtype)])


class ExampleStore:
    """Grows as records are read; x uint8 [N, T, H, W, C], y float32 [N, C].

    `second` (an adapter, and a count): the first `second_max` examples are also kept at that
    adapter's size in x2 (the larger input of a pretrained trunk; skeleton/transfer.py).
    """

    def __init__(self, examples, adapter, classes, max_bytes, second=None, second_max=0):
        self.examples = examples  # iterator of (frames, labels)
        self.adapter = adapter
        shape = (adapter.frames, adapter.height, adapter.width, adapter.channels)
        self.second = second
        self.second_max = second_max if second is not None else 0
        second_bytes = (np.prod((second.frames, second.height, second.width, second.channels))
                        * self.second_max if second is not None else 0)
        self.capacity = max(1, int((max_bytes - second_bytes) // max(1, np.prod(shape))))
        self.x = np.zeros((min(1024, self.capacity), *shape), np.uint8)
        self.y = np.zeros((len(self.x), classes), np.float32)
        self.x2 = None if second is None else np.zeros(
            (min(1024, self.second_max), second.frames, second.height, second.width,
             second.channels), np.uint8)
        self.size = 0
        self.exhausted = False
        self.truncated = False  # stopped at the memory cap

    def add(self, frames, labels):
        if self.size == len(self.x):
            grown = min(self.capacity, 2 * len(self.x))
            self.x, self.y = _grow(self.x, grown), _grow(self.y, grown)
        self.x[self.size] = self.adapter(frames)
        self.y[self.size] = labels
        if self.size < self.second_max:
            if self.size == len(self.x2):
                self.x2 = _grow(self.x2, min(self.second_max, 2 * len(self.x2)))
            self.x2[self.size] = self.second(frames)
        self.size += 1

    def fill(self, max_records=None, max_seconds=None):
        """Read more records, up to a count and/or a time limit; returns how many were read."""
        start, read = time.time(), 0
        while not self.exhausted:
            if max_records is not None and read >= max_records:
                break
            if max_seconds is not None and read % 64 == 0 and time.time() - start > max_seconds:
                break
            if self.size >= self.capacity:
                self.exhausted = self.truncated = True
                break
            item = next(self.examples, None)
            if item is None:
                self.exhausted = True
                break
            self.add(*item)
            read += 1
        return read

    def arrays(self):
        return self.x[:self.size], self.y[:self.size]

    def second_arrays(self):
        """(x2, y) of the examples kept at the second size (the first min(size, second_max))."""
        n = min(self.size, self.second_max)
        return self.x2[:n], self.y[:n]
