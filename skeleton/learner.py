"""The time-budget scheduler behind model.py: what to read, fit, train and predict, when.

1st train(): scan the first records, size the input, read what a second allows, fit the
  quick ridge model (no torch yet); 1st test(): read the test set once, predict with it.
Later train() calls: import torch, build the network, keep reading the training data in
  slices, train in phases planned from the measured speed, and return to test() on a
  growing, log-spaced interval as soon as validation improves on the best so far. Between
  the first and second phase, images get the Light Fast AutoAugment search (skeleton/augment).
Transfer (skeleton/transfer.py) runs beside the network in slices: frozen ImageNet features
  under a linear head, offered when they validate better; if the head beats the network
  trained from scratch, the pretrained network replaces it and is fine-tuned.
test() returns the predictions of the best validated model; done_training ends the loop
  when time is nearly out or validation is saturated.
"""
import itertools
import logging
import os
import time

import numpy as np

from .config import load_config
from .device import cuda_failed
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
        self.transfer = None       # the TransferStage while it runs
        self.test_x2 = None        # the test set at the pretrained trunk's size, if it differs
        self.second_view = False   # the live network reads the second (larger) view
        self.finetuning = False    # the live network is the pretrained one
        self.scratch = None        # the scratch network's state during a fine-tuning trial
        self.trial_end = None      # when the trial must have beaten the frozen head
        self.spent = {"transfer": 0.0, "net": 0.0}  # seconds each took while both ran
        self.transfer_snapshot = None  # (net, weights) of the last frozen head handed over
        self.net_best = -np.inf    # the best validation of a network trained from scratch
        self.finetune_best = -np.inf  # ... and of the fine-tuned pretrained network
        self.best_score = -np.inf
        self.best_source = None
        self.prediction = None     # test predictions of the best model so far
        self.pending = None        # () -> better test predictions, run at the next test()
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
            try:
                self._train_slice()
            except RuntimeError as error:  # CUDA failures: CPU fallback or keep the best
                if not cuda_failed(self, error, "training"):
                    raise
        self.rounds += 1
        log.info("train call %d: %s", self.rounds, self._progress(time.time() - started))

    def _progress(self, seconds):
        """One line of where training stands (AUTOCLINT_VERBOSE=1 shows it)."""
        text = f"{seconds:.1f} s, best {self.best_source} valid NAUC {self.best_score:.4f}"
        trainer = self.trainer
        if trainer is not None and trainer.steps:
            epochs = trainer.steps * trainer.batch / max(1, len(self.train_idx))
            lr = trainer.lr
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
        second, second_max = self._second_view()
        self.store = ExampleStore(itertools.chain(first, examples), adapter, self.classes,
                                  data["cache_max_mb"] * 2 ** 20, second, second_max)
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
        self.quick = QuickModel(self.cfg["quick"], multi_label=self.profile.multi_label).fit(
            x[self.train_idx], y[self.train_idx])
        score = self._valid_score(lambda v: self.quick.predict(v))
        self._offer("quick", score, lambda: self.quick.predict(self.test_x))

    def _second_view(self):
        """The adapter (and how many examples) for a pretrained trunk's larger input, when
        transfer is on and the images are larger than the network's input; else (None, 0)."""
        tcfg = self.cfg["transfer"]
        if not tcfg["enabled"]:
            return None, 0
        from .device import gpu_present
        from .data.profile import transfer_size
        frames, height, width = self.shape
        self.transfer_shape = transfer_size(self.profile.height, self.profile.width, tcfg,
                                            gpu_present())
        native = self.profile.height <= height and self.profile.width <= width
        if native or (self.transfer_shape[0] <= height and self.transfer_shape[1] <= width):
            return None, 0  # the stored images are as large as needed: resized on the fly
        second = FrameAdapter(self.profile, frames, *self.transfer_shape)
        return second, tcfg["max_train_records"] + self.cfg["data"]["valid_max"]

    def _arrays(self, second=False):
        return self.store.second_arrays() if second else self.store.arrays()

    def _valid_score(self, predict, second=None):
        """Held-out NAUC of predict(x_valid), on the live network's view by default."""
        if len(self.valid_idx) == 0:
            return None
        x, y = self._arrays(self.second_view if second is None else second)
        return nauc(y[self.valid_idx], predict(x[self.valid_idx]))

    def _test_view(self, second=None):
        second = self.second_view if second is None else second
        return self.test_x2 if second and self.test_x2 is not None else self.test_x

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
        from .device import pick_device
        from .trainer import Trainer

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
        torch.set_num_threads(max(1, cores))
        self.device = device = pick_device()
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
        self.peak_lr = train_cfg["lr"]
        log.info("network %s (%s) on %s, %d threads", name, net.weights_used, device,
                 torch.get_num_threads())
        if self.cfg["transfer"]["enabled"]:
            self._optional("transfer", self._build_transfer, device)

    # -- transfer --------------------------------------------------------------------------
    def _build_transfer(self, device):
        from .transfer import TransferStage, build_pretrained

        tcfg = self.cfg["transfer"]
        net = build_pretrained(tcfg, self.profile.channels, self.classes, self.shape[0],
                               "residual" if self.cfg["net"]["temporal_block"] else "mean",
                               self.transfer_shape, device.type == "cuda")
        if net is not None:
            self.transfer = TransferStage(net, tcfg, self.profile.multi_label, device)
            log.info("transfer: %s (%s) at %s px", net.name, net.weights_used,
                     "x".join(map(str, self.transfer_shape)))

    def _transfer_turn(self):
        """Whether the stage is due a slice: it gets `transfer.share` of the time both use
        (first_share until its first handover), until the scratch network's held-out error
        is clearly below its head's (at most drop_error_ratio of it: then it ends)."""
        stage = self.transfer
        ratio = self.cfg["transfer"]["drop_error_ratio"]
        if stage.score is not None and 1.0 - self.net_best <= ratio * (1.0 - stage.score):
            log.info("transfer: dropped (scratch network %.4f, frozen head %.4f)",
                     self.net_best, stage.score)
            self.transfer = None
            return False
        used = self.spent["transfer"]
        # Until its first handover (probe, then the test set) the stage runs alone: a probe
        # that wins means the head is about to be the best model.
        first = stage.state in ("probe", "test")
        share = self.cfg["transfer"]["first_share" if first else "share"]
        return used <= share * (used + self.spent["net"])

    def _transfer_step(self, seconds):
        """A slice of the transfer stage; True when it made a better prediction to hand over."""
        stage = self.transfer
        second = self.store.x2 is not None
        x, y = self._arrays(second)
        train_idx = self.train_idx[self.train_idx < len(x)]
        event = stage.work(x, y, self.valid_idx, train_idx, self._test_view(second),
                           self.best_score, time.time() + seconds)
        if event == "drop":
            log.info("transfer: dropped (the frozen head does not beat %s)", self.best_source)
            self.transfer = None
        elif event in ("fitted", "refitted"):
            if event == "refitted" and self.best_source == "transfer":
                self.pending = stage.predict_test  # the best model, on more examples
                log.info("transfer: frozen head refitted on the held-out examples too")
            elif event == "refitted" or not self._offer("transfer", stage.score,
                                                        stage.predict_test):
                return False
            # What saving needs (skeleton/persist.py): the trunk as it is now (fine-tuning
            # may change it later) with the head on raw features.
            from .transfer import snapshot_with_head
            self.transfer_snapshot = snapshot_with_head(stage.net, stage.head)
            return True
        elif event == "complete":
            self._choose_route(stage)
        return False

    def _choose_route(self, stage):
        """Every usable example is under the frozen head: fine-tune the pretrained network if
        the head validates better than the network trained from scratch, else drop it."""
        tcfg = self.cfg["transfer"]
        self.transfer = None
        left = self._time_left() - self._reserve()
        cuda = self.trainer.device.type == "cuda"
        finetune = tcfg["finetune_cuda" if cuda else "finetune_cpu"]
        if not (finetune and stage.score is not None and stage.score > self.net_best
                and left >= tcfg["finetune_min_s"]):
            log.info("transfer: frozen head %.4f, scratch network %.4f, %.0f s left: keeping "
                     "the scratch network", stage.score or 0.0, self.net_best, left)
            return
        from .trainer import Trainer
        from .transfer import init_head_from, train_only_tail

        net = stage.net
        if not self.profile.is_video:  # same pooled features: start from the fitted head
            init_head_from(net, stage.head)
        train_only_tail(net, tcfg["finetune_blocks"])
        old = self.trainer
        train_cfg = dict(self.cfg["train"], temperature=1.0, lr=tcfg["finetune_lr"])
        self.trainer = Trainer(net, train_cfg, old.device, self.profile.multi_label,
                               flip=old.flip, trunk_lr_scale=tcfg["trunk_lr_scale"],
                               frozen_bn=tcfg["frozen_bn"])
        self.trainer.policy = old.policy
        # A trial: unless the fine-tuned network beats the frozen head on held-out data by
        # trial_end, the scratch network comes back where it stopped (_end_trial).
        self.scratch = (old, self.phase_count, self.peak_lr, stage.score)
        self.trial_end = time.time() + min(tcfg["finetune_trial_s"],
                                           tcfg["finetune_trial_fraction"] * left)
        self.second_view = self.store.x2 is not None
        self.finetuning = True
        self.peak_lr = tcfg["finetune_lr"]
        self.phase_count = 0
        log.info("transfer: frozen head %.4f > scratch network %.4f: fine-tuning %s on trial "
                 "for %.0f s, %.0f s left", stage.score, self.net_best, net.name,
                 self.trial_end - time.time(), left)

    def _end_trial(self):
        """The fine-tuning trial is over without beating the frozen head: back to scratch."""
        old, self.phase_count, self.peak_lr, head_score = self.scratch
        log.info("transfer: fine-tuned network valid NAUC %.4f after its trial does not beat "
                 "the frozen head %.4f: back to the scratch network", self.finetune_best,
                 head_score)
        self.trainer, self.scratch = old, None
        self.second_view = self.finetuning = False

    def _steps_per_second(self):
        t = self.trainer
        return t.steps / t.seconds if t.seconds > 0 and t.steps >= 5 else None

    def _plan_phase(self, start=None):
        """At most horizon_epochs passes over the data and a share of the time left."""
        train = self.cfg["train"]
        speed = self._steps_per_second() or 5.0
        examples = (len(self._train_indices()) if self.second_view
                    else max(len(self.train_idx), self.metadata.size()))
        epoch_steps = examples / self.trainer.batch
        time_steps = train["horizon_budget_fraction"] * self._time_left() * speed
        peak = self.peak_lr * train["phase_lr_decay"] ** (self.phase_count - 1)
        self.trainer.plan_phase(min(train["horizon_epochs"] * epoch_steps, time_steps), peak,
                                start=start)
        log.info("phase %d: %d steps at peak lr %.4f (%.1f steps/s)", self.phase_count,
                 self.trainer.phase["steps"], peak, speed)

    def _start_phase(self):
        if self.phase_count:  # later phases restart from the best weights, at a lower LR
            self.trainer.restore_best()
            if self.phase_count == 1 and self.augment_search is None and self.scratch is None:
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

    def _train_indices(self):
        """The training examples the live network can read (its view may hold fewer)."""
        if not self.second_view:
            return self.train_idx
        return self.train_idx[self.train_idx < len(self.store.second_arrays()[0])]

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
            if self.scratch is not None and time.time() >= self.trial_end:
                self._end_trial()
            if self.transfer is not None and self._transfer_turn():
                started = time.time()
                offered = self._optional("transfer", self._transfer_step,
                                         sched["train_chunk_s"])
                if offered is None:  # it failed: the run goes on without it
                    self.transfer = None
                self.spent["transfer"] += time.time() - started
                if offered:
                    return  # its better prediction goes out now
                continue
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
            x, y = self._arrays(self.second_view)
            chunk = min(sched["train_chunk_s"], max(0.2, test_due - self.elapsed()))
            started = time.time()
            self.trainer.train_steps(x, y, self._train_indices(), chunk)
            self.spent["net"] += time.time() - started
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
        source = "finetune" if self.finetuning else "net"
        if score is not None:
            if source == "net":
                self.net_best = max(self.net_best, score)
            else:
                self.finetune_best = max(self.finetune_best, score)
        tta = self.cfg["train"]["tta_flip"] and trainer.flip
        test_x = self._test_view()
        if self._offer(source, score, lambda: trainer.predict(test_x, tta_flip=tta)):
            if source == "finetune" and self.scratch is not None:
                log.info("transfer: the fine-tuned network wins its trial (valid NAUC %.4f)",
                         score)
                self.scratch = None  # fine-tuning it is, for the rest of the run
            trainer.save_best()
            return True
        return False

    # -- test ------------------------------------------------------------------------------
    def test(self, dataset, remaining):
        start = time.time()
        if self.test_x is None:
            self.test_x = self._read_test(dataset)
        if self.pending is not None:
            pending, self.pending = self.pending, None
            try:
                self.prediction = np.asarray(pending(), np.float32)
            except RuntimeError as error:  # CUDA failed: the earlier predictions stand
                if not cuda_failed(self, error, "predicting"):
                    raise
            self.test_seconds = time.time() - start
        self.last_test_at = self.elapsed()
        log.info("test call at %.1f s: %s predictions in %.1f s", self.last_test_at,
                 self.best_source, time.time() - start)
        return self.prediction

    def _read_test(self, dataset):
        """The test set at the network's size (and at the second view's, when there is one)."""
        adapter, second = self.store.adapter, self.store.second
        frames, frames2 = [], []
        for x, _ in iter_examples(dataset, _TestMetadata(self.metadata)):
            frames.append(adapter(x))
            if second is not None:
                frames2.append(second(x))
        if second is not None:
            self.test_x2 = (np.stack(frames2) if frames2
                            else np.zeros((0, *self.store.x2.shape[1:]), np.uint8))
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
