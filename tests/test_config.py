"""configs/: one base (image.yaml) with a video overlay; unknown keys are errors."""
import json
import os

import pytest
import yaml

from skeleton.config import CONFIG_DIR, ConfigError, load_config


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_video_overlays_only_what_differs(monkeypatch):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    image, video = _flat(load_config("image")), _flat(load_config("video"))
    assert image.keys() == video.keys()
    with open(os.path.join(CONFIG_DIR, "video.yaml")) as f:
        overlay = _flat(yaml.safe_load(f))
    changed = {k for k in image if image[k] != video[k]}
    assert changed == {k for k in overlay if overlay[k] != image[k]}
    assert video["data.max_frames"] > 1 and image["data.max_frames"] == 1
    assert video["augment.search"] is False


def test_an_unknown_key_is_an_error_naming_it_and_the_known_ones(monkeypatch):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    with pytest.raises(ConfigError) as e:
        load_config("image", {"train": {"learning_rate": 0.1}})
    message = str(e.value)
    assert "train.learning_rate" in message and "lr" in message and "\n" not in message
    with pytest.raises(ConfigError, match="unknown key 'tarnsfer'"):
        load_config("image", {"tarnsfer": {"enabled": False}})


def test_the_environment_variable_is_checked_too(monkeypatch):
    monkeypatch.setenv("AUTOCLINT_CONFIG", json.dumps({"schedule": {"reserve": 1}}))
    with pytest.raises(ConfigError, match="AUTOCLINT_CONFIG: unknown key 'schedule.reserve'"):
        load_config("video")
    monkeypatch.setenv("AUTOCLINT_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="AUTOCLINT_CONFIG: not JSON"):
        load_config("image")
    monkeypatch.setenv("AUTOCLINT_CONFIG", json.dumps({"train": 3}))
    with pytest.raises(ConfigError, match="train must be a mapping"):
        load_config("image")


def test_overrides_apply_in_order_and_leave_the_rest(monkeypatch):
    monkeypatch.setenv("AUTOCLINT_CONFIG", json.dumps({"train": {"lr": 0.2, "momentum": 0.8}}))
    cfg = load_config("video", {"train": {"lr": 0.3}})
    assert cfg["train"]["lr"] == 0.3 and cfg["train"]["momentum"] == 0.8
    assert cfg["train"]["batch_cpu"] == 16  # the overlay still applies
    with pytest.raises(ConfigError, match="unknown kind"):
        load_config("audio")


def test_every_key_the_code_reads_exists():
    """No defaults in code: what skeleton/ reads with cfg[...] must be in the base file."""
    import re
    keys = set(_flat(load_config("image")))
    leaves = {part for k in keys for part in k.split(".")}  # sections and keys
    root = os.path.join(os.path.dirname(CONFIG_DIR), "skeleton")
    read = set()
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as f:
                    read |= set(re.findall(r'cfg\["([a-z0-9_]+)"\]', f.read()))
    assert read and read <= leaves, sorted(read - leaves)
