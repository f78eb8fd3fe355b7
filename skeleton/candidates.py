"""The candidates the scheduler (skeleton/scheduler.py) gives time to.

NetworkCandidate: a network trained in phases (warm-up, cosine decay; each later phase
  restarts from its best weights at a lower rate), evaluated on a log grid of its own time.
  The scratch network (with the flip probe and the augmentation search) and the fine-tuned
  pretrained trunk are two of these.
FrozenHead: the transfer stage (skeleton/transfer.py): a linear head on frozen ImageNet
  features, grown on more examples, then possibly a head on larger images (the rescan).
"""
import copy
import logging
import time

import numpy as np

from .metrics import format_score, log_loss
from .scheduler import Candidate, Measurement, Offer, Report

log = logging.getLogger("skeleton")

SMALL_HEAD = "transfer-small"  # the keeper's source name of the small frozen head


class NetworkCandidate(Candidate):
    def __init__(self, name, source, trainer, cfg, feed, keeper, second=False, start=0.0,
                 search=False, optional=None):
        self.name, self.source = name, source
        self.trainer = trainer
        self.cfg = cfg                  # the whole configuration (train, schedule, augment)
        self.feed = feed
        self.keeper = keeper
        self.second = second and feed.has_second  # trains on the pretrained trunk's view
        self._start = start
        self.search = search            # the augmentation search after its first phase
        self.optional = optional or (lambda stage, function, *args: function(*args))
        self.phase_count = 0
        self.peak_lr = trainer.cfg.lr
        self.replanned = False
        self.flip_probed = not cfg.train.flip
        self.augment_search = None
        self.best_score = -np.inf       # its own best held-out NAUC (its checkpoint's)
        self.evaluated_at = 0.0         # its own seconds at the last evaluation
        self.measured = False
        self.eval_seconds = None        # how long an evaluation took

    def start(self):
        return self._start

    def pending_cost(self, time_left):
        if self.measured:
            return None
        return self.cfg.schedule.min_slice_s + (self.eval_seconds or 0.0)

    def _eval_due(self):
        sched = self.cfg.schedule
        return max(self.evaluated_at * sched.test_ratio,
                   self.evaluated_at + sched.min_slice_s)

    def advance(self, seconds, time_left):
        trainer = self.trainer
        if trainer.phase is None:
            if self.phase_count and time_left < self.cfg.train.min_phase_seconds:
                return Report(finished=True, why="too little time for another phase")
            self._start_phase(time_left)
        chunk = max(0.2, min(seconds, self._eval_due() - trainer.seconds))
        self.feed.read_more(min(self.cfg.schedule.read_slice_s, chunk))
        x, y = self.feed.arrays(self.second)
        trainer.train_steps(x, y, self.feed.train_indices(self.second), chunk)
        if not self.replanned and self._steps_per_second():
            self._plan_phase(time_left, start=trainer.phase.start)  # now the speed is known
            self.replanned = True
        ended = trainer.phase_done()
        if not ended and trainer.seconds < self._eval_due():
            return Report()
        report = self._evaluate()
        if ended:
            trainer.end_phase()
        return report

    def _steps_per_second(self):
        t = self.trainer
        return t.steps / t.seconds if t.seconds > 0 and t.steps >= 5 else None

    def _plan_phase(self, time_left, start=None):
        """At most horizon_epochs passes over the data and a share of the time left."""
        train = self.cfg.train
        speed = self._steps_per_second() or 5.0
        feed = self.feed
        examples = (len(feed.train_indices(True)) if self.second
                    else max(len(feed.train_idx), feed.total))
        epoch_steps = examples / self.trainer.batch
        time_steps = train.horizon_budget_fraction * time_left * speed
        peak = self.peak_lr * train.phase_lr_decay ** (self.phase_count - 1)
        phase = self.trainer.plan_phase(min(train.horizon_epochs * epoch_steps, time_steps),
                                        peak, start=start)
        log.info("%s phase %d%s: %d steps at peak lr %.4f (%.1f steps/s)", self.name,
                 self.phase_count, "" if start is None else " re-planned", phase.steps, peak,
                 speed)

    def _start_phase(self, time_left):
        if self.phase_count:  # later phases restart from the best weights, at a lower rate
            self.trainer.restore_best()
            if self.phase_count == 1 and self.search and self.augment_search is None:
                self.optional("augmentation search", self.search_augmentation, time_left)
        self.phase_count += 1
        self.replanned = self._steps_per_second() is not None
        self._plan_phase(time_left)

    def _evaluate(self):
        """Score the network on the held-out examples; its checkpoint follows its own best
        score, and its predictions are offered to the keeper."""
        started = time.time()
        trainer, feed = self.trainer, self.feed
        self.evaluated_at = trainer.seconds
        self.measured = True
        valid = feed.valid_predictions(trainer.predict, self.second)
        score = self.keeper.score_of(valid)
        if not self.flip_probed and score is not None and score > 0.5:
            self.optional("flip probe", self.probe_flip, score)
        if score is None or score > self.best_score:
            trainer.save_best()
            if score is not None:
                self.best_score = score
        loss = (log_loss(self.keeper.labels, valid, trainer.multi_label)
                if score is not None else None)
        self.eval_seconds = time.time() - started
        tta = self.cfg.train.tta_flip and trainer.flip
        second = self.second
        offer = Offer(self.source, valid,
                      lambda: trainer.predict(feed.test_view(second), tta_flip=tta),
                      lambda: self._snapshot(tta))
        return Report(measured=Measurement(score, loss), offers=(offer,))

    def _snapshot(self, tta):
        """What saving this network needs (skeleton/persist.py): its weights now."""
        from .persist import SavedNetwork
        feed, trainer = self.feed, self.trainer
        view = (feed.shape[0], *feed.store.x2.shape[2:4]) if self.second else feed.shape
        weights = {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}
        return SavedNetwork(trainer.net, weights, trainer.temperature, tta, view,
                            trainer.precision)

    def probe_flip(self, score):
        """Flip augmentation and flip TTA only if flipped held-out images score about as well
        as the originals for a network that never saw a flip (digits and text do not)."""
        self.flip_probed = True
        trainer = self.trainer
        flipped = self.keeper.score_of(self.feed.valid_predictions(
            lambda v: trainer.predict(np.ascontiguousarray(v[:, :, :, ::-1])), self.second))
        tolerance = self.cfg.train.flip_tolerance
        trainer.flip = flipped is not None and flipped >= score - tolerance
        log.info("flip probe: valid NAUC %.4f flipped vs %.4f: flips %s", flipped, score,
                 "on" if trainer.flip else "off")

    def search_augmentation(self, time_left):
        """Light Fast AutoAugment, once, between the first and second phase: images with a
        held-out set, when enough time is left; it takes a bounded share of it."""
        cfg = self.cfg.augment
        feed = self.feed
        if (not cfg.search or feed.kind != "image" or len(feed.valid_idx) == 0
                or time_left < cfg.min_time_left_s):
            return
        from .augment import PolicyAugmenter, load_pool, search_policies

        trainer = self.trainer
        deadline = time.time() + min(cfg.max_seconds, cfg.budget_fraction * time_left)
        result = search_policies(
            lambda transform: self.keeper.score_of(feed.valid_predictions(
                lambda v: trainer.predict(v, transform=transform))),
            load_pool(cfg.pool, cfg.cutout), cfg, deadline, seed=cfg.seed)
        self.augment_search = result
        if result.kept:
            trainer.policy = PolicyAugmenter(result.subpolicies, cfg.ranges, seed=cfg.seed)


