"""Transfer from ImageNet: a pretrained trunk's frozen features under a fast linear head.

A TransferStage is a sequence of bounded steps; the frozen-head candidate
(skeleton/candidates.py) runs them in the scheduler's slices:
  1. probe: features of the held-out examples and of the first `probe_records` training
     examples, and a head on them; if the best model so far beats it beyond the held-out
     noise, the stage ends;
  2. test: features of the test set, and the head's predictions are offered;
  3. grow: more training examples featurised (up to `max_train_records`), the head refitted
     and offered each time they double;
  4. refit: the head fitted on the held-out examples too (its honest score is kept);
  5. rescan: for images larger than the trunk's first side, while the head is the best model
     and time allows, the records read once more at a larger side and a head on those
     features offered as a refit; with `rescan_ensemble`, the two-side head (the first and
     the larger head's logits averaged), one network with both sides when saved. When no
     larger side fits (the first side is already the largest), the second side is below:
     a partner head at `partner_ratio` x the side, on the stored images shrunk.
Why each number is what it is: docs/method.md.
"""
import copy
import dataclasses
import itertools
import logging
import time

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import format_score, nauc
from .nn import build_network
from .nn.fold import folded
from .optim import lbfgs

log = logging.getLogger("skeleton")


def build_pretrained(cfg, channels, classes, frames, temporal, size, cuda):
    """The first backbone of the configured list whose ImageNet weights load, else None."""
    for name in (cfg.backbones_cuda if cuda else cfg.backbones_cpu):
        try:
            net = build_network(name, channels, classes, frames=frames, temporal=temporal,
                                weights="auto", imagenet_norm=True, input_size=size,
                                head_bias=True, taps=cfg.feature_taps)
        except Exception as error:  # noqa: BLE001  (a broken backbone must not end the run)
            log.warning("transfer: %s could not be built (%s: %s)", name, type(error).__name__,
                        error)
            continue
        if net.weights_used != "random":
            return net
    log.warning("transfer: no pretrained backbone available (%s); training from scratch only",
                ", ".join(cfg.backbones_cuda if cuda else cfg.backbones_cpu))
    return None


def pick_penalty(scored, tolerance):
    """The largest penalty whose held-out error (1 - score) is within `tolerance` (relative)
    of the smallest error; `scored` is [(penalty, score)], -inf for an unknown score."""
    best_error = 1.0 - max(score for _, score in scored)
    near = [l2 for l2, score in scored if 1.0 - score <= best_error * (1.0 + tolerance)]
    return max(near or [l2 for l2, _ in scored])


