"""Speed of policy augmentation: our tensor batches against PIL one image at a time.

    python scripts/augment_speed.py [--subpolicies 15] [--batch 64] [--repeat 20]

Both apply the same randomly drawn sub-policies of the published pool (each image one
sub-policy, each operation with its probability). The PIL path is what the original does per
image in its data loader, including the uint8 -> PIL -> tensor conversions it needs.
"""
import argparse
import os
import random
import sys
import time

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from skeleton.augment import PolicyAugmenter, load_pool  # noqa: E402
from skeleton.config import load_config  # noqa: E402

RANGES = load_config("image").augment.ranges


def pil_operation(img, op, level, sign):
    """The same operation and range on one PIL image."""
    amount = level / 10.0
    w, h = img.size
    fill = tuple(int(v) for v in np.asarray(img).reshape(-1, len(img.getbands())).mean(0))
    fill = fill[0] if len(fill) == 1 else fill
    if op in ("Color", "Brightness", "Contrast", "Sharpness"):
        return getattr(ImageEnhance, op)(img).enhance(1 + sign * RANGES.enhance * amount)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    if op == "Solarize":
        return ImageOps.solarize(img, int(256 * (1 - amount)))
    if op == "Posterize":
        return ImageOps.posterize(img, 8 - int(round(RANGES.posterize_bits * amount)))
    if op == "Rotate":
        return img.rotate(sign * RANGES.rotate * amount, fillcolor=fill)
    shear, shift = sign * RANGES.shear * amount, sign * RANGES.translate * amount
    matrix = {"ShearX": (1, shear, 0, 0, 1, 0), "ShearY": (1, 0, 0, shear, 1, 0),
              "TranslateX": (1, 0, shift * w, 0, 1, 0),
              "TranslateY": (1, 0, 0, 0, 1, shift * h)}.get(op)
    if matrix:
        return img.transform(img.size, Image.AFFINE, matrix, fillcolor=fill)
    if op == "Cutout":
        side = int(RANGES.cutout * amount * min(w, h))
        img = img.copy()
        cx, cy = random.randrange(w), random.randrange(h)
        img.paste(fill, (cx - side // 2, cy - side // 2, cx + side - side // 2,
                         cy + side - side // 2))
        return img
    raise ValueError(op)


def pil_batch(batch_uint8, subpolicies):
    out = []
    for image in batch_uint8:
        img = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
        for step in random.choice(subpolicies).steps:
            if random.random() < step.probability:
                img = pil_operation(img, step.op, step.level, random.choice((-1, 1)))
        array = np.asarray(img)
        out.append(array[..., None] if array.ndim == 2 else array)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div_(255)


def tensor_batch(batch_uint8, augmenter):
    x = torch.from_numpy(batch_uint8).permute(0, 3, 1, 2).float().div_(255)
    return augmenter(x)


def timed(fn, repeat):
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subpolicies", type=int, default=15)  # 5 draws x 3, the merged size
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    pool = load_pool("autoaugment_cifar")
    rng = np.random.default_rng(0)
    random.seed(0)
    chosen = [pool[i] for i in rng.choice(len(pool), args.subpolicies, replace=False)]
    augmenter = PolicyAugmenter(chosen, RANGES, seed=0)
    print(f"{args.subpolicies} sub-policies, batch {args.batch}, {torch.get_num_threads()} "
          "threads, ms per batch")
    print("| images | tensor batch (CPU) | PIL per image | PIL / tensor |")
    print("|---|---|---|---|")
    for h, w, c in ((28, 28, 1), (32, 32, 3), (64, 64, 3), (128, 128, 3)):
        batch = rng.integers(0, 256, (args.batch, h, w, c), dtype=np.uint8)
        t_tensor = timed(lambda: tensor_batch(batch, augmenter), args.repeat)
        t_pil = timed(lambda: pil_batch(batch, chosen), args.repeat)
        print(f"| {h}x{w}x{c} | {t_tensor * 1e3:.1f} | {t_pil * 1e3:.1f} | "
              f"{t_pil / t_tensor:.2f} |")


if __name__ == "__main__":
    main()