class FrozenHead(Candidate):
    """The transfer stage as a candidate: probe and test features (one step of unknown worth),
    then the head grown on more examples, refitted on the held-out ones too, and, while the
    head is the best model and the time allows, a head on the images read at a larger side."""
    def __init__(self, stage, cfg, feed, keeper, finetune=None, small=False):
        self.stage = stage              # the TransferStage (skeleton/transfer.py)
        self.cfg = cfg                  # the whole configuration
        self.tcfg = cfg.transfer
        self.feed = feed
        self.keeper = keeper
        self.finetune = finetune        # () -> a fine-tuning candidate, or None
        # small: a cheap head on the network's own stored view, before the trunk's larger
        # one: no rescan, no fine-tuning, a source of its own for the keeper.
        self.small = small
        self.second = feed.has_second and not small
        self.name = "small frozen head" if small else "frozen head"
        self.source = SMALL_HEAD if small else "transfer"
        # The small head holds the larger head's place: that one replaces it by scoring higher.
        self.succeeds = None if small else SMALL_HEAD
        self.handed_over = False
        self.grown = False              # refitted once on more examples than the probe's
        self.spawned = False

    def pending_cost(self, time_left):
        stage = self.stage
        if stage.state in ("probe", "test"):
            feed = self.feed
            count = len(feed.valid_idx) + len(feed.test_x if feed.test_x is not None else ())
            count += min(len(feed.train_idx), self.tcfg.probe_records)
            cost = max(0, count - stage.features.computed) * self._seconds_per_example()
            if stage.features.seconds_per_example() is None:
                # Only a prior so far: one more slice measures the speed before it counts.
                return min(cost, self.cfg.schedule.slice_s)
            return cost
        if stage.state == "rescan":
            return stage.rescan.seconds_left()
        if stage.state in ("refit", "complete"):
            return 0.0  # bookkeeping of a fraction of a second: done at once
        if stage.state == "grow" and not self.grown:
            # What more examples are worth is unknown until the head has grown once.
            feed = self.feed
            usable = min(len(feed.train_indices(self.second)), self.tcfg.max_train_records)
            target = min(usable, int(np.ceil(self.tcfg.refit_growth * stage.fitted_on)))
            done = len(stage.features.rows) - len(feed.valid_idx)
            return max(0, target - done) * self._seconds_per_example()
        return None

    def _seconds_per_example(self):
        measured = self.stage.features.seconds_per_example()
        if measured is not None:
            return measured
        side = self.stage.net.stem.size
        return self.tcfg.feature_us_per_pixel * 1e-6 * side[0] * side[1] * self.feed.shape[0]

    def advance(self, seconds, time_left):
        stage, feed = self.stage, self.feed
        if stage.state not in ("probe", "test"):  # the probe's examples are read already
            feed.read_more(self.cfg.schedule.read_slice_s)
        second = self.second
        x, y = feed.arrays(second)
        event = stage.work(x, y, feed.valid_idx, feed.train_indices(second),
                           feed.test_view(second), self.keeper.beats, time.time() + seconds)
        measured = Measurement(stage.score, self._loss(stage.valid))
        if event == "drop":
            return Report(measured=measured, finished=True,
                          why=f"{self.keeper.source} beats its probe beyond the noise")
        if event == "fitted":
            self.grown = self.handed_over
            # After its first handover the head is refitted on more examples: expected to be
            # better, it replaces itself unless the held-out data says it got worse.
            offer = Offer(self.source, stage.valid, stage.predict_test, self._snapshot,
                          refit=self.handed_over, succeeds=self.succeeds)
            self.handed_over = True
            return Report(measured=measured, offers=(offer,))
        if event == "refitted":
            return Report(offers=(Offer(self.source, None, stage.predict_test,
                                        self._snapshot, refresh=True),))
        if event == "rescanned":
            return self._judge_rescan()
        if event == "complete":
            if self.small:
                return Report(finished=True, why="every usable example is under the head")
            spawned = self._spawn()
            if self._start_rescan(time_left):
                return Report(spawned=spawned)
            return Report(finished=True, why="every usable example is under the head",
                          spawned=spawned + self._spawn_flipped())
        return Report()

    def _spawn_flipped(self):
        """The flip-averaged head, once the head is done and is the best model: images only,
        where flips are considered at all (train.flip)."""
        stage, feed = self.stage, self.feed
        if (not self.cfg.train.flip or feed.profile.is_video or stage.fitted_idx is None
                or self.source not in self.keeper.sources or not len(feed.valid_idx)):
            return ()
        return (FlippedHead(stage, self.cfg, feed, self.keeper, self.second),)

    def _spawn(self):
        """Fine-tuning, once, when the head first has every usable example."""
        if self.spawned or self.finetune is None:
            return ()
        self.spawned = True
        candidate = self.finetune()
        return (candidate,) if candidate is not None else ()

    def _loss(self, valid):
        if valid is None or self.keeper.labels is None:
            return None
        return log_loss(self.keeper.labels, valid, self.stage.head.multi_label)

    def rescan_size(self, time_left):
        """The side to read the images at once more, as (size, seconds, below), or None: a
        head that is the best model, and an estimated cost (the features' measured speed,
        scaled by the area) within `rescan_time_fraction` of the time left.
        Above: images larger than the trunk's first input; the largest side that fits, up
        to `rescan_side_cpu` / `_cuda`, and at least `rescan_min_ratio` x the first one.
        Below, when no larger side fits and a two-side head is wanted: `partner_ratio` x
        the first side, at least `min_side`, from the stored images (no second read)."""
        from .data.profile import transfer_size
        stage, feed, cfg = self.stage, self.feed, self.tcfg
        per_example = stage.features.seconds_per_example()
        if (stage.rescanned or feed.profile.is_video or per_example is None
                or self.source not in self.keeper.sources or stage.fitted_idx is None):
            return None
        cuda = stage.device.type == "cuda"
        first = max(feed.transfer_shape)
        count = len(stage.fitted_idx) + len(feed.valid_idx) + len(feed.test_x)

        def cost(size):
            return (per_example * count * size[0] * size[1]
                    / (feed.transfer_shape[0] * feed.transfer_shape[1]))

        side = cfg.rescan_side_cuda if cuda else cfg.rescan_side_cpu
        while side >= cfg.rescan_min_ratio * first:
            size = transfer_size(feed.profile.height, feed.profile.width, side, cfg)
            seconds = cost(size)
            if (max(size) >= cfg.rescan_min_ratio * first
                    and seconds <= cfg.rescan_time_fraction * time_left):
                log.info("transfer: rescan at %s px, about %.0f s of %.0f s left",
                         "x".join(map(str, size)), seconds, time_left)
                return size, seconds, False
            side -= cfg.side_multiple
        side = cfg.partner_ratio * first
        if not cfg.rescan_ensemble or side < cfg.min_side:
            return None
        h, w = feed.transfer_shape
        size = transfer_size(h, w, side, cfg)
        seconds = cost(size)
        if max(size) >= first or seconds > cfg.rescan_time_fraction * time_left:
            return None
        log.info("transfer: a partner head at %s px, about %.0f s of %.0f s left",
                 "x".join(map(str, size)), seconds, time_left)
        return size, seconds, True

    def _start_rescan(self, time_left):
        found = self.rescan_size(time_left)
        if found is None:
            return False
        size, seconds, below = found
        feed = self.feed
        if below:  # the stored images, shrunk by the trunk's stem as a saved network does
            x, _ = feed.arrays(self.second)
            train, test = iter(x), iter(feed.test_view(self.second))
        else:
            train, test = feed.reread(False, (1, *size)), feed.reread(True, (1, *size))
        self.stage.start_rescan(size, train, test, len(feed.test_x), feed.valid_idx, seconds,
                                below=below)
        return True

    def _judge_rescan(self):
        """The head on the larger features replaces the current one as its refit would:
        unless the held-out data says it is worse beyond the noise."""
        stage = self.stage
        candidate, stage.candidate = stage.candidate, None
        sides = " + ".join("x".join(map(str, size)) for size in sorted(
            [candidate.size] + ([candidate.partner.size] if candidate.partner else [])))
        log.info("transfer: head on %s-px features valid NAUC %s (before %s)", sides,
                 format_score(candidate.score), format_score(stage.score))
        offer = Offer(self.source, candidate.valid, candidate.predict_test,
                      lambda: self._snapshot(candidate.head, candidate.size, candidate.partner),
                      refit=True, on_taken=lambda: stage.adopt_rescan(candidate))
        return Report(measured=Measurement(candidate.score, self._loss(candidate.valid)),
                      offers=(offer,))

    def _snapshot(self, head=None, size=None, partner=None):
        if head is None:
            head, size, partner = self.stage.head, self.stage.size, self.stage.partner
        return head_snapshot(self.stage, self.feed, self.second, head, size, partner)


