"""fastnet: our compact residual CNN, trained from scratch, sized for 2-core CPUs."""
import itertools

import torch.nn.functional as F
from torch import nn

from .registry import register
from .weights import apply_weights


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),  # BN has the bias
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """x + BN(conv(ReLU(BN(conv(x))))), then ReLU."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = conv_bn(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        # Start every block as the identity: from random init this trains faster and stabler.
        nn.init.zeros_(self.bn2.weight)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(x + self.bn2(self.conv2(self.conv1(x))))


class AdaptiveStem(nn.Module):
    """3x3 conv + BN + ReLU that brings any input to a small working resolution.

    The stride is picked per call from the larger side (the network is built before the
    input size is known): <= 16 px keeps full resolution (8x8 digits), <= 32 px is halved
    (28x28 -> 14x14, still twice what ResNet-18's stem keeps), larger is quartered (64 -> 16,
    128 -> 32) by a stride-2 conv plus a 2x2 max-pool taken before BN, so BN and ReLU run on
    the small map. Compute then stays nearly flat from 28 to 64 px.
    """

    def __init__(self, cin, cout, full=16, half=32):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.full, self.half = full, half

    def forward(self, x):
        side = max(x.shape[-2:])
        x = F.conv2d(x, self.conv.weight, None, 1 if side <= self.full else 2, 1)
        if side > self.half:
            x = F.max_pool2d(x, 2, ceil_mode=True)
        return self.relu(self.bn(x))


class FastNet(nn.Module):
    """adaptive stem conv -> stages of [stride-2 conv, residual block].

    Downsampling with a strided conv computes at the lower resolution (4x cheaper than
    conv + max-pool), and one block per stage keeps the layer count, hence the per-layer
    overhead that dominates small inputs on a CPU, low.
    """

    def __init__(self, widths=(32, 64, 128, 256), full=16, half=32):
        super().__init__()
        self.stem = AdaptiveStem(3, widths[0], full, half)
        self.stages = nn.Sequential(*[
            nn.Sequential(conv_bn(cin, cout, stride=2), Residual(cout))
            for cin, cout in itertools.pairwise(widths)
        ])
        self.out_features = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.stages(self.stem(x))


@register("fastnet")
def fastnet(weights="auto", models_dir=None):
    trunk = FastNet()
    # No pretrained file exists for our own design: "auto" means random, without a warning.
    used = "random" if weights == "auto" else apply_weights(trunk, weights, "fastnet")
    return trunk, used


@register("fastnet_small")
def fastnet_small(weights="auto", models_dir=None):
    # 3/4 of the widths (1.1M params): ~1.6x the throughput, for the tightest budgets.
    trunk = FastNet(widths=(24, 48, 96, 192))
    used = "random" if weights == "auto" else apply_weights(trunk, weights, "fastnet_small")
    return trunk, used
