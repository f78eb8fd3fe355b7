"""Method numbers live in configs/: image.yaml holds every key; video.yaml overlays the few
that differ for clips. Overrides (AUTOCLINT_CONFIG, JSON, then the caller's) may only change
keys that exist: a typo is an error naming it and the keys that section knows."""
import copy
import json
import os

import yaml

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
BASE = "image"
KINDS = ("image", "video")


class ConfigError(ValueError):
    """An override naming a key the configuration does not have, or a bad config file."""


def _read(name):
    path = os.path.join(CONFIG_DIR, f"{name}.yaml")
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    return config


def merge(base, override, origin, section=""):
    """Deep-merge `override` into `base` (in place); every key must already exist in base."""
    if not isinstance(override, dict):
        raise ConfigError(f"{origin}: {section or 'the configuration'} must be a mapping, "
                          f"got {type(override).__name__}")
    for key, value in override.items():
        where = f"{section}.{key}" if section else key
        if key not in base:
            known = ", ".join(sorted(map(str, base)))
            raise ConfigError(f"{origin}: unknown key '{where}' (known here: {known})")
        if isinstance(base[key], dict):
            merge(base[key], value, origin, where)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_config(kind, overrides=None):
    """configs/image.yaml, then the video overlay for clips, then AUTOCLINT_CONFIG (JSON),
    then `overrides` (a dict)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    config = _read(BASE)
    if kind != BASE:
        merge(config, _read(kind), f"configs/{kind}.yaml")
    env = os.environ.get("AUTOCLINT_CONFIG")
    if env:
        try:
            parsed = json.loads(env)
        except json.JSONDecodeError as e:
            raise ConfigError(f"AUTOCLINT_CONFIG: not JSON ({e})") from None
        merge(config, parsed, "AUTOCLINT_CONFIG")
    if overrides:
        merge(config, overrides, "overrides")
    return config
