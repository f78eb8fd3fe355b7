"""The time-budget scheduler behind model.py: what to fit, train and predict, when.

1st train(): the data feed (skeleton/feed.py) scans the first records, sizes the input and
  reads what a second allows; the quick ridge model (no torch yet) is fitted and offered to
  the best-model keeper (skeleton/keeper.py). 1st test(): read the test set once, predict.
Later train() calls: import torch, build the network, keep reading the training data in
  slices, train in phases planned from the measured speed, and return to test() on a
  growing, log-spaced interval as soon as validation improves on the best so far. Between
  the first and second phase, images get the Light Fast AutoAugment search (skeleton/augment).
Transfer (skeleton/transfer_route.py) takes slices beside the network: frozen ImageNet
  features under a linear head, offered when they validate better; if the head beats the
  network trained from scratch, the pretrained network may be fine-tuned on trial.
test() returns the predictions of the best validated model; done_training ends the loop
  when time is nearly out or validation is saturated.
"""
import dataclasses
import logging
import os
import time

import numpy as np

from .device import cuda_failed, first_line, report
from .feed import DataFeed
from .keeper import BestModel
from .quick import QuickModel

log = logging.getLogger("skeleton")


@dataclasses.dataclass
class FinetuneTrial:
    """A fine-tuning trial in progress: what comes back if it does not beat the frozen head
    on held-out data by `end` (the scratch network where it stopped)."""
    scratch: object        # the scratch network's Trainer
    phase_count: int
    peak_lr: float
    head_score: float
    end: float             # time.time() by which it must have won


