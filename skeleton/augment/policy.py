"""Sub-policies (two operations, each with a probability and a level) applied to batches.

A policy is a list of sub-policies. Each image of a batch gets one sub-policy of the policy at
random, and each of its operations with that operation's probability, AutoAugment's rule. All
randomness comes from one seeded torch.Generator, so a seed fixes the result.
"""
import os
from typing import NamedTuple

import torch
import yaml

from ..config import CONFIG_DIR
from .ops import GEOMETRY, NEEDS_GENERATOR, OPERATIONS, warp


class Step(NamedTuple):
    op: str
    probability: float
    level: float


class SubPolicy(NamedTuple):
    steps: tuple

    def __str__(self):
        return " + ".join(f"{s.op}(p={s.probability:g}, m={s.level:g})" for s in self.steps)


def parse_subpolicy(row, source="pool"):
    """[op, p, level, op, p, level, ...] -> SubPolicy, with a clear error for a bad row."""
    if not isinstance(row, (list, tuple)) or len(row) == 0 or len(row) % 3:
        raise ValueError(f"{source}: a sub-policy is [operation, probability, level, ...]; "
                         f"got {row!r}")
    steps = []
    for i in range(0, len(row), 3):
        op, probability, level = row[i:i + 3]
        if op not in OPERATIONS:
            raise ValueError(f"{source}: unknown operation {op!r} in {row!r}; known: "
                             f"{', '.join(sorted(OPERATIONS))}")
        if not 0.0 <= float(probability) <= 1.0 or not 0.0 <= float(level) <= 10.0:
            raise ValueError(f"{source}: probability must be in [0, 1] and level in [0, 10]; "
                             f"got {row!r}")
        steps.append(Step(op, float(probability), float(level)))
    return SubPolicy(tuple(steps))


def load_pool(name, cutout=True, folder=CONFIG_DIR):
    """The candidate sub-policies of <folder>/<name>.yaml (configs/), duplicates dropped, in
    file order; without cutout, sub-policies that use it are left out."""
    path = os.path.join(folder, f"{name}.yaml")
    with open(path) as f:
        rows = (yaml.safe_load(f) or {}).get("subpolicies")
    if not rows:
        raise ValueError(f"{path}: no 'subpolicies' list")
    pool = []
    for row in rows:
        sub = parse_subpolicy(row, path)
        if sub not in pool and (cutout or all(s.op != "Cutout" for s in sub.steps)):
            pool.append(sub)
    return pool


class PolicyAugmenter:
    """Applies a policy to float batches [N, C, H, W] in [0, 1] on their own device.

    Vectorised by step: the first operations of all images are applied together (one
    resampling for every geometric one, one call per other operation), then the second ones.
    """

    def __init__(self, subpolicies, ranges, seed=0):
        self.subpolicies = list(subpolicies)
        self.ranges = ranges
        self.generator = torch.Generator().manual_seed(int(seed))
        depth = max((len(s.steps) for s in self.subpolicies), default=0)
        # Per step position: each sub-policy's operation (as an index), probability and level.
        self.names = sorted({st.op for s in self.subpolicies for st in s.steps})
        self.geometric = [k for k, name in enumerate(self.names) if name in GEOMETRY]
        self._geometric_ids = torch.tensor(self.geometric, dtype=torch.long)
        self.steps = []
        for j in range(depth):
            here = [s.steps[j] if j < len(s.steps) else None for s in self.subpolicies]
            self.steps.append((
                torch.tensor([self.names.index(st.op) if st else -1 for st in here]),
                torch.tensor([st.probability if st else 0.0 for st in here]),
                torch.tensor([st.level if st else 0.0 for st in here])))

    def _uniform(self, n):
        return torch.rand(n, generator=self.generator)

    def __call__(self, x):
        n = x.shape[0]
        if not self.subpolicies or n == 0:
            return x
        x = x.clone()
        choice = torch.randint(len(self.subpolicies), (n,), generator=self.generator)
        for op_index, probability, level in self.steps:
            ops = torch.where(self._uniform(n) < probability[choice], op_index[choice], -1)
            signs = torch.where(self._uniform(n) < 0.5, -1.0, 1.0).to(x.device, x.dtype)
            levels = level[choice].to(x.device, x.dtype)
            self._apply_step(x, ops, levels, signs)
        return x

    def _apply_step(self, x, ops, levels, signs):
        """One operation per image (ops[i] indexes self.names; -1: none), in place."""
        h, w = x.shape[2:]
        warped = torch.isin(ops, self._geometric_ids)
        if warped.any():
            index = warped.nonzero().flatten()
            matrices = x.new_zeros(len(index), 2, 3)
            for k in self.geometric:
                rows = (ops[index] == k).nonzero().flatten()
                if rows.numel():
                    at = index[rows].to(x.device)
                    matrices[rows.to(x.device)] = GEOMETRY[self.names[k]](
                        levels[at], signs[at], self.ranges, h, w)
            at = index.to(x.device)
            x[at] = warp(x[at], matrices)
        for k, name in enumerate(self.names):
            if name in GEOMETRY:
                continue
            index = (ops == k).nonzero().flatten()
            if index.numel() == 0:
                continue
            at = index.to(x.device)
            extra = {"generator": self.generator} if name in NEEDS_GENERATOR else {}
            x[at] = OPERATIONS[name](x[at], levels[at], signs[at], self.ranges, **extra)
