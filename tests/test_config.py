"""configs/: one base (image.yaml) with a video overlay, loaded into typed, frozen sections;
unknown or missing keys and mistyped values are errors of one line naming the key."""
import dataclasses
import json
import os
import re

import pytest
import yaml

from skeleton.config import CONFIG_DIR, Config, ConfigError, TrainConfig, load_config


def _flat(tree, prefix=""):
    if isinstance(tree, Config):
        tree = tree.to_dict()
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
    assert cfg.train.lr == 0.3 and cfg.train.momentum == 0.8
    assert cfg.train.batch_cpu == 16  # the overlay still applies
    with pytest.raises(ConfigError, match="unknown kind"):
        load_config("audio")


def test_the_code_reads_attributes_not_keys():
    """Modules read cfg.section.key: no dict lookups of the configuration are left."""
    root = os.path.dirname(CONFIG_DIR)
    found = []
    for folder in ("skeleton", "autoclint", "scripts"):
        for path, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(path, name)) as f:
                        text = f.read()
                    found += [f"{name}: {m}" for m in re.findall(r'cfg\[[^\]]*\]', text)]
    assert not found, found


def test_every_yaml_key_is_a_typed_field_and_lists_are_tuples(monkeypatch):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    cfg = load_config("image")
    assert isinstance(cfg, Config) and isinstance(cfg.train, TrainConfig)
    with open(os.path.join(CONFIG_DIR, "image.yaml")) as f:
        assert _flat(cfg) == _flat(yaml.safe_load(f))  # every key, every value
    assert cfg.transfer.l2_grid == (0.01, 0.03, 0.1, 0.3)
    assert isinstance(cfg.transfer.backbones_cpu, tuple)
    assert cfg.quick.local.filters == 192 and cfg.augment.ranges.rotate == 30.0


def test_the_video_overlay_gives_the_video_values(monkeypatch):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    video = load_config("video")
    assert (video.data.max_frames, video.data.shuffle_below) == (8, 1000)
    assert (video.train.batch_cpu, video.train.batch_cuda, video.train.test_batch) == (16, 32, 64)
    assert video.train.flip is False and video.augment.search is False
    assert (video.transfer.max_frames, video.transfer.probe_records) == (4, 256)
    assert video.train.lr == load_config("image").train.lr  # the rest is image.yaml's


def test_the_configuration_is_frozen(monkeypatch):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    cfg = load_config("image")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 0.1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.quick.local.filters = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train = None
    assert cfg == load_config("image") and hash(cfg) == hash(load_config("image"))


@pytest.mark.parametrize("override, named, expected", [
    ({"train": {"lr": "0.1"}}, "train.lr", "a number, got str '0.1'"),
    ({"train": {"flip": 1}}, "train.flip", "a boolean, got int 1"),
    ({"train": {"batch_cpu": 8.5}}, "train.batch_cpu", "an integer, got float 8.5"),
    ({"select": {"bootstrap": True}}, "select.bootstrap", "an integer, got bool True"),
    ({"net": {"cpu": ["fastnet"]}}, "net.cpu", "a string, got list"),
    ({"transfer": {"l2_grid": [0.1, "x"]}}, "transfer.l2_grid[1]", "a number, got str 'x'"),
    ({"transfer": {"backbones_cpu": "resnet18"}}, "transfer.backbones_cpu", "a list of strings"),
    ({"quick": {"local": {"grid": None}}}, "quick.local.grid", "an integer, got NoneType"),
    ({"data": {"side_cap": {"x": 1}}}, "data.side_cap", "an integer, got dict"),
])
def test_a_wrong_type_is_an_error_of_one_line_naming_the_key(monkeypatch, override, named,
                                                               expected):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    with pytest.raises(ConfigError) as e:
        load_config("image", override)
    message = str(e.value)
    assert message.startswith(f"overrides: {named} must be {expected}"), message
    assert "\n" not in message
    monkeypatch.setenv("AUTOCLINT_CONFIG", json.dumps(override))
    with pytest.raises(ConfigError, match=f"^AUTOCLINT_CONFIG: {re.escape(named)} "):
        load_config("video")


def test_an_int_is_a_float_and_is_kept_as_given(monkeypatch):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    cfg = load_config("image", {"train": {"lr": 1, "horizon_epochs": 2}})
    assert cfg.train.lr == 1 and type(cfg.train.lr) is int and cfg.train.horizon_epochs == 2
    assert load_config("image", {"transfer": {"l2_grid": [1, 0.5]}}).transfer.l2_grid == (1, 0.5)


def test_a_missing_key_is_an_error_naming_it(monkeypatch):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    plain = load_config("image").to_dict()
    del plain["quick"]["local"]["stride"]
    with pytest.raises(ConfigError) as e:
        Config.from_dict(plain, "configs/image.yaml")
    assert str(e.value) == "configs/image.yaml: missing key 'quick.local.stride'"
    del plain["schedule"]
    with pytest.raises(ConfigError, match="missing key 'schedule'$"):
        Config.from_dict(plain)
    plain = load_config("image").to_dict()
    plain["train"]["lr_max"] = 1.0  # and a key the dataclass does not have
    with pytest.raises(ConfigError, match="unknown key 'train.lr_max' \\(known here: .*lr"):
        Config.from_dict(plain)


def test_replace_makes_a_checked_copy(monkeypatch):
    monkeypatch.delenv("AUTOCLINT_CONFIG", raising=False)
    cfg = load_config("image")
    train = cfg.train.replace(lr=0.1, batch_cpu=8)
    assert (train.lr, train.batch_cpu, train.momentum) == (0.1, 8, cfg.train.momentum)
    assert cfg.train.lr == 0.05  # the original is untouched
    whole = cfg.replace(train={"lr": 0.2}, quick={"local": {"filters": 0}})
    assert whole.train.lr == 0.2 and whole.train.batch_cpu == cfg.train.batch_cpu
    assert whole.quick.local.filters == 0 and whole.quick.local.side == cfg.quick.local.side
    assert cfg.replace(train=train).train == train  # a section replaces a section
    assert cfg.transfer.replace(l2_grid=[0.5]).l2_grid == (0.5,)
    with pytest.raises(ConfigError, match="^replace: unknown key 'train.learning_rate' "
                                          "\\(known here: .*lr"):
        cfg.train.replace(learning_rate=0.1)
    with pytest.raises(ConfigError, match="^replace: unknown key 'trian'"):
        cfg.replace(trian={"lr": 0.1})
    with pytest.raises(ConfigError, match="^replace: quick.local.filters must be an integer"):
        cfg.quick.replace(local={"filters": "many"})
    with pytest.raises(ConfigError, match="^replace: train must be a mapping"):
        cfg.replace(train=0.1)


def test_load_configs_gives_every_kind_with_the_overrides_applied():
    from skeleton.config import load_configs
    configs = load_configs({"train": {"lr": 0.2}})
    assert set(configs) == {"image", "video"}
    assert configs["image"] == load_config("image", {"train": {"lr": 0.2}})
    assert configs["video"] == load_config("video", {"train": {"lr": 0.2}})
    assert configs["video"].train.batch_cpu != configs["image"].train.batch_cpu
    with pytest.raises(ConfigError, match="lr_max"):
        load_configs({"train": {"lr_max": 1.0}})
