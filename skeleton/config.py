"""Method numbers live in configs/*.yaml; this reads them (and applies overrides)."""
import copy
import json
import os

import yaml

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _merge(base, override):
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(kind, overrides=None):
    """configs/<kind>.yaml, then AUTOCLINT_CONFIG (JSON of overrides), then `overrides`."""
    with open(os.path.join(CONFIG_DIR, f"{kind}.yaml")) as f:
        config = yaml.safe_load(f)
    env = os.environ.get("AUTOCLINT_CONFIG")
    if env:
        _merge(config, json.loads(env))
    if overrides:
        _merge(config, copy.deepcopy(overrides))
    return config
