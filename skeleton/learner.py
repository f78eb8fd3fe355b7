"""The time-budget scheduler behind model.py: what to read, fit, train and predict, when.

1st train(): scan the first records, size the input, read what a second allows, fit the
  quick ridge model (no torch yet); 1st test(): read the test set once, predict with it.
Later train() calls: import torch, build the network, keep reading the training data in
  slices, train in phases planned from the measured speed, and return to test() on a
  growing, log-spaced interval as soon as validation improves on the best so far. Between
  the first and second phase, images get the Light Fast AutoAugment search (skeleton/augment).
test() returns the predictions of the best validated model; done_training ends the loop
  when time is nearly out or validation is saturated.
"""
import itertools
import logging
import os
import time

import numpy as np

from .config import load_config
from .data.decode import iter_examples
from .data.profile import input_size, scan
from .data.store import ExampleStore, FrameAdapter
from .metrics import nauc
from .quick import QuickModel

log = logging.getLogger("skeleton")


class Learner:
    def __init__(self, metadata, clock_start, overrides=None):
        self.metadata = metadata
        self.clock_start = clock_start
        self.overrides = overrides
        self.classes = metadata.get_output_size()
        self.done_training = False
        self.store = None
        self.test_x = None
        self.trainer = None
        self.best_score = -np.inf
        self.best_source = None
        self.prediction = None     # test predictions of the best model so far
        self.pending = None        # callable producing better test predictions
        self.last_test_at = 0.0    # elapsed seconds at the last test()
        self.test_seconds = 1.0    # how long a prediction took, for the reserve
        self.rounds = 0
        self.augment_search = None  # the SearchResult, once the search has run

    def elapsed(self):
        return time.time() - self.clock_start

    # -- train -----------------------------------------------------------------------------
    def train(self, dataset, remaining):
        started = time.time()
        self.deadline = started + (remaining if remaining is not None else 1e9)
        if self.store is None:
            self._first_train(dataset)
        else:
            self._train_slice()
        self.rounds += 1
        log.info("train call %d: %s", self.rounds, self._progress(time.time() - started))

    def _progress(self, seconds):
        """One line of where training stands (AUTOCLINT_VERBOSE=1 shows it)."""
        text = f"{seconds:.1f} s, best {self.best_source} valid NAUC {self.best_score:.4f}"
        trainer = self.trainer
        if trainer is not None and trainer.steps:
            epochs = trainer.steps * trainer.batch / max(1, len(self.train_idx))
            lr = trainer.optimizer.param_groups[0]["lr"]
            text += (f", {trainer.steps} steps ({epochs:.2f} epochs), lr {lr:.4f}, "
                     f"loaded {self.store.size}/{self.metadata.size()}")
        return text + (", done" if self.done_training else "")

    def _first_train(self, dataset):
        examples = iter_examples(dataset, self.metadata)
        probe = load_config("image", self.overrides)["data"]["scan_records"]
        first = list(itertools.islice(examples, probe))
        if not first:
            raise ValueError(f"{self.metadata.get_dataset_name()}: no training records")
        self.profile = scan(first, self.classes, self.metadata.is_compressed(0))
        self.kind = "video" if self.profile.is_video else "image"
        self.cfg = load_config(self.kind, self.overrides)
        data = self.cfg["data"]
        self.shape = input_size(self.profile, data)
        adapter = FrameAdapter(self.profile, *self.shape)
        self.store = ExampleStore(itertools.chain(first, examples), adapter, self.classes,
                                  data["cache_max_mb"] * 2 ** 20)
        self.sorted = self.profile.looks_sorted(data["sorted_unseen_ratio"])
        total = self.metadata.size()
        if self.sorted:  # the first records say nothing of the rest: read everything
            self.store.fill()
        else:
            self.store.fill(max_records=self.cfg["quick"]["train_records"],
                            max_seconds=self.cfg["quick"]["read_seconds"])
        shuffle = self.sorted or total < data["shuffle_below"]
        rng = np.random.default_rng(0)
        order = rng.permutation(self.store.size) if shuffle else np.arange(self.store.size)
        n_valid = min(int(data["valid_ratio"] * total), data["valid_max"],
                      self.store.size // 3)
        self.valid_idx = np.sort(order[:n_valid])
        self.train_idx = np.sort(order[n_valid:])
        x, y = self.store.arrays()
        log.info("profile %s; input %s; loaded %d/%d; valid %d; sorted %s", self.profile,
                 self.shape, self.store.size, total, n_valid, self.sorted)
        self.quick = QuickModel(self.cfg["quick"]).fit(x[self.train_idx], y[self.train_idx])
        score = self._valid_score(lambda v: self.quick.predict(v))
        self._offer("quick", score, lambda t: self.quick.predict(t))

    def _valid_score(self, predict):
        if len(self.valid_idx) == 0:
            return None
        x, y = self.store.arrays()
        return nauc(y[self.valid_idx], predict(x[self.valid_idx]))

    def _offer(self, source, score, predict_test):
        """Keep a model's test predictions if it validates better than the best so far."""
        better = (score is not None and score > self.best_score) or (
            score is None and (self.best_score == -np.inf or source != "quick"))
        if better:
            self.best_score = score if score is not None else self.best_score
            self.best_source = source
            self.pending = predict_test
            log.info("new best: %s (valid NAUC %s) at %.1f s", source, score, self.elapsed())
        return better

    def _build_trainer(self):
        from .compat import import_torch
        torch = import_torch()

        from .nn import build_network
        from .trainer import Trainer, pick_device

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
        torch.set_num_threads(max(1, cores))
        device = pick_device()
        net_cfg = self.cfg["net"]
        name = net_cfg["cuda" if device.type == "cuda" else "cpu"]
        frames = self.shape[0]
        net = build_network(name, self.profile.channels, self.classes, frames=frames,
                            temporal="residual" if net_cfg["temporal_block"] else "mean")
        train_cfg = dict(self.cfg["train"], temperature=net_cfg["temperature"])
        # Flips start off: whether they keep labels (photos) or not (digits, text) is probed
        # at the first validation (_probe_flip).
        self.trainer = Trainer(net, train_cfg, device, self.profile.multi_label, flip=False)
        self.flip_probed = not train_cfg["flip"]
        self.phase_count = 0
        log.info("network %s (%s) on %s, %d threads", name, net.weights_used, device,
                 torch.get_num_threads())

    def _steps_per_second(self):
        t = self.trainer
        return t.steps / t.seconds if t.seconds > 0 and t.steps >= 5 else None

    def _plan_phase(self, start=None):
        """At most horizon_epochs passes over the data and a share of the time left."""
        train = self.cfg["train"]
        speed = self._steps_per_second() or 5.0
        epoch_steps = max(len(self.train_idx), self.metadata.size()) / self.trainer.batch
        time_steps = train["horizon_budget_fraction"] * self._time_left() * speed
        peak = train["lr"] * train["phase_lr_decay"] ** (self.phase_count - 1)
        self.trainer.plan_phase(min(train["horizon_epochs"] * epoch_steps, time_steps), peak,
                                start=start)
        log.info("phase %d: %d steps at peak lr %.4f (%.1f steps/s)", self.phase_count,
                 self.trainer.phase["steps"], peak, speed)

    def _start_phase(self):
        if self.phase_count:  # later phases restart from the best weights, at a lower LR
            self.trainer.restore_best()
            if self.phase_count == 1:
                self._optional("augmentation search", self._search_augmentation)
        self.phase_count += 1
        self.replanned = False
        self._plan_phase()

    def _time_left(self):
        return self.deadline - time.time()

    def _reserve(self):
        return self.cfg["schedule"]["reserve_s"] + 2 * self.test_seconds

    def _read_more(self):
        """Read another slice of training records while training goes on."""
        if self.store.exhausted:
            return
        before = self.store.size
        self.store.fill(max_seconds=self.cfg["schedule"]["read_slice_s"])
        self.train_idx = np.concatenate([self.train_idx, np.arange(before, self.store.size)])

    def _train_slice(self):
        if self.trainer is None:
            self._build_trainer()
        sched = self.cfg["schedule"]
        # Tests come on a log-spaced grid: each at least test_ratio times later than the last.
        test_due = max(self.last_test_at * sched["test_ratio"],
                       self.last_test_at + sched["min_slice_s"])
        give_up = test_due + (test_due - self.last_test_at)
        while self._time_left() > self._reserve():
            self._read_more()
            if self.trainer.phase is None:
                self._start_phase()
            elif self.trainer.phase_done():
                improved = self._evaluate()
                if self._time_left() < self.cfg["train"]["min_phase_seconds"] + self._reserve():
                    break
                if improved:  # predict first; the next phase (and any search) starts next call
                    self.trainer.phase = None
                    return
                self._start_phase()
            x, y = self.store.arrays()
            chunk = min(sched["train_chunk_s"], max(0.2, test_due - self.elapsed()))
            self.trainer.train_steps(x, y, self.train_idx, chunk)
            if not self.replanned and self._steps_per_second():
                self._plan_phase(start=self.trainer.phase["start"])  # now the speed is known
                self.replanned = True
            if self.elapsed() >= test_due and (self._evaluate() or self.elapsed() >= give_up):
                return
        self.done_training = True

    def _search_augmentation(self):
        """Light Fast AutoAugment, once, between the first and second phase: images only, with
        a validation set, and only when enough time is left; it takes a bounded share of it, so
        the predictions the budget allows still come."""
        cfg = self.cfg["augment"]
        left = self._time_left() - self._reserve()
        if (not cfg["search"] or self.kind != "image" or len(self.valid_idx) == 0
                or left < cfg["min_time_left_s"]):
            return
        from .augment import PolicyAugmenter, load_pool, search_policies

        trainer = self.trainer
        deadline = time.time() + min(cfg["max_seconds"], cfg["budget_fraction"] * left)
        result = search_policies(
            lambda transform: self._valid_score(lambda v: trainer.predict(v, transform=transform)),
            load_pool(cfg["pool"], cfg["cutout"]), cfg, deadline, seed=cfg["seed"])
        self.augment_search = result
        if result.kept:
            trainer.policy = PolicyAugmenter(result.subpolicies, cfg["ranges"], seed=cfg["seed"])

    def _optional(self, stage, function, *args):
        """Run an optional stage; if it fails, say so in one line and go on without it (the
        best model so far and its predictions stay as they are)."""
        try:
            return function(*args)
        except Exception as error:  # noqa: BLE001  (an optional stage must not end the run)
            log.warning("%s failed, carrying on without it: %s: %s", stage,
                        type(error).__name__, " ".join(str(error).split())[:200])
            return None

    def _probe_flip(self, score):
        """Turn on flip augmentation and flip TTA only if flipped validation images score
        about as well as the originals for a network that never saw a flip."""
        self.flip_probed = True
        flipped = self._valid_score(
            lambda v: self.trainer.predict(np.ascontiguousarray(v[:, :, :, ::-1])))
        tolerance = self.cfg["train"]["flip_tolerance"]
        self.trainer.flip = flipped is not None and flipped >= score - tolerance
        log.info("flip probe: valid NAUC %.4f flipped vs %.4f: flips %s", flipped, score,
                 "on" if self.trainer.flip else "off")

    def _evaluate(self):
        """Validate the live network; offer its predictions if it is the best so far."""
        trainer = self.trainer
        score = self._valid_score(lambda v: trainer.predict(v))
        if not self.flip_probed and score is not None and score > 0.5:
            self._optional("flip probe", self._probe_flip, score)
        if score is not None and score >= 2 * self.cfg["schedule"]["valid_auc_stop"] - 1:
            self.done_training = True
        tta = self.cfg["train"]["tta_flip"] and trainer.flip
        if self._offer("net", score, lambda t: trainer.predict(t, tta_flip=tta)):
            trainer.save_best()
            return True
        return False

    # -- test ------------------------------------------------------------------------------
    def test(self, dataset, remaining):
        start = time.time()
        if self.test_x is None:
            self.test_x = self._read_test(dataset)
        if self.pending is not None:
            self.prediction = np.asarray(self.pending(self.test_x), np.float32)
            self.pending = None
            self.test_seconds = time.time() - start
        self.last_test_at = self.elapsed()
        log.info("test call at %.1f s: %s predictions in %.1f s", self.last_test_at,
                 self.best_source, time.time() - start)
        return self.prediction

    def _read_test(self, dataset):
        adapter = self.store.adapter
        frames = [adapter(x) for x, _ in iter_examples(dataset, _TestMetadata(self.metadata))]
        return np.stack(frames) if frames else np.zeros((0, *self.store.x.shape[1:]), np.uint8)


class _TestMetadata:
    """The train metadata, pointed at the test split folder for the fast reader."""

    def __init__(self, train_metadata):
        self._train = train_metadata
        # The test split lies beside the train split (the protocol's layout).
        train_dir = train_metadata.get_dataset_name()
        self._dir = os.path.join(os.path.dirname(train_dir.rstrip("/")), "test")

    def get_dataset_name(self):
        return self._dir

    def __getattr__(self, name):
        return getattr(self._train, name)
