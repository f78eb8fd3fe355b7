"""The quick model: a first prediction within a second or two, before torch is imported.

Features in blocks, each standardised, then a fixed ReLU random projection of them all, then
one closed-form ridge regression onto the (multi-)hot labels (each label's column is its own
regression through the shared Gram matrix: independent labels need nothing more). Its scores
are only used through their ranks per class, which is all the metric reads.

- pixels: the frames averaged, pooled to at most `pool_side` per side (unless the local
  block replaces them: `local.with_pixels`);
- time (videos, frames > 1): the frames in `time_segments` consecutive groups, each averaged
  and pooled coarsely (`time_side`): order and motion survive, which the average erases;
- local (multi-label profiles): the image pooled to `local.side`, correlated with `local.filters`
  patches drawn from the training images themselves (`local.size` square, every
  `local.stride` pixels), ReLU, then max-pooled over the whole image and mean-pooled on a
  `local.grid` x `local.grid` grid: which shapes are somewhere, wherever they are. These
  responses are already non-linear: with them the projection is `local.random_features` wide.
When there are several blocks, each is scaled to the same total variance, so the small motion
block is not drowned by the many pixels before the random projection.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pool_matrix(size, out):
    """(out x size) matrix averaging `size` pixels into `out` cells."""
    edges = np.linspace(0, size, out + 1)
    matrix = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = int(edges[i]), max(int(np.ceil(edges[i + 1])), int(edges[i]) + 1)
        matrix[i, lo:hi] = 1.0 / (hi - lo)
    return matrix


def _pool(images, side):
    """float [N, H, W, C] -> [N, s, s', C], each side averaged to at most `side` cells."""
    n, h, w, c = images.shape
    rows, cols = _pool_matrix(h, min(h, side)), _pool_matrix(w, min(w, side))
    # Two batched matmuls: 2-30x faster than the one einsum on 2 cores, same sums.
    down = np.matmul(rows, images.reshape(n, h, w * c)).reshape(n, len(rows), w, c)
    return np.matmul(cols, down)


class QuickModel:
    def __init__(self, cfg, seed=0, multi_label=False):
        self.cfg = cfg
        self.seed = seed
        self.multi_label = multi_label
        self.weights = None
        self.filters = None

    # -- features --------------------------------------------------------------------------
    def _patches(self, frames):
        """Local patches of the grey image pooled to local.side: [N, o, o, k*k]."""
        local = self.cfg.local
        channels = frames.shape[-1]
        grey = _pool(frames @ np.full((channels, 1), 1.0 / channels, np.float32), local.side)
        k, stride = min(local.size, grey.shape[1], grey.shape[2]), local.stride
        patches = sliding_window_view(grey[..., 0], (k, k), axis=(1, 2))[:, ::stride, ::stride]
        return patches.reshape(*patches.shape[:3], k * k)

    def _local(self, frames):
        patches = self._patches(frames)
        n, rows, cols, k2 = patches.shape
        response = np.ascontiguousarray(patches).reshape(-1, k2) @ self.filters
        np.maximum(response, 0.0, out=response)
        top = response.reshape(n, rows * cols, -1).max(axis=1)
        cells = _pool(response.reshape(n, rows, cols, -1), self.cfg.local.grid)
        return np.concatenate([top, cells.reshape(n, -1)], axis=1)

    def _draw_filters(self, x):
        """Patches of the first training images, at random places, as unit-norm filters."""
        local = self.cfg.local
        sample = x[:local.filter_images].astype(np.float32).mean(axis=1) / 255.0
        patches = self._patches(sample)
        rng = np.random.default_rng(self.seed)
        count = local.filters
        picks = (rng.integers(0, patches.shape[0], count), rng.integers(0, patches.shape[1], count),
                 rng.integers(0, patches.shape[2], count))
        filters = patches[picks]
        # Mean-free filters: a patch's response ignores its brightness, without centring
        # every patch of every image (the dot product with a zero-sum filter does it).
        filters -= filters.mean(axis=1, keepdims=True)
        filters /= np.linalg.norm(filters, axis=1, keepdims=True) + 1e-3  # flat patches stay ~0
        self.filters = np.ascontiguousarray(filters.T, np.float32)

    def _blocks(self, chunk):
        """uint8 [n, T, H, W, C] -> list of float32 [n, D_b]."""
        frames = chunk.astype(np.float32) / 255.0
        n, t = frames.shape[:2]
        mean = frames[:, 0] if t == 1 else frames.mean(axis=1)
        blocks = []
        if self.filters is None or self.cfg.local.with_pixels:
            blocks.append(_pool(mean, self.cfg.pool_side).reshape(n, -1))
        if t > 1 and self.cfg.time_segments:
            edges = np.linspace(0, t, min(t, self.cfg.time_segments) + 1).astype(int)
            blocks.append(np.concatenate(
                [_pool(frames[:, a:b].mean(axis=1), self.cfg.time_side).reshape(n, -1)
                 for a, b in zip(edges[:-1], edges[1:])], axis=1))
        if self.filters is not None:
            blocks.append(self._local(mean))
        return blocks

    def features(self, x):
        """uint8 [N, T, H, W, C] -> float32 [N, D] (the blocks side by side), in chunks."""
        if len(x) == 0:
            return self.features(np.zeros((1, *x.shape[1:]), np.uint8))[:0]
        step = self.cfg.chunk_records
        return np.concatenate([np.concatenate(self._blocks(x[i:i + step]), axis=1)
                               for i in range(0, len(x), step)]).astype(np.float32, copy=False)

    # -- head ------------------------------------------------------------------------------
    def _expand(self, f):
        f = (f - self.mean) / self.std
        if self.projection is None:
            return f
        return np.concatenate([f, np.maximum(f @ self.projection, 0.0)], axis=1)

    def fit(self, x, y):
        if self.multi_label and self.cfg.local.filters:
            self._draw_filters(x)
        sizes = [b.shape[1] for b in self._blocks(x[:1])]
        f = self.features(x)
        self.mean = f.mean(axis=0)
        std = f.std(axis=0) + 1e-3  # constant pixels: no division by zero
        # Equal total variance per block: a block of d features gets sqrt(D / (k d)).
        scale = np.concatenate([np.full(d, np.sqrt(sum(sizes) / (len(sizes) * d)), np.float32)
                                for d in sizes])
        self.std = std / scale
        width = (self.cfg.local.random_features if self.filters is not None
                 else self.cfg.random_features)
        rng = np.random.default_rng(self.seed)
        self.projection = (rng.standard_normal((f.shape[1], width))
                           / np.sqrt(f.shape[1])).astype(np.float32) if width else None
        phi = self._expand(f)
        gram = phi.T @ phi
        gram[np.diag_indices_from(gram)] += self.cfg.ridge * len(phi) / 100.0
        target = y - y.mean(axis=0)  # centring: classes absent from train get all-0 targets
        self.weights = np.linalg.solve(gram, phi.T @ target).astype(np.float32)
        return self

    def predict(self, x):
        step = self.cfg.chunk_records
        parts = [self._expand(self.features(x[i:i + step])) @ self.weights
                 for i in range(0, len(x), step)]
        return np.concatenate(parts) if parts else np.zeros((0, self.weights.shape[1]), np.float32)
