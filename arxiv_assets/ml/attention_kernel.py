"""The attention kernel a CPU training run uses, chosen by timing the model's own steps on this machine.

PyTorch's scaled_dot_product_attention takes its fused (flash) kernel on a CPU where it can and its unfused math
path otherwise. Its CPU flash kernel takes no dropout, so a backbone that trains with attention dropout (MiniLM's
0.1, the default) runs the math path whatever is asked: nothing to choose, and nothing is timed; with packed
dropout masks (ml/dropout.py, an opt-in) such a backbone attends on Transformers' eager path instead, the
same products and softmax, whose dropout is a module (reported as "eager"). Without
attention dropout the fused kernel is used, and at the short lengths we train at its backward pass is slow on
some CPUs: on a Zen 4 EPYC, 40 steps of the real trainer took 1.27x as long on it as on the math path without any
dropout, 1.24x without attention dropout (benchmarks/RESULTS.md "Dropout and the attention kernel"). Which path is
faster depends on the CPU's kernels (AMX, AVX-512, AVX2: held to AVX2 the fused one was kept), so such a run times
both on a few of its own texts and keeps PyTorch's choice unless the math path was clearly faster. Both compute
the same attention; the choice only moves float rounding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from arxiv_assets.ml.train_precision import TIMING_TEXTS, step_seconds

# "eager": Transformers' own attention, no scaled_dot_product_attention (load_for_training chose it)
AttentionKernel = Literal["default", "math", "eager"]
# The two paths round differently, so a CPU where they are close must not flip between them with the noise of
# the machine (a re-run would train another model, bit for bit).
MATH_MIN_SPEEDUP = 1.1
TIMED_ROUNDS = 2  # each kernel timed this many times, interleaved, best kept
# the backbone config's attention dropout (BERT-like: MiniLM, mpnet), as TrainSettings.attention_dropout sets it
ATTENTION_DROPOUT_KEY = "attention_probs_dropout_prob"


@dataclass(frozen=True)
class AttentionKernelChoice:
    kernel: AttentionKernel
    reason: str
    seconds: dict[str, float]  # kernel -> best seconds of one timed forward and backward pass; empty: not timed


def pick_attention_kernel(default_seconds: float, math_seconds: float) -> AttentionKernelChoice:
    """The math path where its timed step took at most 1 / ``MATH_MIN_SPEEDUP`` of the fused kernel's."""
    speedup = default_seconds / max(math_seconds, 1e-9)
    seconds = {"default": default_seconds, "math": math_seconds}
    if speedup >= MATH_MIN_SPEEDUP:
        return AttentionKernelChoice("math", f"math attention timed {speedup:.2f}x the fused kernel "
                                             f"(>= {MATH_MIN_SPEEDUP}x)", seconds)
    return AttentionKernelChoice("default", f"math attention timed {speedup:.2f}x the fused kernel "
                                            f"(< {MATH_MIN_SPEEDUP}x)", seconds)


@contextlib.contextmanager
def attention_kernel_context(kernel: AttentionKernel) -> Iterator[None]:
    """Run the block's scaled_dot_product_attention on ``kernel`` ("default": PyTorch's own choice; "eager":
    nothing to choose)."""
    if kernel != "math":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def attention_dropout_of(model) -> float:
    """The attention dropout ``model``'s backbone trains with; 0 where its config names none, so that such a
    backbone is timed rather than assumed."""
    return float(getattr(model[0].auto_model.config, ATTENTION_DROPOUT_KEY, 0.0))


def choose_attention_kernel(model, texts: list[str], device: str, precision: Literal["fp32", "bf16"]
                            ) -> AttentionKernelChoice:
    """The attention kernel to train ``model`` with, timed on ``texts`` (the first ``TIMING_TEXTS``, at the
    model's max_seq_length) in ``precision`` on a CPU without attention dropout; PyTorch's own choice on a GPU
    or with attention dropout (its CPU flash kernel takes none: every path is the math one); "eager" for a
    backbone loaded with eager attention (``attn_implementation``, or packed masks)."""
    if device.startswith("cuda"):
        return AttentionKernelChoice("default", "on a GPU: PyTorch's fused kernels", {})
    dropout = attention_dropout_of(model)
    if model[0].auto_model.config._attn_implementation == "eager":
        return AttentionKernelChoice("eager", f"attention dropout {dropout:g}: Transformers' eager attention, as "
                                              "loaded (attn_implementation, or packed masks, whose attention dropout "
                                              "is a module: ml/dropout.py)", {})
    if dropout > 0:
        return AttentionKernelChoice("default", f"attention dropout {dropout:g}: PyTorch's CPU flash kernel takes "
                                                "no dropout, so attention runs on the math path either way", {})
    features = model.preprocess(texts[:TIMING_TEXTS])
    was_training = model.training
    model.train()
    timed: dict[str, list[float]] = {"default": [], "math": []}
    try:
        for _ in range(TIMED_ROUNDS):
            for kernel in ("default", "math"):
                with attention_kernel_context(kernel):  # type: ignore[arg-type]
                    timed[kernel].append(step_seconds(model, features, device, precision))
    finally:
        model.train(was_training)
    return pick_attention_kernel(min(timed["default"]), min(timed["math"]))
