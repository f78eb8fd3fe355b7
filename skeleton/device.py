"""Where the network runs and in which precision, and what happens when CUDA fails.

pick_device() chooses CUDA only when a tiny kernel really runs there: torch.cuda.is_available()
is also true when the installed wheel has no kernels for the GPU (CUDA 13 wheels on Pascal or
Volta), and the first real kernel then fails.

choose_precision() is a pure function of the device's compute capability and the `train`
config (precision, bf16_min_capability, fp16_min_capability, cpu_bf16), so it is tested
without a GPU.

cuda_failed() is the learner's answer to an error raised on the CUDA path at any stage: it
says so in one line on stderr, then either moves the network to the CPU (no network model has
been kept yet: nothing is lost) or stops training and keeps the best predictions so far.
"""
import logging
import os
import sys

log = logging.getLogger("skeleton")

PRECISIONS = ("auto", "bf16", "fp16", "fp32")

_cuda_broken = False  # set once the CUDA path failed in this process: never pick it again


def gpu_present():
    """Whether a CUDA device is likely, without importing torch (the first read happens
    before torch is imported): an NVIDIA driver with a GPU, not hidden by the environment."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        return bool(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return False


def choose_precision(capability, cfg):
    """'bf16', 'fp16' or 'fp32' and the reason, for a CUDA device of compute capability
    `capability` ((major, minor)), or for the CPU when `capability` is None."""
    setting = cfg.precision
    if setting not in PRECISIONS:
        raise ValueError(f"train.precision is {setting!r}; expected one of "
                         f"{', '.join(PRECISIONS)}")
    if capability is None:  # the CPU keeps its own switch
        if cfg.cpu_bf16:
            return "bf16", "cpu_bf16 is on"
        return "fp32", "CPU"
    if setting != "auto":
        return setting, "forced by train.precision"
    major, minor = capability
    value = major + minor / 10
    if value >= cfg.bf16_min_capability:
        return "bf16", f"compute capability {major}.{minor} has native bf16"
    if value >= cfg.fp16_min_capability:
        return "fp16", f"compute capability {major}.{minor}: fp16 with loss scaling, no bf16"
    return "fp32", f"compute capability {major}.{minor}: no fast fp16 or bf16"


def precision_for(device, cfg):
    """choose_precision() for a torch device (asks CUDA for its capability)."""
    import torch
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return choose_precision(capability, cfg)


def _cuda_works(torch):
    """Run a tiny elementwise kernel and a tiny matrix product on the GPU."""
    x = torch.arange(16, dtype=torch.float32, device="cuda").reshape(4, 4)
    return float((x * 2 + 1).matmul(x).sum().item()) > 0


def pick_device():
    """torch.device('cuda') when a kernel runs there, otherwise the CPU (reported once)."""
    global _cuda_broken
    import torch
    if _cuda_broken or not torch.cuda.is_available():
        return torch.device("cpu")
    try:
        _cuda_works(torch)
    except Exception as error:  # noqa: BLE001  (any failure there means: not this GPU)
        _cuda_broken = True
        report(f"CUDA does not run here ({first_line(error)}); using the CPU")
        return torch.device("cpu")
    return torch.device("cuda")


def first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def report(message):
    print(f"autoclint: {message}", file=sys.stderr, flush=True)


def cuda_failed(device, error):
    """True when `error` came from the CUDA path (a RuntimeError on a CUDA device); CUDA is
    then off for the rest of the process (pick_device answers the CPU)."""
    global _cuda_broken
    if device is None or device.type != "cuda" or not isinstance(error, RuntimeError):
        return False
    _cuda_broken = True
    return True