class LinearHead:
    """Softmax (or, for multi-label, per-class sigmoid) regression on standardised features,
    L2-penalised, fitted with L-BFGS (skeleton/optim.py); the penalty is picked from
    `l2_grid` on held-out data: the largest one whose held-out error is within `tolerance`
    (relative) of the best one's, since a small held-out set ranks close penalties by noise."""

    def __init__(self, multi_label, l2_grid, max_iter, tolerance=0.0, loss_tol=0.0):
        self.multi_label = multi_label
        self.l2_grid = l2_grid
        self.max_iter = max_iter
        self.loss_tol = loss_tol
        self.tolerance = tolerance
        self.l2 = None
        self.weight = self.bias = None

    @classmethod
    def configured(cls, cfg, multi_label):
        """A head with the transfer section's penalty grid and L-BFGS settings."""
        return cls(multi_label, cfg.l2_grid, cfg.lbfgs_iterations, cfg.l2_tolerance,
                   cfg.lbfgs_loss_tol)

    def _fit_one(self, f, y, l2, start=None):
        """One penalised fit; `start` (w, b) warm-starts it (a refit on more examples)."""
        dim, classes = f.shape[1], y.shape[1]
        if start is None:
            start = torch.zeros(dim, classes), torch.zeros(classes)
        # The gradient by hand, with f transposed once: 1.8x faster than autograd here (the
        # product with a transposed view is 2.4x slower than with a contiguous copy).
        f_t = f.T.contiguous()
        scale = 1.0 / (len(f) * (classes if self.multi_label else 1))
        target = y if self.multi_label else y.argmax(dim=1)
        y = y if self.multi_label else F.one_hot(target, classes).float()  # one class a row

        def loss_and_grad(flat):
            w, b = flat[:-classes].view(dim, classes), flat[-classes:]
            logits = f @ w + b
            if self.multi_label:
                loss = F.binary_cross_entropy_with_logits(logits, target)
                residual = (torch.sigmoid(logits) - y) * scale
            else:
                loss = F.cross_entropy(logits, target)
                residual = (torch.softmax(logits, dim=1) - y) * scale
            grad = torch.cat([(f_t @ residual + 2 * l2 * w).reshape(-1), residual.sum(dim=0)])
            return float(loss) + l2 * float((w * w).sum()), grad

        flat = lbfgs(loss_and_grad, torch.cat([start[0].reshape(-1), start[1]]), self.max_iter,
                     loss_tol=self.loss_tol)
        return flat[:-classes].view(dim, classes).clone(), flat[-classes:].clone()

    def fit(self, f_train, y_train, f_valid=None, y_valid=None, grid=None):
        """Fit on train; with held-out data, try every penalty of `grid` (default: l2_grid)
        and keep the best. Returns the held-out NAUC of the kept head (None without held-out
        data or a usable class)."""
        # A refit with one penalty starts from the current head, in its standardisation.
        start = ((self.weight, self.bias) if grid is not None and len(grid) == 1
                 and self.weight is not None else None)
        f = torch.from_numpy(np.asarray(f_train, np.float32))
        # Floored spread: a feature that barely varies must not get a huge weight, which a
        # fine-tuned network would inherit (its head starts from this one).
        std = f.std(dim=0)
        self.mean, self.std = f.mean(dim=0), std.clamp_min(0.1 * float(std.mean()) + 1e-6)
        f = (f - self.mean) / self.std
        y = torch.from_numpy(np.asarray(y_train, np.float32))
        has_valid = f_valid is not None and len(f_valid) > 0
        grid = grid or self.l2_grid
        grid = grid if has_valid else grid[:1]
        fits = []
        for l2 in grid:
            self.weight, self.bias = self._fit_one(f, y, l2, start)
            score = nauc(y_valid, self.predict(f_valid)) if has_valid else None
            fits.append((-np.inf if score is None else score, l2, self.weight, self.bias))
        chosen = pick_penalty([(fit[1], fit[0]) for fit in fits], self.tolerance)
        score, self.l2, self.weight, self.bias = next(fit for fit in fits if fit[1] == chosen)
        return None if score == -np.inf else score

    def logits(self, features):
        f = (torch.from_numpy(np.asarray(features, np.float32)) - self.mean) / self.std
        return f @ self.weight + self.bias

    def predict(self, features):
        logits = self.logits(features)
        return (torch.sigmoid(logits) if self.multi_label
                else torch.softmax(logits, dim=1)).numpy()

    def raw_weights(self):
        """(W [classes, D], b) of the same head on unstandardised features, for nn.Linear."""
        weight = self.weight / self.std[:, None]
        return weight.T.contiguous(), self.bias - self.mean @ weight


