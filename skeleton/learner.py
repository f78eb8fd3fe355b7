"""The adapter between model.py's train()/test() calls and the scheduler.

1st train(): the data feed (skeleton/feed.py) scans the first records, sizes the input and
  reads what a second allows; the quick ridge model (no torch yet) is fitted and offered to
  the best-model keeper (skeleton/keeper.py). 1st test(): read the test set once, predict.
Later train() calls: import torch, build the candidates (skeleton/candidates.py) and let
  the scheduler (skeleton/scheduler.py) hand out slices of time until a better model is
  waiting and a test is due, or the time is nearly out.
test() returns the predictions of the best model; done_training ends the loop when time is
nearly out or no candidate can improve.
"""
import logging
import os
import time

from .device import cuda_failed, first_line, report
from .config import load_configs
from .feed import DataFeed
from .keeper import BestModel
from .quick import QuickModel

log = logging.getLogger("skeleton")


class Learner:
    def __init__(self, metadata, clock_start, overrides=None, clock=time.time):
        self.clock_start = clock_start
        self.clock = clock
        self.configs = load_configs(overrides)  # a bad override fails here, at once
        self.feed = DataFeed(metadata, self.configs)
        self.cfg = None            # the configuration, once the first records say the kind
        self.best = None           # the BestModel keeper
        self.done_training = False
        self.quick = None
        self.scheduler = None      # built at the second train()
        self.network = None        # the scratch network's candidate
        self.head = None           # the frozen head's candidate, with a pretrained trunk
        self.device = None
        self.deadline = None
        self.budget = None         # the whole time budget, as the first train() saw it
        self.last_test_at = 0.0    # elapsed seconds at the last test()
        self.test_seconds = 1.0    # how long a prediction took, for the reserve
        self.rounds = 0

    # what tests and tools read of the scratch network
    @property
    def trainer(self):
        return self.network.trainer if self.network is not None else None

    @property
    def phase_count(self):
        return self.network.phase_count if self.network is not None else 0

    @property
    def augment_search(self):
        return self.network.augment_search if self.network is not None else None

    def elapsed(self):
        return self.clock() - self.clock_start

    # -- train -----------------------------------------------------------------------------
    def train(self, dataset, remaining):
        started = self.clock()
        self.deadline = started + (remaining if remaining is not None else 1e9)
        if self.quick is None:
            self.budget = self.elapsed() + (remaining if remaining is not None else 1e9)
            self._first_train(dataset, remaining)
        else:
            try:
                self._train_slices()
            except RuntimeError as error:  # CUDA failures: CPU fallback or keep the best
                if not self._cuda_failed(error, "training"):
                    raise
        self.rounds += 1
        log.info("train call %d: %.1f s, best %s valid NAUC %.4f%s", self.rounds,
                 self.clock() - started, self.best.source, self.best.score,
                 ", done" if self.done_training else "")

    def _first_train(self, dataset, remaining):
        feed = self.feed.open(dataset, remaining)
        self.cfg = self.configs[feed.kind]
        self.best = BestModel(self.clock_start, self.cfg.select)
        self.best.set_labels(feed.valid_labels(), feed.profile.multi_label)
        x, y = feed.arrays()
        self.quick = QuickModel(self.cfg.quick, multi_label=feed.profile.multi_label).fit(
            x[feed.train_idx], y[feed.train_idx])
        self.best.offer("quick", feed.valid_predictions(self.quick.predict),
                        lambda: self.quick.predict(feed.test_x))

    def _build(self):
        """The scheduler and its candidates: the scratch network and, with a pretrained trunk,
        the frozen head (which brings fine-tuning once it has every usable example)."""
        from .compat import import_torch
        torch = import_torch()

        from .candidates import FrozenHead, NetworkCandidate, finetune_candidate
        from .device import pick_device
        from .nn import build_network
        from .scheduler import Scheduler
        from .trainer import Trainer

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
        torch.set_num_threads(max(1, cores))
        self.device = device = pick_device()
        cfg, feed = self.cfg, self.feed
        self.scheduler = Scheduler(
            cfg.schedule, self.budget, self.clock_start, self.best, clock=self.clock,
            fatal=lambda error: isinstance(error, RuntimeError) and cuda_failed(device, error))
        name = cfg.net.cuda if device.type == "cuda" else cfg.net.cpu
        net = build_network(name, feed.profile.channels, feed.classes, frames=feed.shape[0],
                            temporal=self._temporal())
        # Flips start off: whether they keep labels (photos) or not (digits, text) is probed
        # at the first evaluation.
        trainer = Trainer(net, cfg.train, device, feed.profile.multi_label, flip=False)
        log.info("network %s (%s) on %s, %d threads", name, net.weights_used, device,
                 torch.get_num_threads())
        self.network = NetworkCandidate("scratch network", "net", trainer, cfg, feed,
                                        self.best, search=True, optional=self._optional)
        self.scheduler.add(self.network)
        if cfg.transfer.enabled:
            stage = self._optional("transfer", self._build_stage, device)
            if stage is not None:
                def finetune():
                    if not cfg.transfer.finetune:
                        return None
                    return self._optional("fine-tuning", finetune_candidate, stage, cfg, feed,
                                          self.best, device, trainer.flip, self._optional)
                self.head = FrozenHead(stage, cfg, feed, self.best, finetune)
                small = self._optional("small frozen head", self._small_stage, stage, device)
                if small is not None:
                    self.scheduler.add(FrozenHead(small, cfg, feed, self.best, small=True))
                self.scheduler.add(self.head)

    def _build_stage(self, device):
        from .transfer import TransferStage, build_pretrained
        tcfg, feed = self.cfg.transfer, self.feed
        net = build_pretrained(tcfg, feed.profile.channels, feed.classes, feed.shape[0],
                               self._temporal(), feed.transfer_shape, device.type == "cuda")
        if net is None:
            return None
        log.info("transfer: %s (%s) at %s px", net.name, net.weights_used,
                 "x".join(map(str, feed.transfer_shape)))
        return TransferStage(net, tcfg, feed.profile.multi_label, device)

    def _small_stage(self, stage, device):
        """A frozen head on the network's own stored view, when the trunk's side is at least
        rescan_min_ratio x larger: a few seconds of features, a better first prediction
        while the larger head is under way. None otherwise."""
        from .data.profile import transfer_size
        from .transfer import TransferStage, with_input_size
        tcfg, feed = self.cfg.transfer, self.feed
        if not feed.has_second or feed.profile.is_video:
            return None
        side = max(tcfg.min_side, max(feed.shape[1:]))
        size = transfer_size(feed.profile.height, feed.profile.width, side, tcfg)
        if max(feed.transfer_shape) < tcfg.rescan_min_ratio * max(size):
            return None
        log.info("transfer: a small head at %s px first", "x".join(map(str, size)))
        return TransferStage(with_input_size(stage.net, size), tcfg,
                             feed.profile.multi_label, device)

    def _temporal(self):
        return "residual" if self.cfg.net.temporal_block else "mean"

    # -- the schedule ----------------------------------------------------------------------
    def _train_slices(self):
        if self.scheduler is None:
            self._build()
        sched = self.cfg.schedule
        # Tests come on a log-spaced grid: each at least test_ratio times later than the last.
        test_due = max(self.last_test_at * sched.test_ratio,
                       self.last_test_at + sched.min_slice_s)
        give_up = test_due + (test_due - self.last_test_at)  # return even without a better one
        while self._time_left() > self._reserve():
            track, taken = self.scheduler.run_slice(self._time_left() - self._reserve())
            if track is None:
                log.info("scheduler: no candidate can improve: done (%s)",
                         self.scheduler.summary())
                break
            if taken or self.elapsed() >= give_up:  # a better model goes out now
                return
        self.done_training = True

    def _time_left(self):
        return self.deadline - self.clock()

    def _reserve(self):
        return self.cfg.schedule.reserve_s + 2 * self.test_seconds

    def _cuda_failed(self, error, stage):
        """After a CUDA failure: on the CPU when no network model has been kept yet, else with
        the best predictions so far and no more training. False for other errors."""
        if not cuda_failed(self.device, error):
            return False
        trainer = self.trainer
        kept = self.best.source in ("net", "finetune") or (
            trainer is not None and trainer.best_state is not None)
        if not kept:
            report(f"CUDA failed while {stage} ({first_line(error)}); "
                   "the network starts again on the CPU")
            self.scheduler = self.network = self.head = self.device = None
        else:
            report(f"CUDA failed while {stage} ({first_line(error)}); "
                   f"keeping the best model so far ({self.best.source})")
            self.done_training = True  # a pending better model still gets its test() try
        return True

    def _optional(self, stage, function, *args):
        """Run an optional step; if it fails, say so in one line and go on without it (the
        best model so far and its predictions stay as they are)."""
        try:
            return function(*args)
        except Exception as error:  # noqa: BLE001  (an optional step must not end the run)
            log.warning("%s failed, carrying on without it: %s: %s", stage,
                        type(error).__name__, " ".join(str(error).split())[:200])
            return None

    # -- test ------------------------------------------------------------------------------
    def test(self, dataset, remaining):
        start = self.clock()
        self.feed.read_test(dataset)
        try:
            if self.best.predict_pending():
                self.test_seconds = self.clock() - start
        except RuntimeError as error:  # CUDA failed: the earlier predictions stand
            if not self._cuda_failed(error, "predicting"):
                raise
        self.last_test_at = self.elapsed()
        log.info("test call at %.1f s: %s predictions in %.1f s", self.last_test_at,
                 self.best.source, self.clock() - start)
        return self.best.prediction