class Learner:
    def __init__(self, metadata, clock_start, overrides=None):
        self.clock_start = clock_start
        self.feed = DataFeed(metadata, overrides)
        self.best = None           # the BestModel keeper, once the configuration is known
        self.done_training = False
        self.quick = None
        self.trainer = None        # the live network's Trainer
        self.route = None          # the TransferRoute while the stage runs
        self.trial = None          # a FinetuneTrial while one runs
        self.finetuning = False    # the live network is the pretrained one
        self.net_best = -np.inf    # the best validation of a network trained from scratch
        self.finetune_best = -np.inf  # ... and of the fine-tuned pretrained network
        self.phase_count = 0
        self.peak_lr = None
        self.replanned = False     # the phase was re-planned once the speed was known
        self.flip_probed = False
        self.augment_search = None  # the SearchResult, once the search has run
        self.deadline = None
        self.device = None
        self.last_test_at = 0.0    # elapsed seconds at the last test()
        self.test_seconds = 1.0    # how long a prediction took, for the reserve
        self.rounds = 0

    @property
    def cfg(self):
        return self.feed.cfg

    def elapsed(self):
        return time.time() - self.clock_start

    # -- train -----------------------------------------------------------------------------
    def train(self, dataset, remaining):
        started = time.time()
        self.deadline = started + (remaining if remaining is not None else 1e9)
        if self.quick is None:
            self._first_train(dataset)
        else:
            try:
                self._train_slice()
            except RuntimeError as error:  # CUDA failures: CPU fallback or keep the best
                if not self._cuda_failed(error, "training"):
                    raise
        self.rounds += 1
        log.info("train call %d: %s", self.rounds, self._progress(time.time() - started))

    def _progress(self, seconds):
        """One line of where training stands (AUTOCLINT_VERBOSE=1 shows it)."""
        text = f"{seconds:.1f} s, best {self.best.source} valid NAUC {self.best.score:.4f}"
        trainer = self.trainer
        if trainer is not None and trainer.steps:
            epochs = trainer.steps * trainer.batch / max(1, len(self.feed.train_idx))
            text += (f", {trainer.steps} steps ({epochs:.2f} epochs), lr {trainer.lr:.4f}, "
                     f"loaded {self.feed.store.size}/{self.feed.total}")
        return text + (", done" if self.done_training else "")

    def _first_train(self, dataset):
        feed = self.feed.open(dataset)
        self.best = BestModel(self.clock_start, self.cfg["select"])
        self.best.set_labels(feed.valid_labels(), feed.profile.multi_label)
        x, y = feed.arrays()
        self.quick = QuickModel(self.cfg["quick"], multi_label=feed.profile.multi_label).fit(
            x[feed.train_idx], y[feed.train_idx])
        self.best.offer("quick", feed.valid_predictions(self.quick.predict),
                        lambda: self.quick.predict(feed.test_x))

    def _build_trainer(self):
        from .compat import import_torch
        torch = import_torch()

        from .device import pick_device
        from .nn import build_network
        from .trainer import Trainer

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
        torch.set_num_threads(max(1, cores))
        self.device = device = pick_device()
        net_cfg, profile = self.cfg["net"], self.feed.profile
        name = net_cfg["cuda" if device.type == "cuda" else "cpu"]
        net = build_network(name, profile.channels, self.feed.classes,
                            frames=self.feed.shape[0], temporal=self._temporal())
        train_cfg = self.cfg["train"]
        # Flips start off: whether they keep labels (photos) or not (digits, text) is probed
        # at the first validation (_probe_flip).
        self.trainer = Trainer(net, train_cfg, device, profile.multi_label, flip=False)
        self.flip_probed = not train_cfg["flip"]
        self.peak_lr = train_cfg["lr"]
        log.info("network %s (%s) on %s, %d threads", name, net.weights_used, device,
                 torch.get_num_threads())
        if self.cfg["transfer"]["enabled"]:
            from .transfer_route import TransferRoute
            self.route = self._optional("transfer", TransferRoute.build, self.cfg, self.feed,
                                        self.best, device, self._temporal())

    def _temporal(self):
        return "residual" if self.cfg["net"]["temporal_block"] else "mean"

    # -- the schedule ----------------------------------------------------------------------
    def _train_slice(self):
        if self.trainer is None:
            self._build_trainer()
        sched = self.cfg["schedule"]
        # Tests come on a log-spaced grid: each at least test_ratio times later than the last.
        test_due = max(self.last_test_at * sched["test_ratio"],
                       self.last_test_at + sched["min_slice_s"])
        give_up = test_due + (test_due - self.last_test_at)
        while self._time_left() > self._reserve():
            if self.trial is not None and time.time() >= self.trial.end:
                self._end_trial()
            turn = self.route.turn(self.net_best) if self.route is not None else "net"
            if turn == "end":
                self.route = None
            elif turn == "transfer":
                if self.route.reads:
                    self.feed.read_more(sched["read_slice_s"])
                outcome = self._optional("transfer", self.route.step, sched["train_chunk_s"],
                                         self._time_left() - self._reserve())
                if outcome in (None, "drop"):  # None: it failed; the run goes on without it
                    self.route = None
                elif outcome == "complete":
                    self._choose_route(self.route.stage)
                elif outcome == "offered":
                    return  # its better prediction goes out now
                continue
            if self.trainer.phase is None:
                self._start_phase()
            elif self.trainer.phase_done():
                improved = self._evaluate()
                if self._time_left() < self.cfg["train"]["min_phase_seconds"] + self._reserve():
                    break
                if improved:  # predict first; the next phase (and any search) starts next call
                    self.trainer.end_phase()
                    return
                self._start_phase()
            # The next chunk runs until the test is due (at least 0.2 s); reading takes no
            # longer than the chunk, so short chunks near a test are not starved by it.
            chunk = min(sched["train_chunk_s"], max(0.2, test_due - self.elapsed()))
            self.feed.read_more(min(sched["read_slice_s"], chunk))
            second = self.finetuning and self.feed.has_second
            x, y = self.feed.arrays(second)
            started = time.time()
            self.trainer.train_steps(x, y, self.feed.train_indices(second), chunk)
            if self.route is not None:
                self.route.count_net(time.time() - started)
            if not self.replanned and self._steps_per_second():
                self._plan_phase(start=self.trainer.phase.start)  # now the speed is known
                self.replanned = True
            if self.elapsed() >= test_due and (self._evaluate() or self.elapsed() >= give_up):
                return
        self.done_training = True

    def _time_left(self):
        return self.deadline - time.time()

    def _reserve(self):
        return self.cfg["schedule"]["reserve_s"] + 2 * self.test_seconds

    def _steps_per_second(self):
        t = self.trainer
        return t.steps / t.seconds if t.seconds > 0 and t.steps >= 5 else None

    def _plan_phase(self, start=None):
        """At most horizon_epochs passes over the data and a share of the time left."""
        train = self.cfg["train"]
        speed = self._steps_per_second() or 5.0
        examples = (len(self.feed.train_indices(True)) if self.finetuning and self.feed.has_second
                    else max(len(self.feed.train_idx), self.feed.total))
        epoch_steps = examples / self.trainer.batch
        time_steps = train["horizon_budget_fraction"] * self._time_left() * speed
        peak = self.peak_lr * train["phase_lr_decay"] ** (self.phase_count - 1)
        phase = self.trainer.plan_phase(min(train["horizon_epochs"] * epoch_steps, time_steps),
                                        peak, start=start)
        log.info("phase %d%s: %d steps at peak lr %.4f (%.1f steps/s)", self.phase_count,
                 "" if start is None else " re-planned", phase.steps, peak, speed)

    def _start_phase(self):
        if self.phase_count:  # later phases restart from the best weights, at a lower LR
            self.trainer.restore_best()
            if self.phase_count == 1 and self.augment_search is None and self.trial is None \
                    and not self.finetuning:
                self._optional("augmentation search", self._search_augmentation)
        self.phase_count += 1
        # Re-planned once the network's speed is measured; a later phase knows it already.
        self.replanned = self._steps_per_second() is not None
        self._plan_phase()

    def _evaluate(self):
        """Validate the live network; offer its predictions to the keeper. Its own best
        checkpoint (where later phases restart) follows its held-out score alone."""
        trainer = self.trainer
        second = self.finetuning and self.feed.has_second
        valid = self.feed.valid_predictions(trainer.predict, second)
        score = self.best.score_of(valid) if valid is not None else None
        if not self.flip_probed and score is not None and score > 0.5:
            self._optional("flip probe", self._probe_flip, score)
        if score is not None and score >= 2 * self.cfg["schedule"]["valid_auc_stop"] - 1:
            self.done_training = True
        source = "finetune" if self.finetuning else "net"
        own_best = self.finetune_best if self.finetuning else self.net_best
        if score is None or score > own_best:
            trainer.save_best()
        if score is not None:
            if source == "net":
                self.net_best = max(self.net_best, score)
            else:
                self.finetune_best = max(self.finetune_best, score)
        tta = self.cfg["train"]["tta_flip"] and trainer.flip
        feed = self.feed
        taken, _ = self.best.offer(
            source, valid, lambda: trainer.predict(feed.test_view(second), tta_flip=tta),
            lambda: self._network_snapshot(trainer, tta, second))
        if taken and source == "finetune" and self.trial is not None:
            log.info("transfer: the fine-tuned network wins its trial (valid NAUC %.4f)", score)
            self.trial = None  # fine-tuning it is, for the rest of the run
        return taken

    def _network_snapshot(self, trainer, tta, second):
        """What saving this network needs (skeleton/persist.py): its weights now."""
        from .persist import SavedNetwork
        feed = self.feed
        view = (feed.shape[0], *feed.store.x2.shape[2:4]) if second else feed.shape
        weights = {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}
        return SavedNetwork(trainer.net, weights, trainer.temperature, tta, view)

    def _probe_flip(self, score):
        """Turn on flip augmentation and flip TTA only if flipped validation images score
        about as well as the originals for a network that never saw a flip."""
        self.flip_probed = True
        flipped = self.best.score_of(self.feed.valid_predictions(
            lambda v: self.trainer.predict(np.ascontiguousarray(v[:, :, :, ::-1]))))
        tolerance = self.cfg["train"]["flip_tolerance"]
        self.trainer.flip = flipped is not None and flipped >= score - tolerance
        log.info("flip probe: valid NAUC %.4f flipped vs %.4f: flips %s", flipped, score,
                 "on" if self.trainer.flip else "off")

    def _search_augmentation(self):
        """Light Fast AutoAugment, once, between the first and second phase: images only, with
        a validation set, and only when enough time is left; it takes a bounded share of it, so
        the predictions the budget allows still come."""
        cfg = self.cfg["augment"]
        left = self._time_left() - self._reserve()
        if (not cfg["search"] or self.feed.kind != "image" or len(self.feed.valid_idx) == 0
                or left < cfg["min_time_left_s"]):
            return
        from .augment import PolicyAugmenter, load_pool, search_policies

        trainer = self.trainer
        deadline = time.time() + min(cfg["max_seconds"], cfg["budget_fraction"] * left)
        result = search_policies(
            lambda transform: self.best.score_of(self.feed.valid_predictions(
                lambda v: trainer.predict(v, transform=transform))),
            load_pool(cfg["pool"], cfg["cutout"]), cfg, deadline, seed=cfg["seed"])
        self.augment_search = result
        if result.kept:
            trainer.policy = PolicyAugmenter(result.subpolicies, cfg["ranges"], seed=cfg["seed"])

    # -- fine-tuning the pretrained network ------------------------------------------------
    def _choose_route(self, stage):
        """Every usable example is under the frozen head: fine-tune the pretrained network if
        the head validates better than the network trained from scratch, else drop it."""
        tcfg = self.cfg["transfer"]
        self.route = None
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
        if not self.feed.profile.is_video:  # same pooled features: start from the fitted head
            init_head_from(net, stage.head)
        train_only_tail(net, tcfg["finetune_blocks"])
        old = self.trainer
        train_cfg = dict(self.cfg["train"], temperature=1.0, lr=tcfg["finetune_lr"])
        self.trainer = Trainer(net, train_cfg, old.device, self.feed.profile.multi_label,
                               flip=old.flip, trunk_lr_scale=tcfg["trunk_lr_scale"],
                               frozen_bn=tcfg["frozen_bn"])
        self.trainer.policy = old.policy
        # A trial: unless the fine-tuned network beats the frozen head on held-out data by
        # its end, the scratch network comes back where it stopped (_end_trial).
        end = time.time() + min(tcfg["finetune_trial_s"], tcfg["finetune_trial_fraction"] * left)
        self.trial = FinetuneTrial(old, self.phase_count, self.peak_lr, stage.score, end)
        self.finetuning = True
        self.peak_lr = tcfg["finetune_lr"]
        self.phase_count = 0
        log.info("transfer: frozen head %.4f > scratch network %.4f: fine-tuning %s on trial "
                 "for %.0f s, %.0f s left", stage.score, self.net_best, net.name,
                 end - time.time(), left)

    def _end_trial(self):
        """The fine-tuning trial is over without beating the frozen head: back to scratch."""
        trial, self.trial = self.trial, None
        log.info("transfer: fine-tuned network valid NAUC %.4f after its trial does not beat "
                 "the frozen head %.4f: back to the scratch network", self.finetune_best,
                 trial.head_score)
        self.trainer, self.phase_count, self.peak_lr = trial.scratch, trial.phase_count, \
            trial.peak_lr
        self.finetuning = False

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
            self.trainer = self.route = self.trial = self.device = None
            self.finetuning = False  # the next train() builds it (and transfer) on the CPU
        else:
            report(f"CUDA failed while {stage} ({first_line(error)}); "
                   f"keeping the best model so far ({self.best.source})")
            self.done_training = True  # a pending better model still gets its test() try
        return True

    def _optional(self, stage, function, *args):
        """Run an optional stage; if it fails, say so in one line and go on without it (the
        best model so far and its predictions stay as they are)."""
        try:
            return function(*args)
        except Exception as error:  # noqa: BLE001  (an optional stage must not end the run)
            log.warning("%s failed, carrying on without it: %s: %s", stage,
                        type(error).__name__, " ".join(str(error).split())[:200])
            return None

    # -- test ------------------------------------------------------------------------------
    def test(self, dataset, remaining):
        start = time.time()
        self.feed.read_test(dataset)
        try:
            if self.best.predict_pending():
                self.test_seconds = time.time() - start
        except RuntimeError as error:  # CUDA failed: the earlier predictions stand
            if not self._cuda_failed(error, "predicting"):
                raise
        self.last_test_at = self.elapsed()
        log.info("test call at %.1f s: %s predictions in %.1f s", self.last_test_at,
                 self.best.source, time.time() - start)
        return self.best.prediction
