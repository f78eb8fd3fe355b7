"""Save a learner's best model to one file and predict new images with it, outside AutoDL.

    save(learner, path)              # model.py does this after each test() when the env var
                                     # AUTOCLINT_SAVE_DIR is set (off in the challenge)
    predictor = load(path)
    probs = predictor.predict_files(["a.png", "b.jpg"])   # [N, C]
    predictor.label_names

The file is a numpy .npz archive loaded with allow_pickle=False: arrays only (the weights,
the quick model, one JSON document of plain values under "__meta__"), so loading a file can
never run code, saving the quick model needs no torch import and a file loads on any
device. A file that is not one gives ModelFileError, a one-line message naming it.
"""
import dataclasses
import json
import os
import tempfile
import zipfile

import numpy as np

from .data.decode import decode_image
from .data.store import FrameAdapter

FORMAT_VERSION = 2
META_KEY = "__meta__"


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message names the file and the reason."""


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
    profile = dataclasses.asdict(learner.profile)
    arrays = {"profile/label_counts": np.asarray(profile.pop("label_counts"))}
    for key in QUICK_STATE:
        if getattr(quick, key, None) is not None:
            arrays[f"quick/{key}"] = np.asarray(getattr(quick, key))
    meta = {
        "version": FORMAT_VERSION,
        "source": learner.best_source,
        "classes": int(learner.classes),
        "label_names": _label_names(learner),
        "profile": profile,
        "shape": [int(v) for v in learner.shape],  # (frames, height, width) of the adapter
        "cfg": learner.cfg,
        "quick_cfg": quick.cfg,
        "net": None,
    }
    best = _best_network(learner)
    if best is not None:
        net, weights, temperature, tta, view = best
        meta["net"] = {"name": net.name, "frames": net.frames, "temporal": net.temporal_mode,
                       "temperature": float(temperature), "keys": list(weights),
                       "tta_flip": bool(tta), "view": [int(v) for v in view],
                       "options": net.options}
        for k, v in weights.items():
            arrays[f"net/{k}"] = (v.detach().float() if v.is_floating_point()
                                  else v.detach()).cpu().numpy()
    arrays[META_KEY] = np.frombuffer(json.dumps(meta, default=_plain).encode("utf-8"),
                                     np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def _best_network(learner):
    """(net, weights, temperature, flip TTA, input view (frames, h, w)) of the best model
    when it is a network, None when it is the quick model."""
    source = learner.best_source
    if source == "transfer":
        if learner.profile.is_video:  # its features are not the network's: nothing to save
            raise ValueError("a frozen-feature head on video cannot be saved yet")
        net, weights = learner.transfer_snapshot
        second = learner.store.x2 is not None  # the view its features were computed from
        view = (1, *learner.store.x2.shape[2:4]) if second else learner.shape
        return net, weights, 1.0, False, view
    if source not in ("net", "finetune"):
        return None
    trainer = learner.trainer
    if source == "net" and getattr(learner, "scratch", None) is not None:
        trainer = learner.scratch[0]  # a fine-tuning trial is on: the scratch one is best
    if trainer is None:
        return None
    weights = trainer.best_state or trainer.net.state_dict()
    tta = learner.cfg["train"]["tta_flip"] and trainer.flip
    second = source == "finetune" and learner.store.x2 is not None
    view = (learner.shape[0], *learner.store.x2.shape[2:4]) if second else learner.shape
    return trainer.net, weights, trainer.temperature, tta, view


# What a fitted QuickModel predicts from (filters: the local block's, multi-label profiles).
QUICK_STATE = ("mean", "std", "projection", "weights", "filters")


def _plain(value):
    """JSON for the few numpy values a config or profile may hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be saved in a model file")


class Predictor:
    def __init__(self, state, arrays):
        from .data.profile import DataProfile
        self.state = state
        self.source = state["source"]
        self.label_names = list(state["label_names"])
        profile = self.profile = DataProfile(**state["profile"],
                                             label_counts=arrays["profile/label_counts"])
        self.multi_label = bool(profile.multi_label)
        self.channels = profile.channels
        self.adapter = FrameAdapter(profile, *state["shape"])
        from .quick import QuickModel
        self.quick = QuickModel(state["quick_cfg"])
        for key in QUICK_STATE:
            setattr(self.quick, key, arrays.get(f"quick/{key}"))
        self.net = None
        if state["net"] is not None:
            self._build_net(state["net"], arrays)

    def _build_net(self, spec, arrays):
        from .compat import import_torch
        torch = import_torch()
        from .nn import build_network
        # weights="none": the saved state dict holds every weight, no pretrained file needed.
        options = dict(spec.get("options") or {})
        net = build_network(spec["name"], self.channels, self.state["classes"],
                            frames=spec["frames"], temporal=spec["temporal"], weights="none",
                            **options)
        if spec.get("view"):  # the network reads its own view (a larger one for transfer)
            self.adapter = FrameAdapter(self.profile, *spec["view"])
        net.load_state_dict({k: torch.from_numpy(np.array(arrays[f"net/{k}"]))
                             for k in spec["keys"]})
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
        tta = self.state["net"].get("tta_flip", False)  # as the run decided (flip probe)
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
        scores = self.predict_arrays(x)
        return scores if self.net is not None else to_probabilities(scores, self.multi_label)


def to_probabilities(scores, multi_label):
    """Scores whose ranks are all AutoDL reads (the quick model's) -> probabilities [N, C]:
    a sigmoid per class when multi-label, else a softmax over the classes."""
    scores = np.asarray(scores, np.float64)
    if multi_label:
        return (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def read_description(path):
    """The plain-value description saved with a model (source, classes, label names,
    profile with multi_label, ...), without building it: no torch import."""
    state, _ = _read(path)
    return state


def load(path):
    """The Predictor saved in `path`; ModelFileError if it is not a model file of this tool."""
    state, arrays = _read(path)
    try:
        return Predictor(state, arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: damaged model file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:200]})") from None


def _read(path):
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive")
        with archive:
            if META_KEY not in archive.files:
                raise ValueError("no model description inside")
            state = json.loads(archive[META_KEY].tobytes().decode("utf-8"))
            arrays = {k: archive[k] for k in archive.files if k != META_KEY}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        # allow_pickle=False: a pickle (an older model file, or a hostile one) lands here.
        raise ModelFileError(f"{path}: not a model file of this tool "
                             f"({' '.join(str(e).split())})") from None
    if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise ModelFileError(f"{path}: unsupported model file version {version} "
                             f"(this tool reads version {FORMAT_VERSION})")
    return state, arrays
