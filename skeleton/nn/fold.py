"""A network's BatchNorm layers merged into the convolutions before them, for inference with
frozen weights (the transfer stage's features): the same outputs up to float rounding, one
pass over every feature map fewer.
"""
import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _fold_pair(module, conv_name, bn_name):
    conv, bn = getattr(module, conv_name), getattr(module, bn_name)
    setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(module, bn_name, nn.Identity())


def folded(net):
    """An eval-mode copy of `net` (the original is untouched: it may be fine-tuned later) in
    which every BatchNorm2d right after a Conv2d is merged into it: consecutive children of a
    Sequential, or a module's `convK` followed by its `bnK` (torchvision's ResNet names)."""
    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        children = dict(module.named_children())  # in order
        names = list(children)
        pairs = []
        if isinstance(module, nn.Sequential):
            pairs += list(zip(names, names[1:]))
        pairs += [(name, "bn" + name[4:]) for name in names
                  if name.startswith("conv") and "bn" + name[4:] in children]
        for conv_name, bn_name in pairs:
            if (isinstance(children[conv_name], nn.Conv2d)
                    and isinstance(children[bn_name], nn.BatchNorm2d)):
                _fold_pair(module, conv_name, bn_name)
    return net
