"""What every network shares: input stem, pooling, temporal block and the linear head."""
import torch
import torch.nn.functional as F
from torch import nn

MEAN, STD = 0.5, 0.25  # the original's normalisation of [0, 1] inputs, for random-init trunks
# What ImageNet weights were trained on (torchvision's per-channel RGB statistics).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class InputStem(nn.Module):
    """[N, C, H, W] in [0, 1] -> normalised [N, 3, H, W] for a 3-channel trunk.

    1 channel is repeated (grey images look like grey RGB to ImageNet weights); 3 pass; any
    other count goes through a learnable 3x3 conv to 3 channels. `imagenet` normalises with
    ImageNet's statistics (what pretrained trunks expect) instead of the original's 0.5/0.25;
    `size` (h, w) resizes inputs of another size first (small images for pretrained trunks).
    """

    def __init__(self, in_channels, imagenet=False, size=None):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels
        self.size = tuple(size) if size else None
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else ((MEAN,) * 3, (STD,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.mix = None
        if in_channels not in (1, 3):
            self.mix = nn.Conv2d(in_channels, 3, 3, padding=1, bias=False)
            with torch.no_grad():
                # Start as "every output = mean of the inputs" (a grey image, what pretrained
                # trunks handle) plus a little noise so the three outputs can diverge.
                self.mix.weight.normal_(0.0, 0.01)
                self.mix.weight[:, :, 1, 1] += 1.0 / in_channels

    def forward(self, x, size=None):
        """`size` (h, w): resize to it instead of the stem's own size (another scale)."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got input of shape "
                             f"{tuple(x.shape)}")
        size = tuple(size) if size else self.size
        if size is not None and tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > size[1])
        if self.mix is not None:  # any channel count: mixed to 3 around grey
            x = self.mix((x - x.new_tensor(MEAN)) / STD) * STD + MEAN
        elif self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std


class TemporalResidual(nn.Module):
    """(B, D, T) -> (B, D, T): identity + ReLU(BN(Conv1d k=5)), as in the original."""

    def __init__(self, channels, kernel_size=5):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2,
                              bias=False)
        self.bn = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return x + self.relu(self.bn(self.conv(x)))


class Classifier(nn.Module):
    """[B, T, C, H, W] in [0, 1] -> logits [B, num_classes].

    Every frame goes through the same stem and 2D trunk (as B*T images), is average-pooled to
    D features; video nets (frames > 1) with temporal="residual" mix them along time before the
    mean over time. Any T works at run time; with frames=1 several frames are simply averaged.
    taps > 1 pools the outputs of the trunk's last `taps` stages (trunk.stage_outputs) and puts
    them side by side: middle stages carry textures and parts that ImageNet's last stage has
    specialised away, which frozen features of other domains need (README, "Transfer").
    extra_sizes [(h, w)]: the trunk also sees each frame at these sides, and the pooled features
    of every scale stand side by side (the stem's own size first): a head on them averages the
    logits of heads at each scale (transfer's two-side head, skeleton/transfer.py).
    """

    def __init__(self, name, trunk, in_channels, num_classes, frames=1, temporal="residual",
                 weights_used="random", imagenet_norm=False, input_size=None, head_bias=False,
                 taps=1, extra_sizes=None):
        super().__init__()
        if temporal not in ("residual", "mean"):
            raise ValueError(f"temporal must be 'residual' or 'mean', got {temporal!r}")
        if num_classes < 1 or frames < 1:
            raise ValueError(f"num_classes and frames must be >= 1 ({num_classes}, {frames})")
        self.name = name
        self.frames = frames
        self.temporal_mode = temporal
        self.weights_used = weights_used
        # How to build it again (skeleton/persist.py saves these beside the weights).
        self.options = {"imagenet_norm": bool(imagenet_norm), "head_bias": bool(head_bias),
                        "input_size": list(input_size) if input_size else None,
                        "taps": int(taps),
                        "extra_sizes": [list(map(int, size)) for size in extra_sizes or []]}
        self.extra_sizes = [tuple(size) for size in self.options["extra_sizes"]]
        self.stem = InputStem(in_channels, imagenet=imagenet_norm, size=input_size)
        self.trunk = trunk
        self.taps = int(taps)
        if self.taps > 1:
            if not hasattr(trunk, "stage_outputs"):
                raise ValueError(f"{name}: taps={taps} needs a trunk that lists its stages")
            self.taps = min(self.taps, len(trunk.stage_channels))
            self.feature_dim = sum(trunk.stage_channels[-self.taps:])
        else:
            self.feature_dim = trunk.out_features
        self.feature_dim *= 1 + len(self.extra_sizes)
        self.temporal = (TemporalResidual(self.feature_dim)
                         if frames > 1 and temporal == "residual" else None)
        self.head = nn.Linear(self.feature_dim, num_classes, bias=head_bias)
        nn.init.xavier_uniform_(self.head.weight)

    def frame_features(self, x):
        """[B, T, C, H, W] -> per-frame pooled trunk features [B, T, D]."""
        if x.dim() == 4:  # tolerate plain image batches [B, C, H, W]
            x = x.unsqueeze(1)
        if x.dim() != 5:
            raise ValueError(f"expected [B, T, C, H, W], got shape {tuple(x.shape)}")
        b, t = x.shape[:2]
        x = x.reshape(b * t, *x.shape[2:])
        f = torch.cat([self._pooled(self.stem(x, size)) for size in [None, *self.extra_sizes]],
                      dim=1)
        return f.reshape(b, t, -1)

    def _pooled(self, x):
        if self.taps > 1:
            maps = self.trunk.stage_outputs(x)[-self.taps:]
            return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)
        return self.trunk(x).mean(dim=(2, 3))  # global average pooling

    def features(self, x):
        """[B, T, C, H, W] -> pooled features [B, D] (before the head)."""
        f = self.frame_features(x)
        if self.temporal is not None:
            f = self.temporal(f.transpose(1, 2)).transpose(1, 2)
        return f.mean(dim=1)

    def forward(self, x):
        return self.head(self.features(x))

    def extra_repr(self):
        return (f"name={self.name!r}, frames={self.frames}, temporal={self.temporal_mode!r}, "
                f"taps={self.taps}, weights_used={self.weights_used!r}")
