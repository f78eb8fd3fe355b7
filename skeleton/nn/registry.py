"""Name -> trunk builder, filled by the @register decorator (timm-style)."""

NETWORKS = {}


def register(name):
    """Add a builder under `name`.

    A builder is called as builder(weights, models_dir) and returns (trunk, weights_used):
    the trunk maps [N, 3, H, W] (normalised) to a feature map [N, D, h, w] and has an
    `out_features` attribute (D); `weights` is already resolved to "auto", "none" or a path.
    """
    def decorate(builder):
        if name in NETWORKS:
            raise ValueError(f"network {name!r} is already registered")
        NETWORKS[name] = builder
        return builder
    return decorate