def head_snapshot(stage, feed, second, head, size, partner, tta_flip=False):
    """What saving a head needs: the trunk with the head on raw features, read in the view
    its features came from (a two-side head: the larger view, shrunk inside for the first
    side's head). None for video: its features are not the network's."""
    from .persist import SavedNetwork
    from .transfer import snapshot_with_head, with_input_size
    if feed.profile.is_video:
        return None
    partners = [partner] if partner is not None else []
    if size is not None:
        net = with_input_size(stage.net, size, [p.size for p in partners])
    else:
        net = stage.net
    net, weights = snapshot_with_head(net, head, *(p.head for p in partners))
    if size is not None:
        view = (1, *size)
    else:
        view = (1, *feed.store.x2.shape[2:4]) if second else feed.shape
    return SavedNetwork(net, weights, 1.0, tta_flip, view)


class FlippedHead(Candidate):
    """The finished frozen head once more, on features averaged over each image and its
    mirror image (training, held-out and test alike): one more pass over the images at the
    head's side, a late step for pictures whose label survives a flip. The keeper takes it
    only if the held-out data says it is better; then it is refitted on the held-out
    examples too, as the head was."""
    name = "flip-averaged head"
    source = "transfer-flip"

    def __init__(self, stage, cfg, feed, keeper, second):
        self.stage, self.cfg, self.tcfg = stage, cfg, cfg.transfer
        self.feed, self.keeper, self.second = feed, keeper, second
        self.state = "pass"             # pass -> judged -> (refit, once taken) -> done
        self.flipped = self._flipped_pass()
        self.model = None               # the RescanHead on the averaged features

    def start(self):
        return self.stage.score or 0.0

    def _flipped_pass(self):
        from .transfer import FrozenFeatures, Rescan
        stage, feed = self.stage, self.feed
        wanted = np.concatenate([np.asarray(stage.fitted_idx), np.asarray(feed.valid_idx)])
        batch = self.tcfg.batch
        x, _ = feed.arrays(self.second)
        if stage.size is not None and tuple(stage.size) != x.shape[2:4]:
            shape = (1, *stage.size)  # a larger rescan's side: the records are read again
            train = (x[:, :, ::-1] for x in feed.reread(False, shape))
            test = (x[:, :, ::-1] for x in feed.reread(True, shape))
        else:
            train = (x[i, :, :, ::-1] for i in range(len(x)))
            test = (t[:, :, ::-1] for t in feed.test_view(self.second))
        features = FrozenFeatures(stage.net, stage.device, batch, size=stage.size)
        first = (FrozenFeatures(stage.net, stage.device, batch, size=stage.partner.size)
                 if stage.partner is not None else None)
        # The head's own speed, and the first side's in proportion to its area.
        per_example = stage.features.seconds_per_example() or 0.0
        if first is not None and stage.size is not None:
            side, own = stage.partner.size, stage.size
            per_example *= 1 + side[0] * side[1] / (own[0] * own[1])
        estimate = per_example * (len(wanted) + len(feed.test_x))
        return Rescan(features, train, wanted, test, len(feed.test_x), first, estimate,
                      first_train=True)

    def pending_cost(self, time_left):
        if self.state == "pass":
            return self.flipped.seconds_left()
        if self.state == "refit":
            return 0.0
        return None

    def advance(self, seconds, time_left):
        if self.state == "pass":
            deadline = time.time() + seconds
            while not self.flipped.step():
                if time.time() >= deadline:
                    return Report()
            return self._judge()
        if self.state == "refit":
            self.state = "done"
            self._fit(np.concatenate([self._train(), self.feed.valid_idx]), search=False)
            return Report(offers=(Offer(self.source, None, self.model.predict_test,
                                        self._snapshot, refresh=True),),
                          finished=True, why="refitted on the held-out examples too")
        return Report(finished=True, why="the held-out data did not take it")

    def _train(self):
        return np.asarray(self.stage.fitted_idx)

    def _averaged(self, own, flipped, indices):
        return (own.matrix(indices) + flipped.matrix(indices)) / 2

    def _fit(self, train, search):
        """Heads on the averaged features (the penalty searched again when `search`, as the
        features differ); returns the held-out predictions of heads fitted on `train`."""
        from .metrics import nauc
        from .transfer import LinearHead, RescanHead, SideHead, mean_logits
        stage, flipped, tcfg = self.stage, self.flipped, self.tcfg
        _, y = self.feed.arrays(self.second)
        valid_idx = np.asarray(self.feed.valid_idx)
        multi = stage.head.multi_label

        def fitted(own, mirror, l2):
            head = LinearHead.configured(tcfg, multi)
            valid = self._averaged(own, mirror, valid_idx) if len(valid_idx) else None
            head.fit(self._averaged(own, mirror, train), y[train], valid, y[valid_idx],
                     grid=None if search else [l2])
            return head, (head.predict(valid) if valid is not None else None)

        l2 = self.model.head.l2 if self.model is not None else None
        head, valid = fitted(stage.features, flipped.features, l2)
        test = (stage.test_features + flipped.test_features(len(head.mean))) / 2
        partner = None
        if stage.partner is not None:
            own = stage.partner
            l2 = self.model.partner.head.l2 if self.model is not None else own.head.l2
            side_head, side_valid = fitted(stage.first_features, flipped.first, l2)
            side_test = (own.test_features + flipped.test_features(len(side_head.mean),
                                                                   first=True)) / 2
            partner = SideHead(side_head, side_test, own.size)
            if valid is not None:
                valid = mean_logits([valid, side_valid], multi)
        score = nauc(y[valid_idx], valid) if valid is not None else None
        self.model = RescanHead(head, score, valid, flipped.features, test, stage.size,
                                partner)
        return valid

    def _judge(self):
        self.state = "judged"
        valid = self._fit(self._train(), search=True)
        log.info("transfer: flip-averaged head valid NAUC %s (the head's %s)",
                 format_score(self.model.score), format_score(self.stage.score))
        loss = (log_loss(self.keeper.labels, valid, self.stage.head.multi_label)
                if valid is not None and self.keeper.labels is not None else None)
        offer = Offer(self.source, valid, self.model.predict_test, self._snapshot,
                      on_taken=lambda: setattr(self, "state", "refit"))
        return Report(measured=Measurement(self.model.score, loss), offers=(offer,))

    def _snapshot(self):
        m = self.model
        return head_snapshot(self.stage, self.feed, self.second, m.head, m.size, m.partner,
                             tta_flip=True)


