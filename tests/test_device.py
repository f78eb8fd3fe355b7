"""Device and precision choice (skeleton/device.py) and CUDA failures, without a GPU:
capabilities are faked, the fp32/fp16/bf16 training paths run on the CPU, and CUDA failures
are raised by monkeypatched stand-ins at each stage."""
import json
import logging
import os
import time

import numpy as np
import pytest
import torch

from skeleton import device as device_mod
from skeleton.config import load_config
from skeleton.device import choose_precision
from skeleton.quick import QuickModel

from conftest import REPO, drive, fast_config

NO_KERNEL = "CUDA error: no kernel image is available for execution on the device"


@pytest.fixture(autouse=True)
def cuda_not_yet_broken(monkeypatch):
    monkeypatch.setattr(device_mod, "_cuda_broken", False)


@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("capability, expected", [
    ((9, 0), "bf16"),   # H100 / H200
    ((8, 9), "bf16"),   # L4, RTX 40xx
    ((8, 0), "bf16"),   # A100
    ((7, 5), "fp16"),   # T4, RTX 20xx
    ((7, 0), "fp16"),   # V100
    ((6, 1), "fp32"),   # GTX 10xx
    ((6, 0), "fp32"),   # P100
    ((3, 7), "fp32"),   # K80
    (None, "fp32"),     # CPU, cpu_bf16 off (the shipped setting)
])
def test_auto_precision_follows_the_compute_capability(kind, capability, expected):
    cfg = load_config(kind).train
    assert cfg.precision == "auto" and cfg.cpu_bf16 is False
    assert choose_precision(capability, cfg)[0] == expected


def test_precision_override_and_cpu_switch():
    cfg = load_config("image").train
    for forced in ("bf16", "fp16", "fp32"):
        assert choose_precision((9, 0), cfg.replace(precision=forced)) == (
            forced, "forced by train.precision")
        assert choose_precision((6, 0), cfg.replace(precision=forced))[0] == forced
    # The CPU keeps its own switch; train.precision is about CUDA.
    assert choose_precision(None, cfg.replace(cpu_bf16=True))[0] == "bf16"
    assert choose_precision(None, cfg.replace(precision="fp16"))[0] == "fp32"
    # The thresholds are read from the config, not built in.
    assert choose_precision((7, 5), cfg.replace(bf16_min_capability=7.5))[0] == "bf16"
    assert choose_precision((6, 0), cfg.replace(fp16_min_capability=6.0))[0] == "fp16"


def test_the_trainer_asks_cuda_for_the_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    cfg = load_config("video").train
    assert device_mod.precision_for(torch.device("cuda"), cfg)[0] == "fp16"
    assert device_mod.precision_for(torch.device("cpu"), cfg)[0] == "fp32"


def test_unknown_precision_is_a_one_line_error():
    cfg = load_config("image").train.replace(precision="half")
    for capability in ((8, 0), None):
        with pytest.raises(ValueError, match="train.precision is 'half'; expected one of auto"):
            choose_precision(capability, cfg)


def _trainer(precision, **cfg_overrides):
    from skeleton.nn import build_network
    from skeleton.trainer import Trainer

    torch.manual_seed(0)
    cfg = load_config("image").train.replace(batch_cpu=8, **cfg_overrides)
    net = build_network("fastnet_small", 1, 3, weights="none")
    return Trainer(net, cfg, torch.device("cpu"), False, flip=False, precision=precision)


def _images(n=32, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, (n, 1, 16, 16, 1)).astype(np.uint8)
    x[:, :, 2:10, 2:10] += (y * 60)[:, None, None, None, None].astype(np.uint8)
    return x, np.eye(3, dtype=np.float32)[y]


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32),
                                              ("fp16", torch.float16),
                                              ("bf16", torch.bfloat16)])
def test_each_precision_trains_a_few_steps_on_the_cpu(precision, dtype):
    trainer = _trainer(precision)
    x, y = _images()
    assert trainer.precision == precision
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    with trainer._autocast():
        out = trainer.net(trainer._to_input(x[:4]))
    assert out.dtype == dtype
    before = [p.detach().clone() for p in trainer.net.parameters()]
    trainer.plan_phase(10, 0.05)
    assert trainer.train_steps(x, y, np.arange(len(x)), max_seconds=1e9, max_steps=3) == 3
    after = list(trainer.net.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    if precision == "fp16":  # the scaler took part: it scaled the loss and kept a finite scale
        assert 0 < trainer.scaler.get_scale() < float("inf")
    probs = trainer.predict(x)
    assert probs.shape == (len(x), 3) and np.allclose(probs.sum(1), 1, atol=1e-3)


def test_trainer_without_a_given_precision_asks_the_device_module(caplog):
    with caplog.at_level(logging.INFO, logger="skeleton"):
        assert _trainer(None).precision == "fp32"
        assert _trainer(None, cpu_bf16=True).precision == "bf16"
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision")] == [
        "precision fp32 on cpu (CPU)", "precision bf16 on cpu (cpu_bf16 is on)"]


