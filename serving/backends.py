"""Inference backends (ONNX Runtime fp32/int8, OpenVINO fp32/bf16/static int8, PyTorch fp32/bf16/fp16) and choosing one
by measuring.

Which backend is fastest depends on the CPU: int8 needs VNNI to shine, bf16 needs AMX or
AVX512-BF16 (emulated bf16 is several times slower than fp32). So at load the service measures
every (backend, threads) the artifact and the machine offer on real arXiv texts, in steady state:
each is loaded and warmed up, then timed for several rounds interleaved across candidates (a burst
of load from another process hits them all alike), and its best round counts. A candidate whose
embeddings do not match PyTorch fp32 (cosine) is rejected. ``decide`` then picks one by a fixed rule,
and says why; see its docstring.
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
    REFERENCE_VARIANT,
    ModelExport,
    ParityStats,
    encode_variant,
    is_onnx_export,
    load_variant,
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
        # OpenVINO's bf16 hint runs f32 on a CPU without native bf16: openvino-fp32 again, so not measured twice.
        names += [v for v in ModelExport.read(model_dir).variants if v != "openvino-bf16" or cpu_has_fast_bf16()]
    if torch.cuda.is_available():
        names += ["torch-fp16", "torch-bf16"]
    elif cpu_has_fast_bf16():
        names.append("torch-bf16")
    return names


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def load_backend(model_dir: Path, name: str, threads: int) -> Backend:
    exported = not name.startswith("torch")
    if exported and not is_onnx_export(model_dir):
        raise BackendError(f"backend {name} needs an onnx_model artifact; {model_dir} has no export "
                           f"(materialize onnx_model, or choose a torch backend)")
    offered = available_backends(model_dir)
    if exported and name not in ModelExport.read(model_dir).variants:
        raise BackendError(f"backend {name} is not in the export {model_dir} (made before it existed); "
                           f"choose one of {offered}")
    if name not in offered and name != REFERENCE_VARIANT:
        raise BackendError(f"backend {name} is not fast on this machine (no CUDA, no native bf16); "
                           f"choose one of {offered}")
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


CLEAR_ADVANTAGE = 0.10  # a candidate wins on speed alone only when it is more than 10% faster
# Among candidates within CLEAR_ADVANTAGE of the fastest, the first in this order wins: the more precise
# first (fp32, then fp16's 10-bit and bf16's 7-bit mantissas, then int8: OpenVINO's static int8 before ONNX
# Runtime's dynamic int8, twice as close to fp32 by cosine, RESULTS.md "What the service sends, on every slice"),
# and of two backends of one precision the reference's runtime first; then fewer threads (steadier on cores
# shared with other processes).
PREFERENCE: tuple[str, ...] = ("torch-fp32", "onnx-fp32", "openvino-fp32", "torch-fp16", "torch-bf16", "openvino-bf16",
                               "openvino-int8", "onnx-int8")
OUT_OF_REACH = 2.0  # a candidate at under half the leader's best round is not timed again


@dataclass(frozen=True)
class Measurement:
    backend: str
    threads: int
    texts_per_s: float | None  # the best round
    min_cosine: float | None
    threshold: float | None
    passed: bool
    error: str | None = None
    rounds_texts_per_s: tuple[float, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        return f"{self.backend} x{self.threads}"


@dataclass(frozen=True)
class BackendChoice:
    backend: Backend
    measurements: list[Measurement]
    reason: str


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


def _preference(measurement: Measurement) -> tuple[int, int]:
    rank = PREFERENCE.index(measurement.backend) if measurement.backend in PREFERENCE else len(PREFERENCE)
    return rank, measurement.threads


def decide(measurements: list[Measurement], pinned: str = "auto",
           clear_advantage: float = CLEAR_ADVANTAGE) -> tuple[Measurement, str]:
    """The (backend, threads) to serve among ``measurements``, and why, as one sentence for /ready.

    The candidates are the measurements that ran and passed parity (all of the pinned backend's when
    one is pinned: it is trusted). The fastest wins when it is more than ``clear_advantage`` faster than
    every other candidate. Otherwise every candidate within that margin of the fastest is a contender
    and the first of them in ``PREFERENCE`` order (more precise first, then fewer threads) wins: a
    difference the noise of a shared machine can reverse never decides, so repeated starts agree.
    """
    candidates = [m for m in measurements if m.texts_per_s is not None
                  and (m.backend == pinned if pinned != "auto" else m.passed)]
    if not candidates:
        raise BackendError(f"no backend could run: {[m.as_dict() for m in measurements]}")
    ranked = sorted(candidates, key=lambda m: (-m.texts_per_s, _preference(m)))
    fastest = ranked[0]
    contenders = [m for m in ranked if m.texts_per_s * (1 + clear_advantage) >= fastest.texts_per_s]
    chosen = min(contenders, key=_preference)
    prefix = f"pinned {pinned}; " if pinned != "auto" else ""
    rejected = [f"{m.label} (min cosine {m.min_cosine:.4f} < {m.threshold})" for m in measurements
                if not m.passed and m.error is None and m.min_cosine is not None and m.threshold is not None]
    suffix = f"; rejected for parity: {', '.join(rejected)}" if rejected else ""
    if len(ranked) == 1:
        return chosen, f"{prefix}{chosen.label} is the only candidate ({chosen.texts_per_s:.1f} texts/s){suffix}"
    if len(contenders) == 1:
        runner_up = ranked[1]
        return chosen, (f"{prefix}{chosen.label} is clearly fastest: {chosen.texts_per_s:.1f} texts/s, "
                        f"{100 * (chosen.texts_per_s / runner_up.texts_per_s - 1):.0f}% above the runner-up "
                        f"{runner_up.label} ({runner_up.texts_per_s:.1f}; a clear win needs "
                        f"> {100 * clear_advantage:.0f}%){suffix}")
    close = ", ".join(f"{m.label} {m.texts_per_s:.1f}" for m in contenders)
    return chosen, (f"{prefix}no clear winner: {close} texts/s are within {100 * clear_advantage:.0f}% of the "
                    f"fastest; {chosen.label} comes first in the order {' > '.join(PREFERENCE)}, fewer threads "
                    f"first{suffix}")


def _timed_round(backend: Backend, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    """``texts`` through ``Backend.encode`` (what the batcher calls) in batches of ``batch_size``: vectors, texts/s."""
    if backend.name.startswith("torch"):
        set_torch_threads(backend.threads)  # one setting per process: set it for the candidate being timed
    started = time.perf_counter()
    vectors = np.concatenate([backend.encode(texts[i:i + batch_size])[0] for i in range(0, len(texts), batch_size)])
    return vectors, len(texts) / max(time.perf_counter() - started, 1e-9)


def choose_backend(
    model_dir: Path, pinned: str = "auto", threads: int | None = None, n_probe: int = 32, rounds: int = 3,
    batch_size: int = 32, min_cosine_fp32: float = 0.999, min_cosine_reduced: float = 0.999,
) -> BackendChoice:
    """The (backend, threads) ``decide`` picks from steady-state measurements on ``n_probe`` real texts.

    Every candidate is loaded and warmed up (one untimed pass over the texts); parity is its cosine to
    PyTorch fp32 on those texts, and one that fails it is not timed. The others are timed ``rounds``
    times, the rounds interleaved across candidates; a candidate's speed is its best round. One whose
    best round is under 1/``OUT_OF_REACH`` of the leader's is timed no more (it cannot come within
    ``CLEAR_ADVANTAGE``), which keeps startup short where one backend is far ahead. A pinned backend
    is only measured across thread counts (and trusted: no parity reference); a pinned backend with
    pinned threads is loaded without measuring anything. All candidates are in memory together while
    they are measured.
    """
    names = available_backends(model_dir) if pinned == "auto" else [pinned]
    options = thread_options(threads)
    if len(names) == 1 and len(options) == 1:
        return BackendChoice(load_backend(model_dir, names[0], options[0]), [],
                             f"pinned {names[0]} with {options[0]} thread(s): nothing measured")
    texts = list(probe_texts(n_probe))
    started = time.perf_counter()
    loaded: list[tuple[Backend, float | None, np.ndarray]] = []  # (candidate, parity threshold, warm-up vectors)
    failed: list[Measurement] = []
    for name in names:  # PyTorch fp32, the reference, comes first
        threshold = None if pinned != "auto" or name == REFERENCE_VARIANT else (
            min_cosine_fp32 if name.endswith("fp32") else min_cosine_reduced)
        torch_model = None
        for count in options:
            try:
                if torch_model is not None:
                    candidate = Backend(name, torch_model, count)  # same weights, another thread count
                else:
                    candidate = load_backend(model_dir, name, count)
                    torch_model = candidate.model if name.startswith("torch") else None
                vectors, _ = _timed_round(candidate, texts, batch_size)  # the warm-up: kernels, caches, arenas
            except Exception as error:  # a backend that cannot run here is skipped, not fatal
                logger.warning("backend %s (%d threads) unavailable: %s", name, count, error)
                failed.append(Measurement(name, count, None, None, threshold, False, str(error)))
                continue
            loaded.append((candidate, threshold, vectors))
    reference = next((vectors for candidate, _, vectors in loaded if candidate.name == REFERENCE_VARIANT), None)
    parity: list[tuple[float | None, bool]] = []  # (min cosine to the reference, passed) per loaded candidate
    for _, threshold, vectors in loaded:
        min_cosine = ParityStats.of(reference, vectors).min_cosine if reference is not None else None
        parity.append((min_cosine, threshold is None or (min_cosine is not None and min_cosine >= threshold)))
    speeds: list[list[float]] = [[] for _ in loaded]
    timed = [i for i, (_, passed) in enumerate(parity) if passed]  # a rejected candidate is not timed
    for _ in range(rounds):
        for i in timed:
            speeds[i].append(_timed_round(loaded[i][0], texts, batch_size)[1])
        leader = max((max(speeds[i]) for i in timed), default=0.0)
        timed = [i for i in timed if max(speeds[i]) * OUT_OF_REACH >= leader]
    measurements = list(failed)
    for (candidate, threshold, _), (min_cosine, passed), speed in zip(loaded, parity, speeds, strict=True):
        measurements.append(Measurement(candidate.name, candidate.threads, max(speed, default=None), min_cosine,
                                        threshold, passed, rounds_texts_per_s=tuple(speed)))
    try:
        chosen, reason = decide(measurements, pinned)
    except BackendError as error:
        raise BackendError(f"{model_dir}: {error}") from error
    backend = next(c for c, _, _ in loaded if (c.name, c.threads) == (chosen.backend, chosen.threads))
    if backend.name.startswith("torch"):
        set_torch_threads(backend.threads)  # the measurements above left it at the last count timed
    logger.info("backend %s with %d threads, measured in %.1fs: %s", backend.name, backend.threads,
                time.perf_counter() - started, reason)
    return BackendChoice(backend, measurements, reason)
