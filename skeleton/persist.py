"""Save a learner's best model to one file and load it back: serialising only (what the
loaded model does is skeleton/predict.Predictor, the run's own prediction path).

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

from .predict import Predictor

FORMAT_VERSION = 3  # 3: a network may read extra sides (transfer's two-side head)
READABLE_VERSIONS = (2, 3)  # 2 differs only by lacking that option
META_KEY = "__meta__"
# What a fitted QuickModel predicts from (filters: the local block's, multi-label profiles).
QUICK_STATE = ("mean", "std", "projection", "weights", "filters")


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message names the file and the reason."""


def _label_names(metadata, classes):
    try:
        mapping = metadata.get_label_to_index_map() or {}
    except Exception:  # noqa: BLE001  (metadata without names: numbered classes)
        mapping = {}
    names = [str(i) for i in range(classes)]
    for name, index in dict(mapping).items():
        if 0 <= int(index) < classes:
            names[int(index)] = str(name)
    return names


def save(learner, path):
    """Write the learner's best model so far (network if it is the best, else the quick
    model) to `path`, atomically. Returns False when there is nothing to save yet."""
    best, feed = learner.best, learner.feed
    if best.source is None or learner.quick is None:
        return False
    quick = learner.quick
    profile = dataclasses.asdict(feed.profile)
    arrays = {"profile/label_counts": np.asarray(profile.pop("label_counts"))}
    for key in QUICK_STATE:
        if getattr(quick, key, None) is not None:
            arrays[f"quick/{key}"] = np.asarray(getattr(quick, key))
    meta = {
        "version": FORMAT_VERSION,
        "source": best.source,
        "classes": int(feed.classes),
        "label_names": _label_names(feed.metadata, feed.classes),
        "profile": profile,
        "shape": [int(v) for v in feed.shape],  # (frames, height, width) of the adapter
        "held_out": int(len(feed.valid_idx)),  # the examples the model was chosen on
        "cfg": feed.cfg.to_dict(),
        "quick_cfg": quick.cfg.to_dict(),
        "net": None,
    }
    exported = best.saved
    if not best.savable:
        raise ValueError(f"the best model so far ({best.source}) cannot be saved")
    if exported is not None:
        net, weights = exported.net, exported.weights
        meta["net"] = {"name": net.name, "frames": net.frames, "temporal": net.temporal_mode,
                       "temperature": float(exported.temperature), "keys": list(weights),
                       "tta_flip": bool(exported.tta_flip),
                       "view": [int(v) for v in exported.view], "options": net.options,
                       "precision": exported.precision}
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


@dataclasses.dataclass
class SavedNetwork:
    """What saving a network needs: the module (its architecture), the weights to save (the
    best checkpoint, or a frozen head written into the head), how the run predicted with it,
    the input view (frames, height, width) it reads and the precision it was trained in
    (frozen features are computed in fp32)."""
    net: object
    weights: dict
    temperature: float
    tta_flip: bool
    view: tuple
    precision: str = "fp32"


def _plain(value):
    """JSON for the few numpy values a config or profile may hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be saved in a model file")


def _build(state, arrays):
    """The Predictor of a model file's description and arrays."""
    from .config import QuickConfig
    from .data.profile import DataProfile
    from .quick import QuickModel
    profile = DataProfile(**state["profile"], label_counts=arrays["profile/label_counts"])
    quick = QuickModel(QuickConfig.from_dict(state["quick_cfg"], "the saved quick model"))
    for key in QUICK_STATE:
        setattr(quick, key, arrays.get(f"quick/{key}"))
    spec, net = state["net"], None
    if spec is not None:
        from .compat import import_torch
        torch = import_torch()
        from .nn import build_network
        # weights="none": the saved state dict holds every weight, no pretrained file needed.
        net = build_network(spec["name"], profile.channels, state["classes"],
                            frames=spec["frames"], temporal=spec["temporal"], weights="none",
                            **spec["options"])
        net.load_state_dict({k: torch.from_numpy(np.array(arrays[f"net/{k}"]))
                             for k in spec["keys"]})
    return Predictor(state, profile, quick, net)


def read_description(path):
    """The plain-value description saved with a model (source, classes, label names,
    profile with multi_label, ...), without building it: no torch import."""
    state, _ = _read(path)
    return state


def load(path):
    """The Predictor saved in `path`; ModelFileError if it is not a model file of this tool."""
    state, arrays = _read(path)
    try:
        return _build(state, arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: damaged model file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:200]})") from None


def _what_it_is(path, error):
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return " ".join(str(error).split())
    if not head:
        return "an empty file"
    for magic, kind in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"\x80", "a Python pickle, which is never loaded"),
                        (b"PK", "a zip archive that holds no whole model (damaged?)")):
        if head.startswith(magic):
            return kind
    return "not an archive fit writes"


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
        # numpy's own words ("pickled data", "allow_pickle") mislead about an image or a
        # text file: say plainly what the file is not.
        raise ModelFileError(f"{path}: not a model saved by autoclint fit "
                             f"({_what_it_is(path, e)})") from None
    if not isinstance(state, dict) or state.get("version") not in READABLE_VERSIONS:
        version = state.get("version") if isinstance(state, dict) else None
        raise ModelFileError(f"{path}: unsupported model file version {version} "
                             f"(this tool reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))})")
    return state, arrays
