"""The transfer stage's place in the schedule: when it gets a slice, what its results become.

It shares the training time with the network trained from scratch: alone until its first
handover (probe, then the test set's features: a probe that wins is about to be the best
model), then `transfer.share` of the time; it ends once the scratch network's held-out error
is clearly below the head's (drop_error_ratio), when the best model beats its probe beyond
the held-out noise, or when every usable example is under the head ("complete": the learner
then decides whether to fine-tune). The features and the head themselves are
skeleton/transfer.py's.
"""
import logging
import time

log = logging.getLogger("skeleton")


class TransferRoute:
    def __init__(self, stage, cfg, feed, best):
        self.stage = stage          # the TransferStage (skeleton/transfer.py)
        self.cfg = cfg              # the transfer section of the configuration
        self.feed = feed
        self.best = best
        self.spent = {"transfer": 0.0, "net": 0.0}  # seconds each took while both ran
        self.handed_over = False    # its first head has been offered

    @classmethod
    def build(cls, cfg, feed, best, device, temporal):
        """The route over the first pretrained trunk whose weights load; None without one."""
        from .transfer import TransferStage, build_pretrained
        tcfg = cfg["transfer"]
        net = build_pretrained(tcfg, feed.profile.channels, feed.classes, feed.shape[0],
                               temporal, feed.transfer_shape, device.type == "cuda")
        if net is None:
            return None
        log.info("transfer: %s (%s) at %s px", net.name, net.weights_used,
                 "x".join(map(str, feed.transfer_shape)))
        return cls(TransferStage(net, tcfg, feed.profile.multi_label, device), tcfg, feed, best)

    def turn(self, net_best):
        """Who gets the next slice: "transfer" or "net"; "end" once the scratch network's
        held-out error is at most drop_error_ratio of the head's (the stage is over)."""
        stage = self.stage
        if (stage.score is not None
                and 1.0 - net_best <= self.cfg["drop_error_ratio"] * (1.0 - stage.score)):
            log.info("transfer: dropped (scratch network %.4f, frozen head %.4f)", net_best,
                     stage.score)
            return "end"
        used = self.spent["transfer"]
        first = stage.state in ("probe", "test")
        share = self.cfg["first_share" if first else "share"]
        return "transfer" if used <= share * (used + self.spent["net"]) else "net"

    @property
    def reads(self):
        """Whether its next slice can use newly read training records: not before its first
        handover (the probe's examples are read, the test set is apart), so reading waits
        and the head comes sooner (munster: a third of those slices went to reading)."""
        return self.stage.state not in ("probe", "test")

    def count_net(self, seconds):
        self.spent["net"] += seconds

    def step(self, seconds, time_left):
        """One slice of the stage. Returns "offered" (a better prediction is waiting: hand it
        over now), "drop" (the stage is over, nothing to do), "complete" (every usable
        example is under the head) or "working"."""
        started = time.time()
        try:
            return self._step(seconds, time_left)
        finally:
            self.spent["transfer"] += time.time() - started

    def _step(self, seconds, time_left):
        stage, feed = self.stage, self.feed
        second = feed.has_second
        x, y = feed.arrays(second)
        event = stage.work(x, y, feed.valid_idx, feed.train_indices(second),
                           feed.test_view(second),
                           self.best.beats, time.time() + seconds)
        if event == "drop":
            log.info("transfer: dropped (%s beats the frozen head)", self.best.source)
            return "drop"
        if event == "fitted":
            # After its first handover the head is refitted on more examples: expected to be
            # better, it replaces itself unless the held-out data says it got worse.
            taken, _ = self.best.offer("transfer", stage.valid, stage.predict_test,
                                       self._snapshot, refit=self.handed_over)
            self.handed_over = True
            return "offered" if taken else "working"
        if event == "refitted":
            if not self.best.refresh("transfer", stage.predict_test, self._snapshot):
                return "working"  # the head is not in use
            log.info("transfer: frozen head refitted on the held-out examples too")
            return "offered"
        if event == "rescanned":
            return self._judge_rescan()
        if event == "complete" and self._start_rescan(time_left):
            return "working"
        return "complete" if event == "complete" else "working"

    def rescan_size(self, time_left):
        """The larger side to read the images at once more, or None: images larger than the
        trunk's first input, a head that is the best model, and an estimated cost (the
        features' measured speed, scaled by the area, at the stage's share of the time) within
        `rescan_time_fraction` of the time left. The largest side that fits, up to
        `rescan_side_cpu` / `_cuda`, and at least `rescan_min_ratio` x the first one."""
        from .data.profile import transfer_size
        stage, feed, cfg = self.stage, self.feed, self.cfg
        per_example = stage.features.seconds_per_example()
        if (stage.rescanned or feed.profile.is_video or per_example is None
                or "transfer" not in self.best.sources or stage.fitted_idx is None):
            return None
        cuda = stage.device.type == "cuda"
        first = max(feed.transfer_shape)
        count = len(stage.fitted_idx) + len(feed.valid_idx) + len(feed.test_x)
        side = cfg["rescan_side_cuda" if cuda else "rescan_side_cpu"]
        while side >= cfg["rescan_min_ratio"] * first:
            size = transfer_size(feed.profile.height, feed.profile.width,
                                 dict(cfg, max_side_cpu=side, max_side_cuda=side), cuda)
            area = size[0] * size[1] / (feed.transfer_shape[0] * feed.transfer_shape[1])
            seconds = per_example * area * count / cfg["share"]
            if (max(size) >= cfg["rescan_min_ratio"] * first
                    and seconds <= cfg["rescan_time_fraction"] * time_left):
                log.info("transfer: rescan at %s px, about %.0f s of %.0f s left",
                         "x".join(map(str, size)), seconds, time_left)
                return size
            side -= cfg["side_multiple"]
        return None

    def _start_rescan(self, time_left):
        size = self.rescan_size(time_left)
        if size is None:
            return False
        feed = self.feed
        self.stage.start_rescan(size, feed.reread(False, (1, *size)),
                                feed.reread(True, (1, *size)), len(feed.test_x),
                                feed.valid_idx)
        return True

    def _judge_rescan(self):
        """The head on the larger features replaces the current one as its refit would:
        unless the held-out data says it is worse beyond the noise."""
        from .transfer import _fmt
        stage = self.stage
        candidate = stage.candidate
        taken, score = self.best.offer(
            "transfer", candidate.valid, candidate.predict_test,
            lambda: self._snapshot(candidate.head, candidate.size, candidate.partner),
            refit=True)
        sides = "x".join(map(str, candidate.size))
        if candidate.partner is not None:
            sides = "x".join(map(str, candidate.partner.size)) + " + " + sides
        log.info("transfer: head on %s-px features valid NAUC %s (before %s): %s", sides,
                 _fmt(score), _fmt(stage.score), "taken" if taken else "not taken")
        if not taken:
            stage.candidate = None
            return "working"
        stage.adopt_rescan()
        return "offered"

    def _snapshot(self, head=None, size=None, partner=None):
        """What saving the head needs: the trunk as it is now (fine-tuning may change it
        later) with the head on raw features, read in the view its features came from (a
        two-side head: the larger view, shrunk inside for the first side's head).
        None for video: its features are not the network's, so it cannot be saved."""
        from .persist import SavedNetwork
        from .transfer import snapshot_with_head, with_input_size
        feed, stage = self.feed, self.stage
        if feed.profile.is_video:
            return None
        if head is None:
            head, size, partner = stage.head, stage.size, stage.partner
        partners = [partner] if partner is not None else []
        if size is not None:
            net = with_input_size(stage.net, size, [p.size for p in partners])
        else:
            net = stage.net
        net, weights = snapshot_with_head(net, head, *(p.head for p in partners))
        if size is not None:
            view = (1, *size)
        else:
            view = (1, *feed.store.x2.shape[2:4]) if feed.has_second else feed.shape
        return SavedNetwork(net, weights, 1.0, False, view)