def finetune_candidate(stage, cfg, feed, keeper, device, flip, optional):
    """The pretrained network, its head started from the fitted linear head and only its last
    stages training, as a candidate that starts where the head is; None when too little is
    measured to start it from (no head score)."""
    from .trainer import Trainer
    from .transfer import init_head_from, train_only_tail
    tcfg = cfg.transfer
    if stage.score is None or stage.size is not None:
        return None  # a rescanned head reads another side than the stored view
    net = copy.deepcopy(stage.net)  # the frozen head's trunk stays as saved
    if not feed.profile.is_video:  # same pooled features: start from the fitted head
        # The head fitted without the held-out examples: one that saw them would make the
        # network's held-out score a lie.
        init_head_from(net, stage.honest_head or stage.head)
    train_only_tail(net, tcfg.finetune_blocks)
    # Predictions in batches of about as many pixels as the scratch network's.
    side = feed.transfer_shape or feed.shape[1:]
    area = feed.shape[1] * feed.shape[2] / float(side[0] * side[1])
    test_batch = max(8, int(cfg.train.test_batch * min(1.0, area)))
    train_cfg = cfg.train.replace(temperature=1.0, lr=tcfg.finetune_lr,
                                  test_batch=test_batch)
    trainer = Trainer(net, train_cfg, device, feed.profile.multi_label, flip=flip,
                      trunk_lr_scale=tcfg.trunk_lr_scale, frozen_bn=tcfg.frozen_bn)
    log.info("transfer: fine-tuning %s is a candidate (head valid NAUC %.4f)", net.name,
             stage.score)
    return NetworkCandidate("fine-tuning", "finetune", trainer, cfg, feed, keeper, second=True,
                            start=stage.score, optional=optional)
