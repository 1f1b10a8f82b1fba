"""What the machine can do fast, detected at run time rather than assumed."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

# oneDNN's instruction-set levels, lowest first, and the CPU flag that first needs each level. PyTorch runs
# its CPU kernels at most at ONEDNN_MAX_CPU_ISA when it is set, so a flag above that cap buys nothing.
ISA_CAP_ENV_VAR = "ONEDNN_MAX_CPU_ISA"
ONEDNN_ISA_LEVELS: tuple[str, ...] = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI",
                                      "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX")
FLAG_ISA_LEVEL: dict[str, str] = {
    "avx2": "AVX2", "avx_vnni": "AVX2_VNNI", "avx512f": "AVX512_CORE", "avx512bw": "AVX512_CORE",
    "avx512_vnni": "AVX512_CORE_VNNI", "avx512_bf16": "AVX512_CORE_BF16", "avx512_fp16": "AVX512_CORE_FP16",
    "amx_bf16": "AVX512_CORE_AMX", "amx_int8": "AVX512_CORE_AMX", "amx_tile": "AVX512_CORE_AMX",
}


def capped_flags(flags: frozenset[str], isa_cap: str) -> frozenset[str]:
    """``flags`` without those above the oneDNN level ``isa_cap`` (e.g. "AVX2"); unknown caps cap nothing."""
    cap = isa_cap.strip().upper()
    if cap not in ONEDNN_ISA_LEVELS:
        return flags
    allowed = set(ONEDNN_ISA_LEVELS[:ONEDNN_ISA_LEVELS.index(cap) + 1])
    return frozenset(f for f in flags if FLAG_ISA_LEVEL.get(f, "SSE41") in allowed)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, less those above ``ONEDNN_MAX_CPU_ISA`` where that caps PyTorch: a benchmark
    (``benchmarks/train_bench.py --isa AVX2``) or a user can make this CPU behave as an AVX2-only one."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():  # macOS / Windows: no flags to read, so no fast-path assumptions
        return frozenset()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return capped_flags(frozenset(line.split(":", 1)[1].split()), os.environ.get(ISA_CAP_ENV_VAR, ""))
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """AMX tiles (Sapphire Rapids and later) or AVX512-BF16 make bf16 matmuls faster than fp32.

    Without them PyTorch emulates bf16 and it is several times slower than fp32 (measured on an
    AVX2-only AMD EPYC: 16 texts/s fp32 vs 2.4 bf16 autocast), so bf16 is never a blind default.
    """
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def cpu_has_vnni() -> bool:
    """VNNI speeds up int8 dot products, which is what dynamic ONNX quantization runs on."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def best_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# What a step asks to train on: "auto" takes CUDA where torch finds it and the CPU otherwise (laptops);
# "cuda" refuses to fall back to the CPU; "cpu" never touches a GPU.
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
# Set to 1 in the pod of a step that was given a GPU (arxiv_assets/k8s.py): there "auto" means "cuda",
# so a pod without CUDA (the CPU image, a missing driver) fails instead of training on the CPU.
REQUIRE_CUDA_ENV_VAR = "ARXIV_REQUIRE_CUDA"


class CudaUnavailableError(RuntimeError):
    """CUDA was required and torch cannot use it; ``facts`` holds what was checked."""

    def __init__(self, message: str, facts: dict[str, str]) -> None:
        super().__init__(message)
        self.facts = facts


def cuda_required_by_environment() -> bool:
    return os.environ.get(REQUIRE_CUDA_ENV_VAR, "").strip().lower() in {"1", "true", "yes"}


def resolve_device(requested: Device = "auto") -> str:
    """The torch device to train on: ``"cuda"`` or ``"cpu"``, or CudaUnavailableError when CUDA was required.

    CUDA is required when ``requested`` is ``"cuda"``, or when it is ``"auto"`` and the environment says
    this process was given a GPU (``ARXIV_REQUIRE_CUDA=1``). An explicit ``"cpu"`` always wins.
    """
    if requested not in DEVICES:
        raise ValueError(f"device {requested!r}; choose one of {DEVICES}")
    if requested == "cpu":
        return "cpu"
    required_by = ("device='cuda' in the run config" if requested == "cuda" else
                   f"{REQUIRE_CUDA_ENV_VAR}=1: this step's pod was given a GPU" if cuda_required_by_environment()
                   else None)
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if required_by is None:
        return "cpu"
    facts = {
        "torch.cuda.is_available()": "False",
        "torch": torch.__version__,
        "torch built with CUDA": torch.version.cuda or "no (a CPU-only build)",
        "torch.cuda.device_count()": str(torch.cuda.device_count()),
        "CUDA_VISIBLE_DEVICES": _env_value("CUDA_VISIBLE_DEVICES"),
        "NVIDIA_VISIBLE_DEVICES": _env_value("NVIDIA_VISIBLE_DEVICES"),
    }
    fix = ("this torch has no CUDA: run the step in the CUDA image (docker build --target dagster "
           "--build-arg TORCH_VARIANT=cuda, named for GPU steps by ARXIV_CUDA_IMAGE)"
           if not torch.version.cuda else
           "torch has CUDA but sees no GPU: check that the pod was given one (nvidia.com/gpu limit, the "
           "node's driver) and that CUDA_VISIBLE_DEVICES does not hide it")
    message = "\n".join([
        f"CUDA was required (device {requested!r}; {required_by}) but torch.cuda.is_available() is False: "
        "the step stops instead of training on the CPU.",
        *(f"  {name}: {value}" for name, value in facts.items()),
        f"Fix: {fix}; or set device: cpu in the run config to train on the CPU on purpose.",
    ])
    facts = {"requested device": requested, "CUDA required by": required_by, **facts}
    raise CudaUnavailableError(message, facts)


def _env_value(name: str) -> str:
    value = os.environ.get(name)
    return "unset" if value is None else repr(value)
