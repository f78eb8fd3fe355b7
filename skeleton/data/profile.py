"""What the first records tell: shapes, value range, labels; and the input size they imply."""
from dataclasses import dataclass

import numpy as np


@dataclass
class DataProfile:
    frames: int          # median T
    height: int          # median H
    width: int           # median W
    channels: int
    value_min: float
    value_max: float
    compressed: bool
    multi_label: bool
    label_counts: np.ndarray
    classes: int

    @property
    def is_video(self):
        return self.frames > 1

    def looks_sorted(self, unseen_ratio):
        """Many classes missing from the first records: the files are likely sorted by class."""
        return (self.label_counts == 0).sum() >= unseen_ratio * self.classes


def scan(examples, classes, compressed):
    """Profile a list of (frames, labels) examples (the first records of the train split)."""
    shapes = np.array([x.shape for x, _ in examples])
    labels = np.stack([y for _, y in examples])
    values = [(float(x.min()), float(x.max())) for x, _ in examples]
    return DataProfile(
        frames=int(np.median(shapes[:, 0])), height=int(np.median(shapes[:, 1])),
        width=int(np.median(shapes[:, 2])), channels=int(shapes[0, 3]),
        value_min=min(v[0] for v in values), value_max=max(v[1] for v in values),
        compressed=compressed, multi_label=bool((labels.sum(axis=1) > 1).any()),
        label_counts=labels.sum(axis=0), classes=classes)


def _round_side(side, multiple, up_fraction):
    units = side / multiple
    whole = int(units)
    if units - whole >= up_fraction or whole == 0:
        whole += 1
    return whole * multiple


def input_size(profile, cfg):
    """(frames, height, width) the network sees, from the median shape (configs: data.*)."""
    h, w = profile.height, profile.width
    frames = min(profile.frames, cfg.max_frames) if profile.is_video else 1
    frames = max(frames, 1)
    if h <= cfg.keep_size_below and w <= cfg.keep_size_below:
        return frames, h, w
    aspect = h / w
    cap = cfg.side_cap_elongated if aspect > 2 or aspect < 0.5 else cfg.side_cap
    scale = min(1.0, cap / max(h, w))
    sides = [_round_side(s * scale, cfg.side_multiple, cfg.round_up_fraction)
             for s in (h, w)]
    return frames, min(sides[0], max(cap, cfg.side_multiple)), \
        min(sides[1], max(cap, cfg.side_multiple))


def transfer_size(height, width, max_side, cfg):
    """(h, w) the pretrained trunk sees: the images' own size, enlarged to at least min_side
    (ImageNet trunks shrink inputs 32x: a 28-px digit would be one feature pixel) and shrunk
    to at most max_side (the cost grows with the area)."""
    longest = max(height, width)
    target = min(max(longest, cfg.min_side), max_side)
    multiple = cfg.side_multiple
    return tuple(max(multiple, int(round(side * target / longest / multiple)) * multiple)
                 for side in (height, width))


def first_side(examples, stored, seconds, frames, cfg, cuda):
    """The largest side (a multiple of side_multiple, from min_side up to max_side_cuda on a
    GPU, rescan_side_cpu on a CPU) at which the frozen features of `examples` images are
    estimated to take at most `seconds`, and a stored view of `stored` images fits in
    second_view_max_mb."""
    if cuda:
        return cfg.max_side_cuda
    multiple = cfg.side_multiple
    side = cfg.rescan_side_cpu
    while side > cfg.min_side:
        pixels = side * side * max(1, frames)
        cost = examples * pixels * cfg.feature_us_per_pixel * 1e-6
        memory = stored * pixels * 3 / 2 ** 20
        if cost <= seconds and memory <= cfg.second_view_max_mb:
            break
        side -= multiple
    return max(side, cfg.min_side)
