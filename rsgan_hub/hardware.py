"""Which number format this machine computes fast, for inference (`pipelines.resolve_precision`) and
training (`training_precision`, the scripts' `--mixed_precision auto`).

bf16 only pays where the hardware has bf16 matrix instructions (AVX512-BF16 or AMX on a CPU): there
oneDNN's bf16 convolutions run several times faster than fp32. On a CPU without them every bf16
operation is emulated and many times slower than fp32 (bench/README.md has the measurements). So
"auto" means bf16 only where the CPU flags (or the GPU) say it is native, fp32 everywhere else.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # Linux /proc/cpuinfo names of native bf16 arithmetic
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")  # the training scripts' --mixed_precision values


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo, or None where they cannot be read (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


@functools.cache
def bf16_supported() -> bool:
    """True when this CPU computes bf16 natively: oneDNN has bf16 kernels and, where the flags can be
    read, the CPU has AVX512-BF16 or AMX (oneDNN also "supports" bf16 on plain AVX512 by emulation,
    which is no faster than fp32). On Apple / ARM CPUs, oneDNN's own answer."""
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False
    flags = cpu_flags()
    return flags is None or any(flag in flags for flag in BF16_CPU_FLAGS)


def training_precision(requested: str = "auto") -> str:
    """accelerate's `mixed_precision` ("no" | "bf16" | "fp16") for a training script's flag.

    "auto": what `accelerate launch --mixed_precision` asked for when it asked for bf16 or fp16;
    otherwise bf16 on a GPU that has it (fp16 on older GPUs) or on a CPU with native bf16, and "no"
    (fp32) on any other CPU. An explicit "bf16" on a CPU without native bf16 is kept, with a warning
    that it will be slow."""
    if requested not in MIXED_PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, got {requested!r}")
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if requested == "auto":
        if launched in ("bf16", "fp16"):
            requested = launched
        elif torch.cuda.is_available():
            requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            requested = "bf16" if bf16_supported() else "no"
    if requested == "bf16" and not torch.cuda.is_available() and not bf16_supported():
        warn_emulated_bf16("use --mixed_precision no (or auto)")
    return requested


def warn_emulated_bf16(advice: str, stacklevel: int = 3) -> None:
    """The warning for an explicit bf16 request on a CPU that would emulate it; `advice`: what to use."""
    warnings.warn(f"bf16 on a CPU without native bf16 (AVX512-BF16 / AMX) is emulated and many times slower than "
                  f"fp32: {advice}", stacklevel=stacklevel)


def channels_last_default(requested: bool | None, mixed_precision: str, device: torch.device) -> bool:
    """The training scripts' `--channels_last`: as given, or (None) on where it measured faster - on a
    GPU and under bf16/fp16 (oneDNN's bf16 kernels want it) - and off in fp32 on a CPU, where the
    seed DCGAN's step ran 10 % slower with it on the AVX2-only EPYC above."""
    if requested is not None:
        return requested
    return device.type == "cuda" or mixed_precision in ("bf16", "fp16")


def matmul_gflops(dtype: torch.dtype = torch.float32, side: int = 2048, repeats: int = 5) -> float:
    """This CPU's rate on a large square matrix product in `dtype` (GFLOP/s; the best of `repeats`
    products, as a shared machine's speed drifts): the ceiling for convolutions, which the benchmarks
    print beside their timings."""
    a, b = torch.randn(side, side).to(dtype), torch.randn(side, side).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * side**3 / best / 1e9