def test_a_gpu_without_kernels_for_it_is_not_picked(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def no_kernel(_torch):
        raise RuntimeError(NO_KERNEL + "\nCUDA kernel errors might be asynchronously reported")

    monkeypatch.setattr(device_mod, "_cuda_works", no_kernel)
    assert device_mod.pick_device().type == "cpu"
    err = capsys.readouterr().err.strip()
    assert err == ("autoclint: CUDA does not run here (RuntimeError: " + NO_KERNEL
                   + "); using the CPU")
    monkeypatch.setattr(device_mod, "_cuda_works", lambda _torch: True)
    assert device_mod.pick_device().type == "cpu"  # broken once: not tried again
    assert capsys.readouterr().err == ""


def test_a_gpu_whose_kernel_runs_is_picked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_mod, "_cuda_works", lambda _torch: True)
    assert device_mod.pick_device().type == "cuda"


# -- the learner under CUDA failures -----------------------------------------------------------

CUDA_FAST = fast_config({
    "schedule": {"min_gain": -1.0},  # never stalls: training goes on
    "train": {"horizon_epochs": 1, "batch_cpu": 16, "batch_cuda": 16, "test_batch": 64},
    "net": {"cuda": "fastnet_small"},
    "augment": {"search": False},
    "transfer": {"enabled": False}})  # these tests are about the network's CUDA path


@pytest.fixture
def fake_cuda(monkeypatch):
    """pick_device says CUDA until CUDA is marked broken; the 'CUDA' trainer really runs on
    the CPU (no GPU here) and fails where `fail` says: fail[stage] is a callable
    (trainer) -> exception or None, for stage 'build', 'train' or 'predict'."""
    from skeleton import trainer as trainer_mod

    fail = {}
    monkeypatch.setattr(device_mod, "pick_device", lambda: torch.device(
        "cpu" if device_mod._cuda_broken else "cuda"))
    real_init = trainer_mod.Trainer.__init__
    real_train, real_predict = trainer_mod.Trainer.train_steps, trainer_mod.Trainer.predict

    def init(self, net, cfg, device, *args, **kwargs):
        self.fake_cuda = device.type == "cuda"
        if self.fake_cuda and fail.get("build"):
            raise fail["build"](self)
        real_init(self, net, cfg, torch.device("cpu"), *args, **kwargs)

    def maybe_fail(stage, self):
        error = self.fake_cuda and fail.get(stage) and fail[stage](self)
        if error:
            raise error

    def train_steps(self, *args, **kwargs):
        maybe_fail("train", self)
        return real_train(self, *args, **kwargs)

    def predict(self, *args, **kwargs):
        maybe_fail("predict", self)
        return real_predict(self, *args, **kwargs)

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", init)
    monkeypatch.setattr(trainer_mod.Trainer, "train_steps", train_steps)
    monkeypatch.setattr(trainer_mod.Trainer, "predict", predict)
    return fail


def _learner(tmp_path, monkeypatch):
    from autodl.tfdata import AutoDLMetadata
    from autodl.writer import write_dataset
    from skeleton.learner import Learner

    monkeypatch.setenv("AUTOCLINT_CONFIG", json.dumps(CUDA_FAST))
    # The quick model predicts nothing (valid NAUC 0): any trained network beats it soon, so
    # the tests do not hang on how fast the network learns on a loaded machine.
    monkeypatch.setattr(QuickModel, "predict",
                        lambda self, x: np.full((len(x), 3), 1 / 3, np.float32))
    x, y = _images(240)
    tx, ty = _images(60, seed=1)
    path = write_dataset(tmp_path / "a", "a", (list(x[:, 0]), y.argmax(1)),
                         (list(tx[:, 0]), ty.argmax(1)), output_dim=3, image_format="dense")
    return Learner(AutoDLMetadata(os.path.join(path, "a.data", "train")), time.time())


def _rounds(learner, n, budget=60.0):
    return drive(learner, None, None, n, budget)  # the learner reads its records itself


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["build", "train"])
def test_cuda_failing_before_training_falls_back_to_the_cpu(tmp_path, monkeypatch, capsys,
                                                            fake_cuda, stage):
    fake_cuda[stage] = lambda trainer: RuntimeError(NO_KERNEL)
    learner = _learner(tmp_path, monkeypatch)
    predictions = _rounds(learner, 6)
    assert len(predictions) >= 3 and all(np.isfinite(p).all() for p in predictions)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("autoclint")]
    assert err == ["autoclint: CUDA failed while training (RuntimeError: " + NO_KERNEL
                   + "); the network starts again on the CPU"]
    assert learner.device.type == "cpu" and not learner.trainer.fake_cuda
    assert learner.trainer.steps > 0 and learner.best.source == "net"