class FrozenFeatures:
    """Pooled features of a pretrained trunk, per stored example, filled in time slices.

    Images: the trunk's global-average-pooled features. Video: the frame features averaged
    over the first and over the second half of the clip, side by side, so a linear head can
    read how they change (motion and order), not only what is there.
    """

    def __init__(self, net, device, batch, max_frames=None, size=None):
        self.max_frames = max_frames  # video: at most this many frames, evenly spaced
        # A copy with BatchNorm folded in: one pass fewer per map, and fine-tuning `net` later
        # leaves these features alone; channels_last infers faster here (docs/method.md).
        self.net = folded(net).to(device).to(memory_format=torch.channels_last)
        if size is not None:  # another input side than the trunk's own (a rescan)
            self.net.stem.size = tuple(size)
        self.device = device
        self.batch = batch
        self.rows = {}  # store index -> feature vector
        self.seconds, self.computed = 0.0, 0  # all of its work, first batch included
        self.fastest = None  # the fastest batch's seconds per example, after the first

    def seconds_per_example(self):
        """Measured seconds per example: the fastest batch's but the first (set-up costs
        come with the first batch and again with each new batch shape)."""
        return self.fastest

    def compute(self, x_uint8):
        started = time.time()
        try:
            return self._compute(x_uint8)
        finally:
            used = time.time() - started
            if self.computed and len(x_uint8):
                rate = used / len(x_uint8)
                self.fastest = rate if self.fastest is None else min(self.fastest, rate)
            self.seconds += used
            self.computed += len(x_uint8)

    @torch.no_grad()
    def _compute(self, x_uint8):
        if self.max_frames and x_uint8.shape[1] > self.max_frames:
            keep = np.linspace(0, x_uint8.shape[1] - 1, self.max_frames).round().astype(int)
            x_uint8 = x_uint8[:, keep]
        x = torch.from_numpy(np.ascontiguousarray(x_uint8)).to(self.device)
        x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)
        f = self.net.frame_features(x).float()
        if f.shape[1] == 1:
            return f[:, 0].cpu().numpy()
        half = max(1, f.shape[1] // 2)
        return torch.cat([f[:, :half].mean(dim=1), f[:, half:].mean(dim=1)
                          if f.shape[1] > half else f[:, :half].mean(dim=1)],
                         dim=1).cpu().numpy()

    def fill(self, x, indices, deadline):
        """Featurise x[i] for the i in indices not done yet, until the deadline; returns True
        when all of them are done."""
        todo = [int(i) for i in indices if int(i) not in self.rows]
        for start in range(0, len(todo), self.batch):
            if time.time() >= deadline:
                return False
            chunk = todo[start:start + self.batch]
            for i, row in zip(chunk, self.compute(x[chunk])):
                self.rows[i] = row
        return True

    def matrix(self, indices):
        return np.stack([self.rows[int(i)] for i in indices])


class Rescan:
    """Frozen features at a larger side, from a second read of the records: the training
    examples the head uses (a store index is the record's position in the file), then the
    test set. Only the features are kept, not the larger images."""

    def __init__(self, features, train_frames, wanted, test_frames, test_count, first=None,
                 estimate=None, first_train=False):
        self.features = features              # a FrozenFeatures at the larger side
        self.estimate = estimate              # its estimated seconds, before it is measured
        # The first side's FrozenFeatures, for the two-side head: the test images it sees are
        # the larger ones, shrunk by the trunk's stem as a saved two-side network shrinks them
        # (and the training ones too with first_train: the flipped pass has no stored view).
        self.first = first
        self.first_train = first_train and first is not None
        self.first_test_rows = []
        self.train_frames = enumerate(train_frames)
        self.wanted = {int(i) for i in wanted}
        self.last = max(self.wanted)
        self.test_frames = test_frames
        self.test_count = test_count
        self.test_rows = []
        self.train_done = False

    def seconds_left(self):
        """Its estimated seconds to go: its own measured speed once it has one."""
        done = self.features.computed
        total = len(self.wanted) + self.test_count
        per_example = self.features.seconds_per_example()
        if per_example is None:
            return self.estimate if self.estimate is not None else 0.0
        if self.first_train and self.first.seconds_per_example() is not None:
            per_example += self.first.seconds_per_example()
        return per_example * max(0, total - done)

    def step(self):
        """Featurise one batch; True once every wanted example and the test set are done."""
        batch = self.features.batch
        if not self.train_done:
            index, chunk = [], []
            for i, x in self.train_frames:
                if i in self.wanted:
                    index.append(i)
                    chunk.append(x)
                if i >= self.last:
                    self.train_done = True
                    break
                if len(chunk) == batch:
                    break
            else:
                self.train_done = True
            if chunk:
                chunk = np.stack(chunk)
                for i, row in zip(index, self.features.compute(chunk)):
                    self.features.rows[i] = row
                if self.first_train:
                    for i, row in zip(index, self.first.compute(chunk)):
                        self.first.rows[i] = row
            if self.train_done and len(self.features.rows) < len(self.wanted):
                raise ValueError(f"the second read gave {len(self.features.rows)} of the "
                                 f"{len(self.wanted)} training examples")
            return False
        chunk = list(itertools.islice(self.test_frames, batch))
        if chunk:
            chunk = np.stack(chunk)
            self.test_rows.append(self.features.compute(chunk))
            if self.first is not None:
                self.first_test_rows.append(self.first.compute(chunk))
            return False
        done = sum(len(rows) for rows in self.test_rows)
        if done != self.test_count:
            raise ValueError(f"the second read gave {done} of the {self.test_count} test "
                             "examples")
        return True

    def test_features(self, dim, first=False):
        rows = self.first_test_rows if first else self.test_rows
        return np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)


