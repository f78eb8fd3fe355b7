"""AutoAugment operations on whole batches of float images [N, C, H, W] in [0, 1].

Every operation takes the batch, per-image levels on the 0-10 scale and per-image random signs
(tensors [N]), and works on the batch's device in one pass: no PIL, no per-image loop. The
geometric operations are 2x3 matrices, so any mix of them over a batch is one resampling. Levels map to each
operation's range (configs/image.yaml, augment.ranges) so that level 0 is the identity for all
operations that have a magnitude; AutoContrast, Equalize and Invert have none. The signed
operations (geometry and the four enhancers) go one way or the other at random per image, as
in AutoAugment's mirrored magnitudes.
"""
import math

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

LEVEL_MAX = 10.0

# Luma weights (ITU-R 601), as PIL and torchvision use for greyscale.
_LUMA = (0.299, 0.587, 0.114)


def _grey(x):
    """Greyscale of each image, broadcastable against x (colour only for 3 channels)."""
    if x.shape[1] == 3:
        weights = x.new_tensor(_LUMA).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    return x


def _blend(degenerate, x, factor):
    """PIL ImageEnhance's rule: factor 1 keeps x, 0 gives the degenerate image."""
    return (degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)).clamp_(0.0, 1.0)


def _enhance_factor(level, signs, ranges):
    return 1.0 + signs * ranges.enhance * level / LEVEL_MAX


def _per_image(values):
    return values.view(-1, 1, 1, 1)


def brightness(x, level, signs, ranges):
    return _blend(torch.zeros_like(x), x, _enhance_factor(level, signs, ranges))


def color(x, level, signs, ranges):
    if x.shape[1] != 3:  # saturation means nothing without three colour channels
        return x
    return _blend(_grey(x).expand_as(x), x, _enhance_factor(level, signs, ranges))


def contrast(x, level, signs, ranges):
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(mean.expand_as(x), x, _enhance_factor(level, signs, ranges))


def sharpness(x, level, signs, ranges):
    n, c, h, w = x.shape
    if h < 3 or w < 3:
        return x
    # PIL's SMOOTH filter, per channel; the border keeps its pixels, as in PIL.
    kernel = x.new_tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    smooth = F.conv2d(x.reshape(n * c, 1, h, w), kernel.view(1, 1, 3, 3)).view(n, c, h - 2, w - 2)
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return _blend(degenerate, x, _enhance_factor(level, signs, ranges))


def solarize(x, level, signs, ranges):
    threshold = _per_image(1.0 - level / LEVEL_MAX)  # level 0: nothing is above 1
    return torch.where(x > threshold, 1.0 - x, x)


def posterize(x, level, signs, ranges):
    dropped_bits = torch.round(ranges.posterize_bits * level / LEVEL_MAX)
    step = _per_image(2.0 ** dropped_bits)  # 1 at level 0: every value kept
    return torch.floor(torch.round(x * 255.0) / step) * step / 255.0


def _channelwise(fn, x):
    """torchvision's colour ops take 1 or 3 channels; other counts go channel by channel
    (autocontrast and equalize are per-channel operations anyway)."""
    if x.shape[1] in (1, 3):
        return fn(x)
    n, c, h, w = x.shape
    return fn(x.reshape(n * c, 1, h, w)).reshape(n, c, h, w)


def autocontrast(x, level, signs, ranges):
    return _channelwise(TF.autocontrast, x)


def equalize(x, level, signs, ranges):
    return _channelwise(TF.equalize, x)


def invert(x, level, signs, ranges):
    return 1.0 - x


def _border_mean(x):
    """Fill value for uncovered pixels: each image's own border colour, so a shift or turn
    of a dark-background digit or a photo stays on its own background."""
    top, bottom = x[:, :, 0, :], x[:, :, -1, :]
    left, right = x[:, :, :, 0], x[:, :, :, -1]
    total = top.sum(-1) + bottom.sum(-1) + left.sum(-1) + right.sum(-1)
    return (total / (2 * (x.shape[2] + x.shape[3]))).view(x.shape[0], x.shape[1], 1, 1)


def warp(x, matrices):
    """Resample x by per-image 2x3 matrices in pixel units about the centre (output -> input)."""
    n, _, h, w = x.shape
    # Pixel units -> affine_grid's [-1, 1] units: entry (i, j) scales by side j / side i.
    scale = x.new_tensor([w / 2.0, h / 2.0])
    theta = torch.cat([matrices[:, :, :2] * scale.view(1, 1, 2) / scale.view(1, 2, 1),
                       matrices[:, :, 2:] / scale.view(1, 2, 1)], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    fill = _border_mean(x)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return (out + fill).clamp_(0.0, 1.0)


def _matrices(n, like):
    return torch.eye(2, 3, device=like.device, dtype=like.dtype).repeat(n, 1, 1)


def shear_x_matrix(level, signs, ranges, h, w):
    m = _matrices(len(level), level)
    m[:, 0, 1] = signs * ranges.shear * level / LEVEL_MAX
    return m


def shear_y_matrix(level, signs, ranges, h, w):
    m = _matrices(len(level), level)
    m[:, 1, 0] = signs * ranges.shear * level / LEVEL_MAX
    return m


def translate_x_matrix(level, signs, ranges, h, w):
    m = _matrices(len(level), level)
    m[:, 0, 2] = signs * ranges.translate * level / LEVEL_MAX * w
    return m


def translate_y_matrix(level, signs, ranges, h, w):
    m = _matrices(len(level), level)
    m[:, 1, 2] = signs * ranges.translate * level / LEVEL_MAX * h
    return m


def rotate_matrix(level, signs, ranges, h, w):
    angle = signs * math.radians(ranges.rotate) * level / LEVEL_MAX
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                        torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)


GEOMETRY = {"ShearX": shear_x_matrix, "ShearY": shear_y_matrix,
            "TranslateX": translate_x_matrix, "TranslateY": translate_y_matrix,
            "Rotate": rotate_matrix}


def _geometric(matrix):
    def op(x, level, signs, ranges):
        return warp(x, matrix(level, signs, ranges, x.shape[2], x.shape[3]))
    op.__name__ = matrix.__name__.replace("_matrix", "")
    return op


def cutout(x, level, signs, ranges, generator=None):
    """A square of side `cutout` x level/10 of the shorter side, filled with the border colour,
    centred at a random pixel of each image (it may hang over the edge)."""
    n, _, h, w = x.shape
    side = torch.round(ranges.cutout * level / LEVEL_MAX * min(h, w)).view(n, 1)
    cy = torch.randint(0, h, (n, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w, (n, 1), generator=generator).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h)
    cols = torch.arange(w, device=x.device).view(1, w)
    top, left = cy - torch.div(side, 2, rounding_mode="floor"), cx - torch.div(
        side, 2, rounding_mode="floor")
    inside_rows = (rows >= top) & (rows < top + side)
    inside_cols = (cols >= left) & (cols < left + side)
    mask = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]
    return torch.where(mask, _border_mean(x).expand_as(x), x)


OPERATIONS = {
    "AutoContrast": autocontrast, "Equalize": equalize, "Invert": invert,
    "Solarize": solarize, "Posterize": posterize,
    "Color": color, "Brightness": brightness, "Contrast": contrast, "Sharpness": sharpness,
    "Cutout": cutout,
    **{name: _geometric(matrix) for name, matrix in GEOMETRY.items()},
}
# Operations that draw their own random numbers beyond the sign.
NEEDS_GENERATOR = {"Cutout"}
