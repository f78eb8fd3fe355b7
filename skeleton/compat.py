"""Importing torch safely in a process that may already hold TensorFlow.

TensorFlow followed by anything that loads triton (torch does, on import) segfaults the
interpreter here. Triton only serves GPU kernels that torch.compile generates, which we do
not use, so it is marked absent when TensorFlow is already loaded.
"""
import sys


def import_torch():
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None
    import torch
    return torch