def with_input_size(net, size, extra_sizes=()):
    """A copy of a Classifier that reads inputs at `size` (h, w) instead of its own, and also
    at `extra_sizes` (its features at each side side by side, under a head as wide)."""
    net = copy.deepcopy(net)
    net.stem.size = tuple(size)
    net.options = dict(net.options, input_size=list(size),
                       extra_sizes=[list(s) for s in extra_sizes])
    per_side = net.feature_dim // (1 + len(net.extra_sizes))
    net.extra_sizes = [tuple(s) for s in extra_sizes]
    net.feature_dim = per_side * (1 + len(net.extra_sizes))
    if net.head.in_features != net.feature_dim:  # one block of features per side
        net.head = torch.nn.Linear(net.feature_dim, net.head.out_features,
                                   bias=net.head.bias is not None)
    return net


def train_only_tail(net, blocks):
    """Freeze the trunk but its last `blocks` stages (all of it trains when blocks <= 0 or the
    trunk does not list its stages): cheaper steps, and the generic early filters stay."""
    stages = net.trunk.blocks() if hasattr(net.trunk, "blocks") else []
    if blocks <= 0 or not stages:
        return
    for stage in stages[:-blocks]:
        for p in stage.parameters():
            p.requires_grad_(False)


def snapshot_with_head(net, head, *more):
    """(net, a copy of its weights with `head` as its nn.Linear head): the frozen head as a
    whole network, for saving (images: the same pooled features). With `more` heads (a net
    whose features are one block per side, in the same order): their logits averaged."""
    weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
    raw = [h.raw_weights() for h in (head, *more)]
    weights["head.weight"] = torch.cat([w for w, _ in raw], dim=1) / len(raw)
    weights["head.bias"] = sum(b for _, b in raw) / len(raw)
    return net, weights


def mean_logits(probabilities, multi_label):
    """The heads' predictions with their logits averaged (what a two-side network's head does):
    softmax of the mean log-probability, or per class the sigmoid of the mean logit."""
    eps = 1e-7
    p = [np.clip(np.asarray(q, np.float64), eps, 1.0 - eps) for q in probabilities]
    if multi_label:
        z = np.mean([np.log(q) - np.log1p(-q) for q in p], axis=0)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    z = np.mean([np.log(q) for q in p], axis=0)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def init_head_from(net, head):
    """Start the network's nn.Linear head from a fitted LinearHead (images: same features)."""
    weight, bias = head.raw_weights()
    with torch.no_grad():
        net.head.weight.copy_(weight)
        net.head.bias.copy_(bias)


@dataclasses.dataclass
class SideHead:
    """The first side's head beside a larger one: its logits are averaged into theirs."""
    head: LinearHead
    test_features: np.ndarray  # of the test images the rescan read, at the first side
    size: tuple

    def predict_test(self):
        return self.head.predict(self.test_features)


@dataclasses.dataclass
class RescanHead:
    """A head on the features of a rescan, with what offering and adopting it needs; with a
    `partner` (rescan_ensemble), the two-side head: valid, score and predictions are theirs."""
    head: LinearHead
    score: float
    valid: object          # its held-out predictions (None without held-out data)
    features: FrozenFeatures
    test_features: np.ndarray
    size: tuple
    partner: SideHead = None
    partner_features: FrozenFeatures = None  # the features the partner's head reads

    def predict_test(self):
        return _with_partner(self.head.predict(self.test_features), self.partner,
                             self.head.multi_label)


