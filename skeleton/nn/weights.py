"""Finding and loading trunk weights; the policy (auto / none / path) lives in the builders."""
import importlib.metadata
import importlib.util
import logging
import os

import torch

log = logging.getLogger("skeleton")

# The repo's models/ folder: parent of skeleton/ + "/models".
DEFAULT_MODELS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models")


def read_state_dict(path):
    """A plain state dict from a .pth file (also unwraps {'state_dict': ...} and 'module.')."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TypeError(f"{path}: not a state dict ({type(state).__name__})")
    # Checkpoints saved from DataParallel prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_into(trunk, path, drop_prefixes=()):
    """Strict load of `path` into `trunk`, minus the original classifier's keys."""
    state = read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(drop_prefixes))}
    # load_state_dict copies matching tensors before it raises: keep the init to restore.
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    try:
        trunk.load_state_dict(state, strict=True)
    except Exception:
        trunk.load_state_dict(before, strict=True)
        raise


def package_file(distribution, top_level, relative):
    """Path of a data file shipped inside an installed package, without importing it.

    The weights packages' own modules may need other (old) torch versions, so only their
    files are located: find_spec on a top-level name does not execute the package.
    """
    try:
        spec = importlib.util.find_spec(top_level)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = os.path.join(folder, relative)
            if os.path.isfile(candidate):
                return candidate
    # Fall back to the installed file list (e.g. a namespace or unusual layout).
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = f"{top_level}/{relative}".replace(os.sep, "/")
    for f in files:
        if str(f).replace(os.sep, "/").endswith(wanted):
            candidate = str(f.locate())
            if os.path.isfile(candidate):
                return candidate
    return None


def apply_weights(trunk, weights, name, auto_path=None, auto_used=None, drop_prefixes=(),
                  how_to_get=""):
    """Initialise `trunk` by the `weights` policy; returns the weights_used string.

    "none": random. "auto": `auto_path` when it exists (reported as `auto_used`), else random
    with a warning (a broken file also falls back: a timed run must not die on it).
    Anything else is a path the caller asked for: it must load, so errors propagate.
    """
    if weights == "none":
        return "random"
    if weights == "auto":
        if auto_path is None or not os.path.isfile(auto_path):
            log.warning("%s: pretrained weights not found (%s), using RANDOM init. To get them: %s",
                        name, auto_path or "no file", how_to_get)
            return "random"
        try:
            load_into(trunk, auto_path, drop_prefixes)
        except Exception as e:  # noqa: BLE001  a broken file must not stop a timed run
            log.warning("%s: could not load %s (%s: %s), using RANDOM init. To get them: %s",
                        name, auto_path, type(e).__name__, e, how_to_get)
            return "random"
        log.info("%s: loaded %s", name, auto_path)
        return auto_used or f"imagenet:{auto_path}"
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: weights file {path} does not exist")
    load_into(trunk, path, drop_prefixes)
    return f"file:{path}"
