"""The precision a CPU training run uses, chosen by timing the model's own steps on this machine.

CPU flags say where bf16 can be fast (AMX, AVX512-BF16) but not by how much for this model and batch shape,
and an unknown CPU class says nothing. So on a CPU the run times one forward and backward pass of a few of its
own training texts in fp32 and in bf16 autocast (after a warm-up pass each) and trains in bf16 only where it
was clearly faster. Measured by hand before: bf16 ~2.1x fp32 per step on an AMX Xeon, ~2x on a Zen 4 EPYC, and
~7x slower than fp32 on an AVX2-only EPYC, where it is emulated (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from arxiv_assets.ml.embedding import precision_context

TrainPrecision = Literal["auto", "fp32", "bf16"]
# bf16 rounds the weights' updates; it has to buy a clear speed-up (a quarter less time per step), or a run
# on a CPU where the two are close would flip between precisions with the machine's noise.
BF16_MIN_SPEEDUP = 1.25
TIMING_TEXTS = 8
WARM_UP_ALLOWANCE = 5.0


@dataclass(frozen=True)
class PrecisionChoice:
    precision: Literal["fp32", "bf16"]
    reason: str
    seconds: dict[str, float]  # precision -> seconds of one timed forward and backward pass; empty: not timed


def pick_training_precision(fp32_seconds: float, bf16_seconds: float) -> PrecisionChoice:
    """bf16 where its timed step took at most 1 / ``BF16_MIN_SPEEDUP`` of fp32's, else fp32."""
    speedup = fp32_seconds / max(bf16_seconds, 1e-9)
    seconds = {"fp32": fp32_seconds, "bf16": bf16_seconds}
    if speedup >= BF16_MIN_SPEEDUP:
        return PrecisionChoice("bf16", f"bf16 timed {speedup:.2f}x fp32 (>= {BF16_MIN_SPEEDUP}x)", seconds)
    return PrecisionChoice("fp32", f"bf16 timed {speedup:.2f}x fp32 (< {BF16_MIN_SPEEDUP}x)", seconds)


def step_seconds(model, features: dict, device: str, precision: Literal["fp32", "bf16"],
                 give_up_after: float = float("inf")) -> float:
    """Seconds of one forward and backward pass (the second of two: the first builds kernels), or of the first
    alone where that took over ``give_up_after`` (emulated bf16: ~20x fp32, so a second pass would only cost
    time); the gradients are dropped afterwards, so the model is as it was."""
    elapsed = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        with precision_context(device, precision):
            embeddings = model(dict(features))["sentence_embedding"]
        embeddings.float().pow(2).sum().backward()
        elapsed = time.perf_counter() - started
        model.zero_grad(set_to_none=True)
        if elapsed > give_up_after:
            break
    return elapsed


def choose_training_precision(model, texts: list[str], device: str, requested: TrainPrecision = "auto",
                              cuda_bf16: bool = False) -> PrecisionChoice:
    """The precision to train ``model`` in: ``requested`` unless "auto"; on CUDA bf16 where the GPU supports it
    (``cuda_bf16``); on a CPU, timed on ``texts`` (the first ``TIMING_TEXTS``, at the model's max_seq_length)."""
    if requested != "auto":
        return PrecisionChoice(requested, "set in the run config (train_precision)", {})
    if device.startswith("cuda"):
        return PrecisionChoice("bf16" if cuda_bf16 else "fp32",
                               "the GPU " + ("supports bf16" if cuda_bf16 else "lacks bf16"), {})
    features = model.preprocess(texts[:TIMING_TEXTS])
    was_training = model.training
    model.train()
    try:
        fp32 = step_seconds(model, features, device, "fp32")
        # a first bf16 pass over WARM_UP_ALLOWANCE x fp32's cannot end clearly faster (its kernels build in less)
        bf16 = step_seconds(model, features, device, "bf16", give_up_after=WARM_UP_ALLOWANCE * fp32)
    finally:
        model.train(was_training)
    return pick_training_precision(fp32, bf16)
