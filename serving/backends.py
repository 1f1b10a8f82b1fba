"""Inference backends (ONNX Runtime fp32/int8, PyTorch fp32/bf16/fp16) and choosing one by measuring.

Which backend is fastest depends on the CPU: int8 needs VNNI to shine, bf16 needs AMX or
AVX512-BF16 (emulated bf16 is several times slower than fp32). So at load the service embeds a few
real arXiv texts with every backend the artifact and the machine offer, keeps those whose
embeddings match PyTorch fp32 (cosine), and serves the fastest — unless a backend is pinned.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from arxiv_assets.ml.hardware import cpu_has_fast_bf16
from arxiv_assets.ml.variants import (
    ONNX_VARIANTS,
    REFERENCE_VARIANT,
    ParityStats,
    encode_variant,
    is_onnx_export,
    load_variant,
    timed_encode,
)

logger = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A backend that cannot run here or from this artifact; the message says why."""


class Backend:
    """One loaded model variant: texts in, L2-normalized float32 vectors and token counts out."""

    def __init__(self, name: str, model, threads: int) -> None:
        self.name = name
        self.model = model
        self.threads = threads

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def tokens(self, texts: list[str]) -> list[int]:
        features = self.model.preprocess(texts)
        return [int(n) for n in features["attention_mask"].sum(dim=1).tolist()]

    def encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        vectors = encode_variant(self.model, self.name, texts, batch_size=max(1, len(texts)))
        return vectors, self.tokens(texts)


def available_backends(model_dir: Path) -> list[str]:
    """Backends this artifact and this machine can run, PyTorch fp32 (the reference) first."""
    import torch

    names = [REFERENCE_VARIANT]
    if is_onnx_export(model_dir):
        names += list(ONNX_VARIANTS)
    if torch.cuda.is_available():
        names += ["torch-fp16", "torch-bf16"]
    elif cpu_has_fast_bf16():
        names.append("torch-bf16")
    return names


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def load_backend(model_dir: Path, name: str, threads: int) -> Backend:
    if name.startswith("onnx") and not is_onnx_export(model_dir):
        raise BackendError(f"backend {name} needs an onnx_model artifact; {model_dir} has no ONNX export "
                           f"(materialize onnx_model, or choose a torch backend)")
    if name not in available_backends(model_dir) and name.startswith("torch") and name != REFERENCE_VARIANT:
        raise BackendError(f"backend {name} is not fast on this machine (no CUDA, no native bf16); "
                           f"choose one of {available_backends(model_dir)}")
    from arxiv_assets.ml.hardware import best_device

    device = best_device() if name.startswith("torch") else "cpu"
    return Backend(name, load_variant(model_dir, name, threads=threads, device=device), threads)


@functools.cache
def probe_texts(n: int) -> tuple[str, ...]:
    """``n`` real arXiv title+abstract texts from the bundled sample, the same ones every time."""
    import pandas as pd

    from arxiv_assets.ml.text import paper_texts

    path = resources.files("arxiv_assets") / "data" / "arxiv_sample.parquet"
    with resources.as_file(path) as local:
        papers = pd.read_parquet(local, columns=["id", "title", "abstract"])
    return tuple(paper_texts(papers.sort_values("id").sample(n=min(n, len(papers)), random_state=0)))


@dataclass(frozen=True)
class Measurement:
    backend: str
    threads: int
    texts_per_s: float | None
    min_cosine: float | None
    threshold: float | None
    passed: bool
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def thread_options(threads: int | None) -> list[int]:
    """The intra-op thread counts to measure: the setting, else 1 and every core this process may use.

    One thread is not only for small machines: when other processes share the cores, a multi-threaded
    forward pass waits at every barrier for a descheduled worker (measured here on a loaded 2-core box:
    ~100 ms per abstract with 1 thread, 200-950 ms with 2), while an idle machine favours all cores.
    """
    if threads:
        return [threads]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return sorted({1, cores})


def choose_backend(
    model_dir: Path, pinned: str = "auto", threads: int | None = None, n_probe: int = 32,
    min_cosine_fp32: float = 0.999, min_cosine_reduced: float = 0.98,
) -> tuple[Backend, list[Measurement]]:
    """The fastest (backend, threads) whose probe embeddings match PyTorch fp32, measured on real texts.

    A pinned backend is only measured across thread counts (and trusted: no parity reference); a pinned
    backend with pinned threads is loaded without measuring anything.
    """
    names = available_backends(model_dir) if pinned == "auto" else [pinned]
    options = thread_options(threads)
    if len(names) == 1 and len(options) == 1:
        return load_backend(model_dir, names[0], options[0]), []
    texts = list(probe_texts(n_probe))
    reference_vectors: np.ndarray | None = None
    measurements: list[Measurement] = []
    best: Backend | None = None
    best_speed = 0.0
    for name in names:  # PyTorch fp32, the reference, comes first
        threshold = None if pinned != "auto" or name == REFERENCE_VARIANT else (
            min_cosine_fp32 if name.endswith("fp32") else min_cosine_reduced)
        torch_model = None
        for count in options:
            started = time.perf_counter()
            try:
                if name.startswith("torch") and torch_model is not None:
                    candidate = Backend(name, torch_model, count)  # same weights, another thread count
                    set_torch_threads(count)
                else:
                    candidate = load_backend(model_dir, name, count)
                    torch_model = candidate.model if name.startswith("torch") else None
                vectors, speed = timed_encode(candidate.model, name, texts, batch_size=len(texts))
            except Exception as error:  # a backend that cannot run here is skipped, not fatal
                logger.warning("backend %s (%d threads) unavailable: %s", name, count, error)
                measurements.append(Measurement(name, count, None, None, threshold, False, str(error)))
                continue
            if name == REFERENCE_VARIANT and reference_vectors is None:
                reference_vectors = vectors
            min_cosine = (ParityStats.of(reference_vectors, vectors).min_cosine
                          if reference_vectors is not None else None)
            passed = threshold is None or (min_cosine is not None and min_cosine >= threshold)
            measurements.append(Measurement(name, count, speed, min_cosine, threshold, passed))
            logger.info("backend %s, %d threads: %.1f texts/s, min cosine %s (%s), measured in %.1fs", name, count,
                        speed, min_cosine, "ok" if passed else "rejected", time.perf_counter() - started)
            if passed and speed > best_speed:
                best, best_speed = candidate, speed
    if best is None:
        raise BackendError(f"no backend could run {model_dir}: {[m.as_dict() for m in measurements]}")
    if best.name.startswith("torch"):
        set_torch_threads(best.threads)  # the measurements above left it at the last count tried
    return best, measurements
