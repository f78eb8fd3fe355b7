"""autoclint: our classifier as a tool for your own data (fit, predict, evaluate, zip,
convert), from the command line or from Python:

    from autoclint import fit, load
    model = fit("photos/train", valid="photos/val", time_budget=90, out="out1")
    load("out1").predict("new_photos/").to_pandas()

The AutoDL harness (autodl/) runs any submission and never imports our model; this package
is the application around our submission (model.py over skeleton/, configs/) and may.
"""
import os

# The checkout that holds model.py, skeleton/, configs/ and models/ (`pip install -e .`).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fit(*args, **kwargs):
    from .api import fit as _fit
    return _fit(*args, **kwargs)


fit.__doc__ = "Train a model; see autoclint.api.fit."


def load(path):
    """The model saved by fit in `path` (a model.pt, or fit's output folder)."""
    from .api import load as _load
    return _load(path)