@pytest.mark.slow
def test_cuda_failing_after_a_network_model_keeps_it(tmp_path, monkeypatch, capsys, fake_cuda):
    oom = "CUDA out of memory. Tried to allocate 2.00 GiB"
    fake_cuda["train"] = lambda trainer: (torch.cuda.OutOfMemoryError(oom)
                                          if trainer.best_state is not None else None)
    learner = _learner(tmp_path, monkeypatch)
    predictions = _rounds(learner, 12)
    assert learner.done_training and learner.best.source == "net"
    assert learner.trainer.fake_cuda  # no move to the CPU once a network model was kept
    assert predictions[-1] is learner.best.prediction and np.isfinite(predictions[-1]).all()
    assert not np.array_equal(predictions[0], predictions[-1])  # the network's, not the quick's
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("autoclint")]
    assert err == [f"autoclint: CUDA failed while training (OutOfMemoryError: {oom}); "
                   "keeping the best model so far (net)"]


@pytest.mark.slow
def test_cuda_failing_while_predicting_keeps_the_earlier_predictions(tmp_path, monkeypatch,
                                                                     capsys, fake_cuda):
    learner = _learner(tmp_path, monkeypatch)
    quick = _rounds(learner, 1)[0]
    # Validation predictions work; the test-set prediction of the better network fails.
    def fail_on_test_set(trainer):
        return RuntimeError("CUDA error: unspecified launch failure") if predicting[0] else None

    predicting = [False]
    fake_cuda["predict"] = fail_on_test_set
    real_test = type(learner).test

    def test(self, dataset, remaining):
        predicting[0] = True
        try:
            return real_test(self, dataset, remaining)
        finally:
            predicting[0] = False

    monkeypatch.setattr(type(learner), "test", test)
    predictions = _rounds(learner, 12)
    assert learner.done_training and learner.best.source == "net"
    assert all(p is quick for p in predictions)  # nothing lost: the quick model's stand
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("autoclint")]
    assert err == ["autoclint: CUDA failed while predicting (RuntimeError: CUDA error: "
                   "unspecified launch failure); keeping the best model so far (net)"]


@pytest.mark.slow
def test_errors_off_the_cuda_path_drop_the_candidate_not_the_run(tmp_path, monkeypatch,
                                                                 fake_cuda, caplog):
    monkeypatch.setattr(device_mod, "_cuda_broken", True)  # the CPU from the start
    fake_cuda["train"] = lambda trainer: None
    learner = _learner(tmp_path, monkeypatch)
    _rounds(learner, 1)
    from skeleton import trainer as trainer_mod

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(trainer_mod.Trainer, "train_steps", broken)
    with caplog.at_level(logging.WARNING, logger="skeleton"):
        learner.train(None, 60.0)  # not a CUDA failure: that candidate goes, the run stays
    lines = [r.getMessage() for r in caplog.records if "failed, carrying on" in r.getMessage()]
    assert lines == ["scratch network failed, carrying on without it: RuntimeError: a bug"]
    assert learner.scheduler.tracks[0].retired == "failed"
    assert learner.best.source == "quick" and learner.best.prediction is not None


# -- the documented torch builds ----------------------------------------------------------------

def _text(name):
    with open(os.path.join(REPO, name)) as f:
        return f.read()


def test_readme_docker_and_install_take_the_pinned_torch_for_older_gpus():
    import re
    import subprocess

    pins = dict(re.findall(r"^(torch|torchvision)==(\S+)", _text("requirements.txt"), re.M))
    assert set(pins) == {"torch", "torchvision"}
    readme = _text("README.md")
    assert (f"pip install --index-url https://download.pytorch.org/whl/cu126 "
            f"torch=={pins['torch']} torchvision=={pins['torchvision']}") in readme
    assert "--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126" in readme
    # Dockerfile and install.sh read the pins from requirements.txt with the same pattern.
    pattern = "grep -E '^torch(vision)?==' requirements.txt"
    dockerfile, install = _text("Dockerfile"), _text(os.path.join("scripts", "install.sh"))
    assert pattern in dockerfile and pattern in install and "ARG TORCH_INDEX=" in dockerfile
    picked = subprocess.run(["grep", "-E", "^torch(vision)?==", "requirements.txt"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    assert picked == [f"torch=={pins['torch']}", f"torchvision=={pins['torchvision']}"]
    # The Dockerfile's install step is valid shell.
    run = re.search(r"^RUN (.*?[^\\])\n", dockerfile, re.M | re.S).group(1)
    subprocess.run(["sh", "-n", "-c", run.replace("\\\n", " ")], check=True)
    subprocess.run(["bash", "-n", os.path.join(REPO, "scripts", "install.sh")], check=True)
