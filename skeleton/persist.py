"""Save a learner's best model to one file and predict new images with it, outside AutoDL.

    save(learner, path)              # model.py does this after each test() when the env var
                                     # AUTOCLINT_SAVE_DIR is set (off in the challenge)
    predictor = load(path)
    probs = predictor.predict_files(["a.png", "b.jpg"])   # [N, C]
    predictor.label_names

The file is a pickle of numpy arrays and plain values (no torch objects), so saving the
quick model needs no torch import and a file loads on any device.
"""
import os
import pickle
import tempfile

import numpy as np

from .data.decode import decode_image
from .data.store import FrameAdapter

FORMAT_VERSION = 1


def _label_names(learner):
    try:
        mapping = learner.metadata.get_label_to_index_map() or {}
    except Exception:  # noqa: BLE001  (metadata without names: numbered classes)
        mapping = {}
    names = [str(i) for i in range(learner.classes)]
    for name, index in dict(mapping).items():
        if 0 <= int(index) < learner.classes:
            names[int(index)] = str(name)
    return names


def save(learner, path):
    """Write the learner's best model so far (network if it is the best, else the quick
    model) to `path`, atomically. Returns False when there is nothing to save yet."""
    if getattr(learner, "best_source", None) is None or getattr(learner, "quick", None) is None:
        return False
    quick = learner.quick
    state = {
        "version": FORMAT_VERSION,
        "source": learner.best_source,
        "classes": learner.classes,
        "label_names": _label_names(learner),
        "profile": learner.profile,           # a dataclass of plain values and one array
        "shape": tuple(learner.shape),         # (frames, height, width) the adapter resizes to
        "cfg": learner.cfg,
        "quick": {"cfg": quick.cfg, "mean": quick.mean, "std": quick.std,
                  "projection": quick.projection, "weights": quick.weights},
        "net": None,
    }
    trainer = learner.trainer
    if learner.best_source == "net" and trainer is not None:
        weights = trainer.best_state or trainer.net.state_dict()
        net = trainer.net
        state["net"] = {"name": net.name, "frames": net.frames, "temporal": net.temporal_mode,
                        "temperature": trainer.temperature,
                        "state_dict": {k: v.detach().float().cpu().numpy()
                                       if v.is_floating_point() else v.detach().cpu().numpy()
                                       for k, v in weights.items()}}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


class Predictor:
    def __init__(self, state):
        self.state = state
        self.source = state["source"]
        self.label_names = state["label_names"]
        profile = state["profile"]
        self.multi_label = bool(profile.multi_label)
        self.channels = profile.channels
        self.adapter = FrameAdapter(profile, *state["shape"])
        from .quick import QuickModel
        q = state["quick"]
        self.quick = QuickModel(q["cfg"])
        self.quick.mean, self.quick.std = q["mean"], q["std"]
        self.quick.projection, self.quick.weights = q["projection"], q["weights"]
        self.net = None
        if state["net"] is not None:
            self._build_net(state["net"])

    def _build_net(self, spec):
        from .compat import import_torch
        torch = import_torch()
        from .nn import build_network
        # weights="none": the saved state dict holds every weight, no pretrained file needed.
        net = build_network(spec["name"], self.channels, self.state["classes"],
                            frames=spec["frames"], temporal=spec["temporal"], weights="none")
        net.load_state_dict({k: torch.from_numpy(np.asarray(v))
                             for k, v in spec["state_dict"].items()})
        self.net = net.eval()
        self.torch = torch

    def _load(self, path):
        with open(path, "rb") as f:
            frame = decode_image(f.read(), self.channels)
        return self.adapter(frame[None])  # one frame: [1, H, W, C] -> [T, h, w, C]

    def predict_arrays(self, x):
        """uint8 [N, T, H, W, C] at the adapter's size -> scores [N, C]."""
        if self.net is None:
            return self.quick.predict(x)
        torch = self.torch
        tta = self.state["cfg"]["train"].get("tta_flip", False) and x.shape[1] == 1
        out = []
        with torch.no_grad():
            for start in range(0, len(x), 256):
                xb = torch.from_numpy(x[start:start + 256]).permute(0, 1, 4, 2, 3).float() / 255
                logits = self.net(xb)
                if tta:
                    logits = (logits + self.net(xb.flip(-1))) / 2
                logits = logits / self.state["net"]["temperature"]
                out.append((torch.sigmoid(logits) if self.multi_label
                            else torch.softmax(logits, dim=1)).numpy())
        return np.concatenate(out)

    def predict_files(self, paths):
        """Probabilities [N, C] for image files (the quick model's scores are turned into
        probabilities with a softmax, or a sigmoid when multi-label)."""
        if not paths:
            return np.zeros((0, len(self.label_names)), np.float32)
        x = np.stack([self._load(p) for p in paths])
        scores = np.asarray(self.predict_arrays(x), np.float64)
        if self.net is None:
            if self.multi_label:
                scores = 1.0 / (1.0 + np.exp(-scores))
            else:
                e = np.exp(scores - scores.max(axis=1, keepdims=True))
                scores = e / e.sum(axis=1, keepdims=True)
        return scores.astype(np.float32)


def load(path):
    with open(path, "rb") as f:
        state = pickle.load(f)
    if state.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported model file version {state.get('version')}")
    return Predictor(state)
