"""Method numbers live in configs/: image.yaml holds every key; video.yaml overlays the few
that differ for clips. Overrides (AUTOCLINT_CONFIG, JSON, then the caller's) may only change
keys that exist: a typo is an error naming it and the keys that section knows.

`load_config` returns a `Config`: frozen dataclasses, one per section, whose fields are the
keys with their types. A missing key, an unknown one or a value of the wrong type is a
ConfigError of one line naming it. An int is accepted (and kept) where a float is expected;
a YAML list becomes a tuple. A modified copy is `.replace(...)` on any level:
`cfg.train.replace(lr=0.1)`, or `cfg.replace(train={"lr": 0.1})`; it is checked the same way."""
import copy
import dataclasses
import json
import os
import typing

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


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_LIST_NAMES = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _shown(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _typed(value, kind, where, origin):
    """`value` checked against the annotation `kind`: as it is, or a list as a tuple, or a
    mapping as its section's dataclass. ConfigError naming `where` if it does not fit."""
    if isinstance(kind, type) and issubclass(kind, Section):
        return kind.from_dict(value, origin)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if isinstance(value, (list, tuple)):
            return tuple(_typed(v, item, f"{where}[{i}]", origin) for i, v in enumerate(value))
        expected = f"a list of {_LIST_NAMES[item]}"
    else:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        fits = {bool: isinstance(value, bool),
                int: numeric and isinstance(value, int),
                float: numeric,
                str: isinstance(value, str)}[kind]
        if fits:
            return value
        expected = _TYPE_NAMES[kind]
    raise ConfigError(f"{origin}: {where} must be {expected}, "
                      f"got {type(value).__name__} {_shown(value)}")


class Section:
    """What every section shares: built from a mapping with every key checked, turned back
    into one, and copied with changes. `PATH` is where the section sits ('quick.local')."""
    PATH: typing.ClassVar[str] = ""

    @classmethod
    def from_dict(cls, values, origin="configuration"):
        """The section of the mapping `values`; ConfigError for an unknown, missing or
        mistyped key, naming it."""
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: {cls.PATH or 'the configuration'} must be a mapping, "
                              f"got {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in fields:
                known = ", ".join(sorted(fields))
                raise ConfigError(f"{origin}: unknown key '{cls._where(key)}' "
                                  f"(known here: {known})")
        for key in fields:
            if key not in values:
                raise ConfigError(f"{origin}: missing key '{cls._where(key)}'")
        return cls(**{key: _typed(values[key], hints[key], cls._where(key), origin)
                      for key in fields})

    @classmethod
    def _where(cls, key):
        return f"{cls.PATH}.{key}" if cls.PATH else str(key)

    def to_dict(self):
        """Plain values (sections as dicts, tuples as lists), as the YAML files hold them."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Section):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    def replace(self, **changes):
        """A copy with `changes` (a nested section takes a dict of its changes, or a section),
        checked as a loaded configuration is: unknown keys and wrong types are ConfigErrors."""
        changes = {key: value.to_dict() if isinstance(value, Section) else value
                   for key, value in changes.items()}
        values = merge(self.to_dict(), changes, "replace", self.PATH)
        return type(self).from_dict(values, "replace")


def section(path):
    """A frozen dataclass section found at `path` in the configuration."""
    def wrap(cls):
        cls.PATH = path
        return dataclasses.dataclass(frozen=True)(cls)
    return wrap


@section("data")
class DataConfig(Section):
    """How the training records are scanned, split, cached and sized for the network."""
    scan_records: int
    valid_ratio: float
    valid_min: int
    valid_max: int
    holdout_first: int
    shuffle_below: int
    sorted_unseen_ratio: float
    cache_max_mb: int
    keep_size_below: int
    side_cap: int
    side_cap_elongated: int
    side_multiple: int
    round_up_fraction: float
    max_frames: int


@section("quick.local")
class QuickLocalConfig(Section):
    """The ridge model's position-free patch responses (multi-label only)."""
    filters: int
    filter_images: int
    side: int
    size: int
    stride: int
    grid: int
    with_pixels: bool
    random_features: int


@section("quick")
class QuickConfig(Section):
    """The closed-form ridge model that gives the first prediction."""
    train_records: int
    read_seconds: float
    pool_side: int
    random_features: int
    ridge: float
    chunk_records: int
    time_segments: int
    time_side: int
    local: QuickLocalConfig


@section("net")
class NetConfig(Section):
    """Which network trains from scratch on each device."""
    cpu: str
    cuda: str
    temporal_block: bool


@section("train")
class TrainConfig(Section):
    """The trainer of a network: batches, optimiser, phases, precision and flips."""
    batch_cpu: int
    batch_cuda: int
    test_batch: int
    temperature: float
    lr: float
    momentum: float
    weight_decay: float
    warmup_fraction: float
    label_smoothing: float
    horizon_epochs: float
    horizon_budget_fraction: float
    min_phase_seconds: float
    phase_lr_decay: float
    crop_pad: float
    cpu_bf16: bool
    precision: str
    bf16_min_capability: float
    fp16_min_capability: float
    flip: bool
    flip_tolerance: float
    tta_flip: bool


@section("augment.ranges")
class RangesConfig(Section):
    """What the strongest level (10) of each augmentation operation means."""
    shear: float
    translate: float
    rotate: float
    enhance: float
    posterize_bits: int
    cutout: float


@section("augment")
class AugmentConfig(Section):
    """The augmentation policy search after the first phase."""
    search: bool
    pool: str
    cutout: bool
    draws: int
    subpolicies_per_draw: int
    top_draws: int
    max_error_ratio: float
    min_time_left_s: float
    budget_fraction: float
    max_seconds: float
    seed: int
    ranges: RangesConfig


@section("transfer")
class TransferConfig(Section):
    """Pretrained trunks: frozen features under linear heads, and fine-tuning."""
    enabled: bool
    backbones_cpu: tuple[str, ...]
    backbones_cuda: tuple[str, ...]
    min_side: int
    max_side_cuda: int
    feature_us_per_pixel: float
    first_head_fraction: float
    assumed_budget_s: float
    second_view_max_mb: int
    rescan_side_cpu: int
    rescan_side_cuda: int
    rescan_ensemble: bool
    rescan_min_ratio: float
    rescan_time_fraction: float
    partner_ratio: float
    side_multiple: int
    batch: int
    feature_taps: int
    max_frames: int
    probe_records: int
    max_train_records: int
    refit_growth: float
    l2_grid: tuple[float, ...]
    l2_tolerance: float
    lbfgs_iterations: int
    lbfgs_loss_tol: float
    finetune: bool
    finetune_blocks: int
    finetune_lr: float
    trunk_lr_scale: float
    frozen_bn: bool


@section("select")
class SelectConfig(Section):
    """When a candidate replaces (or blends with) the best model so far."""
    confidence: float
    bootstrap: int
    blend: bool
    blend_weight: float
    blend_quick: bool
    blend_confidence: float
    tie_loss_ratio: float
    seed: int


@section("schedule")
class ScheduleConfig(Section):
    """How the scheduler shares the time between candidates and tests."""
    test_ratio: float
    min_slice_s: float
    read_slice_s: float
    slice_s: float
    alc_t0: float
    explore_fraction: float
    explore_floor: float
    min_gain: float
    stall_evaluations: int
    loss_weight: float
    reserve_s: float


@section("")
class Config(Section):
    """The whole configuration: one frozen section per part of the method."""
    data: DataConfig
    quick: QuickConfig
    net: NetConfig
    train: TrainConfig
    augment: AugmentConfig
    transfer: TransferConfig
    select: SelectConfig
    schedule: ScheduleConfig


def load_configs(overrides=None):
    """{kind: Config} for every kind, image.yaml read once: a run loads both before its
    first records say which one it needs."""
    base = _read(BASE)
    return {kind: load_config(kind, overrides, base=copy.deepcopy(base)) for kind in KINDS}


def load_config(kind, overrides=None, base=None):
    """configs/image.yaml (or `base`, its contents), then the video overlay for clips, then
    AUTOCLINT_CONFIG (JSON), then `overrides` (a dict), as a Config. Each layer is checked
    as it is applied, so an error names the layer that brought it."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    config = base if base is not None else _read(BASE)
    typed = Config.from_dict(config, f"configs/{BASE}.yaml")
    if kind != BASE:
        typed = _apply(config, _read(kind), f"configs/{kind}.yaml")
    env = os.environ.get("AUTOCLINT_CONFIG")
    if env:
        try:
            parsed = json.loads(env)
        except json.JSONDecodeError as e:
            raise ConfigError(f"AUTOCLINT_CONFIG: not JSON ({e})") from None
        typed = _apply(config, parsed, "AUTOCLINT_CONFIG")
    if overrides:
        typed = _apply(config, overrides, "overrides")
    return typed


def _apply(config, layer, origin):
    """Merge `layer` into the plain `config` and check the result, naming `origin`."""
    merge(config, layer, origin)
    return Config.from_dict(config, origin)
