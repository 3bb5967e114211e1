"""Which floating-point type a model computes in: bfloat16 only where the GPU runs it natively.

    resolve_dtype("auto", "cuda")        # "bfloat16" on an A100 (8.0), "float16" on a 2080 Ti (7.5) or a V100 (7.0)
    resolve_dtype("auto", "cpu")         # "float32" (or the `cpu` argument)
    resolve_dtype("float16", "cuda")     # what the config says, always
    amp_flags("auto", "cuda")            # {"bf16": True, "fp16": False} for TrainingArguments / SFTConfig

`torch.cuda.is_bf16_supported()` is True on Turing (7.5), where bfloat16 is only emulated: slow, though it does not
crash. Native bfloat16 needs compute capability 8.0 (Ampere) or newer, so "auto" asks for the capability instead.
Every config key that picks a dtype (`counting.train.dtype`, `reminder.finetune.dtype`, `emr.llm_dtype`, ...) takes
"auto" or a dtype name; a name always wins.
"""
from __future__ import annotations

import logging

from mmemory.config import ConfigError

logger = logging.getLogger(__name__)

BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first architecture with bfloat16 tensor cores
DTYPES = ("auto", "float32", "float16", "bfloat16")


def cuda_capability(device=None) -> tuple[int, int] | None:
    """(major, minor) compute capability of `device` (a CUDA device, "cuda", "cuda:N", None: the current one), or
    None when it is not a CUDA device or CUDA is absent."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cuda")
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    try:
        major, minor = torch.cuda.get_device_capability(dev)
    except (AssertionError, RuntimeError) as e:  # a torch without CUDA, or a driver that does not answer
        logger.warning("CUDA reports a device but its compute capability cannot be read (%s); computing as on "
                       "the CPU", e)
        return None
    return int(major), int(minor)


def native_bf16(device=None) -> bool:
    """Whether `device` computes in bfloat16 natively (CUDA compute capability 8.0 or newer)."""
    cap = cuda_capability(device)
    return cap is not None and cap >= BF16_MIN_CAPABILITY


def resolve_dtype(requested: str = "auto", device=None, cpu: str = "float32", what: str = "dtype") -> str:
    """The dtype name to compute in. A name in the config is returned as it is (with a warning for bfloat16 where it
    is emulated); "auto" gives bfloat16 on a CUDA device of capability >= 8.0, float16 on an older one, and `cpu`
    elsewhere. `what` names the config key in errors."""
    if requested not in DTYPES:
        raise ConfigError(f"config {what}: {requested!r} is not one of {', '.join(DTYPES)}")
    cap = cuda_capability(device if device is not None else _default_device())
    if requested != "auto":
        if requested == "bfloat16" and cap is not None and cap < BF16_MIN_CAPABILITY:
            logger.warning("%s: bfloat16 on a GPU of compute capability %d.%d is emulated and slow; set it to auto "
                           "(float16 there) or float16", what, *cap)
        return requested
    if cap is None:
        return cpu
    chosen = "bfloat16" if cap >= BF16_MIN_CAPABILITY else "float16"
    logger.info("%s auto: %s (CUDA compute capability %d.%d)", what, chosen, *cap)
    return chosen


def torch_dtype(name: str):
    """The torch dtype of a resolved name ("float16" -> torch.float16)."""
    import torch

    return getattr(torch, name)


def amp_flags(requested: str = "auto", device=None, what: str = "dtype") -> dict:
    """{"bf16": ..., "fp16": ...} for a Trainer's mixed precision: the resolved dtype on CUDA, neither elsewhere
    (the Trainer then trains in float32)."""
    dev = device if device is not None else _default_device()
    if cuda_capability(dev) is None:
        return {"bf16": False, "fp16": False}
    name = resolve_dtype(requested, dev, what=what)
    return {"bf16": name == "bfloat16", "fp16": name == "float16"}


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