class TransferStage:
    """The frozen-feature part of the stage as a sequence of steps, each bounded by a deadline:
    probe -> test -> grow -> refit -> complete, and from there possibly rescan -> (refit) ->
    complete (see the module's docstring). The learner owns the data and the best-model
    bookkeeping; this owns the features and the head."""

    def __init__(self, net, cfg, multi_label, device):
        self.cfg = cfg
        self.net = net
        self.features = FrozenFeatures(net, device, cfg.batch, cfg.max_frames)
        self.head = LinearHead.configured(cfg, multi_label)
        self.state = "probe"
        self.score = None          # held-out NAUC of the current head
        self.valid = None          # its held-out predictions, from the last fit without the
                                   # held-out examples (None without any)
        self.fitted_on = 0         # training examples under the current head
        self.fitted_idx = None     # ... which ones
        self.test_rows = []        # test features, in order, filled in batches
        self.test_features = None
        self.device = device
        self.size = None           # the input side of the head's features after a rescan
        self.rescan = None         # a Rescan in progress
        self.rescanned = False     # one rescan at most
        self.candidate = None      # the head on the rescan's features, until it is judged
        self.partner = None        # the other side's head, once a two-side head is adopted
        self.first_features = None  # ... and the features it reads
        self.rescan_below = False  # the rescan is at a smaller side, for a partner
        self.honest_head = None    # the head before it saw the held-out examples

    def work(self, x, y, valid_idx, train_idx, x_test, beaten, deadline):
        """Do the next piece of work until the deadline. `beaten(valid)` tells whether the
        best model so far beats the held-out predictions `valid` beyond the noise. Returns
        "drop" (the probe lost: end the stage), "fitted" (a new head with test predictions;
        offer it), "complete" (every usable training example is under the head), "refitted"
        (the same head refitted on the held-out examples too: as good as its score says, or
        better), "rescanned" (a head on larger features is in `candidate`: judge it) or None
        (more work)."""
        if self.state == "probe":
            probe = train_idx[:self.cfg.probe_records]
            if not (self.features.fill(x, valid_idx, deadline)
                    and self.features.fill(x, probe, deadline)):
                return None
            fit_start = time.time()
            self._fit(y, valid_idx, probe, search=True)
            log.info("transfer probe: frozen head valid NAUC %s on %d examples (l2 %s, fits "
                     "%.1f s)", format_score(self.score), len(probe), self.head.l2,
                     time.time() - fit_start)
            # Only a clear loss ends it: a head that scores lower by chance is not dropped.
            if self.score is None or beaten(self.valid):
                return "drop"
            self.state = "test"
        if self.state == "test":
            done = sum(len(rows) for rows in self.test_rows)
            while done < len(x_test):
                if time.time() >= deadline:
                    return None
                self.test_rows.append(self.features.compute(x_test[done:done + self.features.batch]))
                done += len(self.test_rows[-1])
            self.test_features = (np.concatenate(self.test_rows) if self.test_rows
                                  else np.zeros((0, len(self.head.mean)), np.float32))
            self.state = "grow"
            return "fitted"
        if self.state == "grow":
            usable = train_idx[:self.cfg.max_train_records]
            complete = self.features.fill(x, usable, deadline)
            done = [i for i in usable if int(i) in self.features.rows]
            if complete or len(done) >= self.cfg.refit_growth * self.fitted_on:
                self._fit(y, valid_idx, done, search=False)
                log.info("transfer: frozen head valid NAUC %s on %d examples",
                         format_score(self.score), len(done))
                if complete:
                    self.state = "refit"
                return "fitted"
            return None
        if self.state == "refit":
            # The penalty is chosen: the held-out examples train the head too. Its held-out
            # score is now optimistic, so the honest score and head are kept (fine-tuning
            # starts from that head).
            both = np.concatenate([np.asarray(self.fitted_idx), np.asarray(valid_idx)])
            if self.rescan_below:  # the head itself was refitted before its partner came
                partner = self.partner.head
                partner.fit(self.first_features.matrix(both), y[both], grid=[partner.l2])
            else:
                self.honest_head = copy.deepcopy(self.head)
                self.head.fit(self.features.matrix(both), y[both], grid=[self.head.l2])
            self.state = "complete"
            return "refitted"
        if self.state == "rescan":
            while not self.rescan.step():
                if time.time() >= deadline:
                    return None
            self.candidate = self._rescan_head(y, valid_idx)
            self.rescan = None
            self.state = "complete"
            return "rescanned"
        return "complete"

    def start_rescan(self, size, train_frames, test_frames, test_count, valid_idx,
                     estimate=None, below=False):
        """Read the records again at `size` (h, w) for the examples under the head and the
        held-out ones (frame iterators in record order), then the test set; `estimate`: its
        expected seconds. `below`: a smaller side than the head's, as its partner only."""
        self.rescanned = True
        features = FrozenFeatures(self.net, self.device, self.cfg.batch, size=size)
        wanted = np.concatenate([np.asarray(self.fitted_idx), np.asarray(valid_idx)])
        # Above, the first side's test features come again from the larger test images.
        first = self.features if self.cfg.rescan_ensemble and not below else None
        self.rescan = Rescan(features, train_frames, wanted, test_frames, test_count, first,
                             estimate)
        self.rescan_below = below
        self.state = "rescan"

    def _rescan_head(self, y, valid_idx):
        """A head on the rescan's features, its penalty searched again (the features differ)."""
        features, train = self.rescan.features, self.fitted_idx
        head = LinearHead.configured(self.cfg, self.head.multi_label)
        valid = features.matrix(valid_idx) if len(valid_idx) else None
        score = head.fit(features.matrix(train), y[train], valid, y[valid_idx])
        valid = head.predict(valid) if valid is not None else None
        test = self.rescan.test_features(len(head.mean))
        size, own_size = tuple(features.net.stem.size), self.size or tuple(self.net.stem.size)
        if self.rescan_below:  # the head stays; the new one is its partner
            partner = SideHead(head, test, size)
            candidate = RescanHead(self.head, score, valid, self.features, self.test_features,
                                   own_size, partner, features)
        else:  # the new head leads; with rescan_ensemble the first one is its partner
            partner = None
            if self.rescan.first is not None:
                partner = SideHead(self.head,
                                   self.rescan.test_features(len(self.head.mean), first=True),
                                   own_size)
            candidate = RescanHead(head, score, valid, features, test, size, partner,
                                   self.features if partner is not None else None)
        if partner is not None and valid is not None and self.valid is not None:
            candidate.valid = mean_logits([valid, self.valid], head.multi_label)
            candidate.score = nauc(y[valid_idx], candidate.valid)
        return candidate

    def adopt_rescan(self, c):
        """The rescan's head `c` was taken: it is the head from now on (refitted next on the
        held-out examples too, as the first one was, and a partner from below as well)."""
        self.candidate = None
        self.first_features = c.partner_features
        self.head, self.score, self.valid, self.features = c.head, c.score, c.valid, c.features
        self.test_features, self.size, self.partner = c.test_features, c.size, c.partner
        self.state = "refit"

    def _fit(self, y, valid_idx, train_idx, search):
        # Later fits keep the penalty the probe picked: one fit each, not one per grid value.
        grid = None if search else [self.head.l2]
        valid = self.features.matrix(valid_idx) if len(valid_idx) else None
        self.score = self.head.fit(self.features.matrix(train_idx), y[train_idx], valid,
                                   y[valid_idx], grid=grid)
        self.valid = self.head.predict(valid) if valid is not None else None
        self.fitted_on = len(train_idx)
        self.fitted_idx = np.asarray(train_idx)

    def predict_test(self):
        return _with_partner(self.head.predict(self.test_features), self.partner,
                             self.head.multi_label)


def _with_partner(own, partner, multi_label):
    if partner is None:
        return own
    return mean_logits([own, partner.predict_test()], multi_label)
