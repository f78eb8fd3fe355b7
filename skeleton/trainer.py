"""Training and prediction of one network on in-memory uint8 examples, on CPU or CUDA.

The precision (bf16 / fp16 with loss scaling / fp32) comes from skeleton/device.py.

A phase is planned in optimiser steps once the speed is known: linear warm-up, then cosine
decay to zero at the end of the phase, so each phase ends at its best weights. The learner
decides when phases start and when to look at validation.
"""
import contextlib
import dataclasses
import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .device import precision_for
from .optim import NesterovSGD
from .predict import as_input, network_probabilities

log = logging.getLogger("skeleton")


def class_balanced_bce(logits, targets):
    """Original method: positives and negatives weighted by their batch ratio, clipped."""
    pos_ratio = targets.mean().clamp(0.1, 0.9)
    weights = torch.where(targets > 0.5, 1.0 / pos_ratio, 1.0 / (1.0 - pos_ratio))
    return (F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            * weights).mean()


def _per_frame(transform, x):
    """Apply an image transform to every frame of [B, T, C, H, W]."""
    b, t, c, h, w = x.shape
    return transform(x.reshape(b * t, c, h, w)).reshape(b, t, c, h, w)


@dataclasses.dataclass
class Phase:
    """One learning-rate cycle: `steps` optimiser steps from step `start`, peaking at `peak`."""
    start: int
    steps: int
    peak: float


class Trainer:
    """precision ('bf16', 'fp16', 'fp32') overrides the choice of skeleton/device.py;
    trunk_lr_scale: the pretrained trunk learns at this share of the rate (1: one rate for
    all); frozen_bn: the trunk's BatchNorm keeps its (ImageNet) statistics, so small batches of
    a new domain do not drag them around."""

    def __init__(self, net, cfg, device, multi_label, flip, precision=None, trunk_lr_scale=1.0,
                 frozen_bn=False):
        self.cfg = cfg
        self.device = device
        self.net = net.to(device)
        self.multi_label = multi_label
        self.flip = flip
        self.frozen_bn = frozen_bn
        self.cuda = device.type == "cuda"
        if precision is None:
            precision, why = precision_for(device, cfg)
        else:
            why = "given"
        self.precision = precision
        # fp16 needs loss scaling (its range underflows small gradients); a disabled scaler
        # passes everything through unchanged for bf16 and fp32.
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        log.info("precision %s on %s (%s)", precision, device, why)
        # channels_last: faster on this CPU for all but training resnet18 at 64 px (method.md).
        self.net = self.net.to(memory_format=torch.channels_last)
        self.batch = cfg.batch_cuda if self.cuda else cfg.batch_cpu
        groups = {}
        for name, p in self.net.named_parameters():
            if not p.requires_grad:  # frozen (the early blocks of a fine-tuned trunk)
                continue
            scale = trunk_lr_scale if name.startswith("trunk.") else 1.0
            decay = cfg.weight_decay if p.ndim > 1 else 0.0
            groups.setdefault((scale, decay), []).append(p)
        self.optimizer = NesterovSGD(
            [{"params": params, "weight_decay": decay, "lr_scale": scale}
             for (scale, decay), params in groups.items()],
            lr=cfg.lr, momentum=cfg.momentum)
        self.temperature = cfg.temperature
        self.steps = 0
        self.lr = 0.0      # the base rate of the last step (the trunk's may be scaled down)
        self.phase = None
        self.seconds = 0.0
        self.rng = np.random.default_rng(0)
        self.best_state = None
        self.policy = None  # a PolicyAugmenter once the augmentation search has picked one

    # -- data ------------------------------------------------------------------------------
    def _to_input(self, x_uint8):
        return as_input(x_uint8, self.device)

    def _augment(self, x):
        if self.policy is not None:
            x = _per_frame(self.policy, x)
        if self.flip:
            mask = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(mask[:, None, None, None, None], x.flip(-1), x)
        pad = int(round(self.cfg.crop_pad * min(x.shape[-2:])))
        if pad:
            b, t, c, h, w = x.shape
            padded = F.pad(x.reshape(b, t * c, h, w), (pad, pad, pad, pad), mode="reflect")
            dy, dx = self.rng.integers(0, 2 * pad + 1, 2)
            x = padded[:, :, dy:dy + h, dx:dx + w].reshape(b, t, c, h, w)
        return x

    # -- schedule --------------------------------------------------------------------------
    def plan_phase(self, steps, peak_lr, start=None):
        """Start a phase (or re-plan the current one from `start`); returns it."""
        self.phase = Phase(self.steps if start is None else start, max(1, int(steps)), peak_lr)
        return self.phase

    def end_phase(self):
        """Close the current phase; the scheduler plans the next one when it is ready."""
        self.phase = None

    def phase_done(self):
        return self.phase is not None and self.steps >= self.phase.start + self.phase.steps

    def _lr(self):
        phase = self.phase
        done = (self.steps - phase.start) / phase.steps
        warm = self.cfg.warmup_fraction
        if done < warm:
            return phase.peak * (0.1 + 0.9 * done / warm)
        return phase.peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (done - warm) / (1 - warm))))

    # -- training --------------------------------------------------------------------------
    def loss(self, logits, y):
        logits = logits / self.temperature
        if self.multi_label:
            return class_balanced_bce(logits, y)
        return F.cross_entropy(logits, y.argmax(dim=1),
                               label_smoothing=self.cfg.label_smoothing)

    def train_steps(self, x, y, indices, max_seconds, max_steps=None):
        """Train on random batches of x[indices] until a time or step limit; returns steps."""
        self.net.train()
        if self.frozen_bn:
            for module in self.net.trunk.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        start, done = time.time(), 0
        if len(indices) == 0:
            return 0
        while time.time() - start < max_seconds and not self.phase_done():
            if max_steps is not None and done >= max_steps:
                break
            # Always a full batch (drawn with replacement from tiny sets): BatchNorm needs
            # more than one example.
            batch = np.sort(self.rng.choice(indices, size=self.batch,
                                            replace=len(indices) < self.batch))
            xb = self._augment(self._to_input(x[batch]))
            yb = torch.from_numpy(y[batch]).to(self.device)
            lr = self.lr = self._lr()
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            with self._autocast():
                loss = self.loss(self.net(xb), yb)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.steps += 1
            done += 1
        self.seconds += time.time() - start
        return done

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # -- prediction ------------------------------------------------------------------------
    def predict(self, x, tta_flip=False, transform=None):
        """Probabilities (softmax, or sigmoid for multi-label) for uint8 examples x;
        `transform` (float frames [N, C, H, W] -> same) is applied to the inputs first."""
        return network_probabilities(self.net, x, temperature=self.temperature,
                                     multi_label=self.multi_label, tta_flip=tta_flip,
                                     batch=self.cfg.test_batch, device=self.device,
                                     autocast=self._autocast, transform=transform)

    # -- checkpoints -----------------------------------------------------------------------
    def save_best(self):
        # A real copy: the original's "best" shared storage with the live weights.
        self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def restore_best(self):
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
