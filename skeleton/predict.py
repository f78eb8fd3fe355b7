"""Prediction, in one place for training, test(), saved models and the tool.

network_probabilities: a network's probabilities (softmax, or sigmoid for multi-label; flip
test-time averaging only where the run's flip probe allowed it), used by the Trainer during
the run and by Predictor on a saved model. to_probabilities: the quick model's ridge scores
(only their ranks matter to AutoDL) as probabilities, for people who read them.
Predictor: a saved model (skeleton/persist.py builds it from a file) predicting new images.
"""
import contextlib

import numpy as np

from .data.decode import decode_image
from .data.store import FrameAdapter


def to_probabilities(scores, multi_label):
    """Ranking scores [N, C] -> probabilities: a sigmoid per class when multi-label, else a
    softmax over the classes."""
    scores = np.asarray(scores, np.float64)
    if multi_label:
        return (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def as_input(x_uint8, device=None):
    """uint8 [B, T, H, W, C] (numpy) -> float [B, T, C, H, W] in [0, 1], on `device`."""
    import torch
    x = torch.from_numpy(x_uint8)
    if device is not None and device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    return x.permute(0, 1, 4, 2, 3).float().div_(255.0)


def network_probabilities(net, x, *, temperature, multi_label, tta_flip, batch, device=None,
                          autocast=contextlib.nullcontext, transform=None):
    """Probabilities [N, C] of `net` for uint8 examples x [N, T, H, W, C]. `transform` (float
    frames [M, C, H, W] -> same) is applied to the inputs first (the augmentation search)."""
    import torch
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = as_input(x[start:start + batch], device)
            if transform is not None:
                b, t = xb.shape[:2]
                xb = transform(xb.reshape(b * t, *xb.shape[2:])).reshape(xb.shape)
            with autocast():
                logits = net(xb).float()
                if tta_flip:
                    logits = (logits + net(xb.flip(-1)).float()) / 2
            logits = logits / temperature
            out.append((torch.sigmoid(logits) if multi_label
                        else torch.softmax(logits, dim=1)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.head.out_features), np.float32)


class Predictor:
    """A saved model: the quick model, or a network with how the run used it (its input
    view, temperature, flip TTA). Built by skeleton/persist.load from a model file."""

    TEST_BATCH = 256  # examples per forward pass; bounds memory, not the result

    def __init__(self, description, profile, quick, net=None):
        self.description = description
        self.source = description["source"]
        self.label_names = list(description["label_names"])
        self.profile = profile
        self.multi_label = bool(profile.multi_label)
        self.channels = profile.channels
        self.quick = quick
        self.net = net
        spec = description["net"]
        view = spec["view"] if net is not None else description["shape"]
        self.adapter = FrameAdapter(profile, *view)

    def _load(self, path):
        with open(path, "rb") as f:
            frame = decode_image(f.read(), self.channels)
        return self.adapter(frame[None])  # one frame: [1, H, W, C] -> [T, h, w, C]

    def predict_arrays(self, x):
        """uint8 [N, T, H, W, C] at the adapter's size -> probabilities (the network's) or
        ranking scores (the quick model's) [N, C], as the run's test() made them."""
        if self.net is None:
            return self.quick.predict(x)
        spec = self.description["net"]
        return network_probabilities(self.net, x, temperature=spec["temperature"],
                                     multi_label=self.multi_label, tta_flip=spec["tta_flip"],
                                     batch=self.TEST_BATCH)

    def predict_files(self, paths):
        """Probabilities [N, C] for image files."""
        if not paths:
            return np.zeros((0, len(self.label_names)), np.float32)
        scores = self.predict_arrays(np.stack([self._load(p) for p in paths]))
        return scores if self.net is not None else to_probabilities(scores, self.multi_label)
