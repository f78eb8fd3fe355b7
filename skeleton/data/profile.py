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
    frames = min(profile.frames, cfg["max_frames"]) if profile.is_video else 1
    frames = max(frames, 1)
    if h <= cfg["keep_size_below"] and w <= cfg["keep_size_below"]:
        return frames, h, w
    aspect = h / w
    cap = cfg["side_cap_elongated"] if aspect > 2 or aspect < 0.5 else cfg["side_cap"]
    scale = min(1.0, cap / max(h, w))
    sides = [_round_side(s * scale, cfg["side_multiple"], cfg["round_up_fraction"])
             for s in (h, w)]
    return frames, min(sides[0], max(cap, cfg["side_multiple"])), \
        min(sides[1], max(cap, cfg["side_multiple"]))


def transfer_size(height, width, cfg, cuda):
    """(h, w) the pretrained trunk sees: the images' own size, enlarged to at least min_side
    (ImageNet trunks shrink inputs 32x: a 28-px digit would be one feature pixel) and shrunk
    to at most max_side (the cost grows with the area)."""
    longest = max(height, width)
    target = min(max(longest, cfg["min_side"]), cfg["max_side_cuda" if cuda else "max_side_cpu"])
    multiple = cfg["side_multiple"]
    return tuple(max(multiple, int(round(side * target / longest / multiple)) * multiple)
                 for side in (height, width))
