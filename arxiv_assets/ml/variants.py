"""Running a saved model as one of its variants, and how close to PyTorch fp32 and how fast each is.

A variant is a precision and a runtime: PyTorch fp32/bf16/fp16 from the model's own weights, ONNX
fp32/int8 from an ONNX export, or OpenVINO fp32/bf16 (one IR, two precision hints) and static int8 from the
same export directory (``arxiv_assets.ml.export`` makes those). This module is what runs them: it reads an
export's manifest, loads a variant, encodes with it, times it and compares its embeddings with the reference.
The service imports this module, never the export tooling.

Which variant is fastest depends on the machine (AMX, VNNI, AVX-512 or plain AVX2), so speed is
measured where the model runs (``timed_encode``), never assumed.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from arxiv_assets.ml.embedding import encode
from arxiv_assets.ml.hardware import cpu_has_fast_bf16

Variant = Literal["torch-fp32", "torch-bf16", "torch-fp16", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16",
                  "openvino-int8"]
VARIANTS: tuple[str, ...] = ("torch-fp32", "torch-bf16", "torch-fp16", "onnx-fp32", "onnx-int8", "openvino-fp32",
                             "openvino-bf16", "openvino-int8")
ONNX_VARIANTS: tuple[str, ...] = ("onnx-fp32", "onnx-int8")
OPENVINO_VARIANT = "openvino-int8"
# The OpenVINO IR in fp32, compiled with the f32 or the bf16 precision hint (bf16: the CPU's native bf16 where it
# has it, else f32, see ``openvino_config``).
OPENVINO_FLOAT_VARIANTS: tuple[str, ...] = ("openvino-fp32", "openvino-bf16")
REFERENCE_VARIANT: Variant = "torch-fp32"

EXPORT_MANIFEST = "onnx_export.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class ExportError(RuntimeError):
    """An export that cannot be made or read; the message says which file and why."""


def model_fingerprint(model_dir: Path) -> str:
    """A short hash of a model's weight files: the same weights give the same fingerprint in any copy.

    The export and the FAISS index both record the fingerprint of the model they came from, so the
    service can tell whether an index was built by the model it serves.
    """
    digest = hashlib.sha256()
    weights = sorted(p for p in Path(model_dir).iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not weights:
        raise ExportError(f"{model_dir} has no PyTorch weights (*.safetensors / *.bin) to fingerprint")
    for path in weights:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def saved_fingerprint(model) -> str:
    """The fingerprint a loaded model has once saved with ``model.save``, as ``promoted_model`` stores the base
    model (saving is deterministic: the same weights give the same files, whatever max_seq_length says)."""
    with tempfile.TemporaryDirectory() as directory:
        model.save(directory)
        return model_fingerprint(Path(directory))


@dataclass(frozen=True)
class ModelExport:
    """An export directory: the PyTorch files as trained, ``onnx/`` (and ``openvino/``) beside them, and the
    manifest naming them."""

    directory: Path
    fp32_file: str
    int8_file: str
    quantization_target: str
    quantized_operators: tuple[str, ...]
    excluded_nodes: int  # MatMuls left in fp32 because neither operand is a weight
    source_fingerprint: str
    export_seconds: float
    # OpenVINO static int8 IR (``.xml``, weights in the ``.bin`` beside it); None when the export has none
    # (made without calibration texts, or before the variant existed).
    openvino_int8_file: str | None = None
    openvino_calibration_texts: int = 0
    # The OpenVINO IR in fp32 that the static int8 was quantized from; None in exports made before it was kept.
    openvino_fp32_file: str | None = None

    @property
    def variants(self) -> tuple[str, ...]:
        """The exported variants this directory holds (PyTorch's come with every model directory)."""
        return (*ONNX_VARIANTS, *(OPENVINO_FLOAT_VARIANTS if self.openvino_fp32_file else ()),
                *((OPENVINO_VARIANT,) if self.openvino_int8_file else ()))

    def file_for(self, variant: str) -> str:
        files = {"onnx-fp32": self.fp32_file, "onnx-int8": self.int8_file, OPENVINO_VARIANT: self.openvino_int8_file,
                 **dict.fromkeys(OPENVINO_FLOAT_VARIANTS, self.openvino_fp32_file)}
        if files.get(variant) is None:
            raise ExportError(f"{variant!r} is not an exported variant of {self.directory}; it has {self.variants}")
        return files[variant]

    def missing_files(self) -> list[str]:
        """``file (variants)`` for each exported file that is not in the directory."""
        by_file: dict[str, list[str]] = {}
        for variant in self.variants:
            by_file.setdefault(self.file_for(variant), []).append(variant)
        return [f"{file} ({', '.join(variants)})" for file, variants in by_file.items()
                if not (self.directory / file).is_file()]

    def file_sizes(self) -> dict[str, int]:
        """Bytes per variant (PyTorch: its weight files; OpenVINO: its graph and weights)."""
        torch_bytes = sum(p.stat().st_size for p in self.directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        sizes = {"torch-fp32": torch_bytes}
        for variant in self.variants:
            graph = self.directory / self.file_for(variant)
            sizes[variant] = sum(f.stat().st_size for f in (graph, graph.with_suffix(".bin")) if f.is_file())
        return sizes

    def write_manifest(self) -> None:
        fields = {k: v for k, v in asdict(self).items() if k != "directory"}
        fields["quantized_operators"] = list(self.quantized_operators)
        (self.directory / EXPORT_MANIFEST).write_text(json.dumps(fields, indent=2))

    @classmethod
    def read(cls, directory: Path) -> ModelExport:
        """The export in ``directory``; ``ExportError`` naming the missing file if it is incomplete."""
        manifest = Path(directory) / EXPORT_MANIFEST
        if not manifest.is_file():
            raise ExportError(f"{directory} is not an ONNX export: {EXPORT_MANIFEST} is missing")
        fields = json.loads(manifest.read_text())
        fields["quantized_operators"] = tuple(fields["quantized_operators"])
        export = cls(directory=Path(directory), **fields)
        if missing := export.missing_files():
            raise ExportError(f"{directory} is an incomplete export: {', '.join(missing)} is missing")
        return export


def is_onnx_export(directory: Path) -> bool:
    return (Path(directory) / EXPORT_MANIFEST).is_file()


def _session_options(threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def load_variant(directory: Path, variant: str, threads: int | None = None, device: str = "cpu"):
    """A ``SentenceTransformer`` running ``variant`` from a model or export directory.

    Torch variants load the PyTorch weights (reduced precision is applied at encode time, see
    ``encode_variant``); ONNX variants load their file from the export through ONNX Runtime, the
    OpenVINO variants their IR through OpenVINO (``openvino_config``).
    """
    from sentence_transformers import SentenceTransformer

    directory = Path(directory)
    if variant not in VARIANTS:
        raise ExportError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    if variant.startswith("torch"):
        if threads:
            import torch

            torch.set_num_threads(threads)
        return SentenceTransformer(str(directory), device=device)
    export = ModelExport.read(directory)
    if variant.startswith("openvino"):
        return SentenceTransformer(str(directory), backend="openvino", device="cpu",
                                   model_kwargs={"file_name": export.file_for(variant),
                                                 "ov_config": openvino_config(variant, threads)})
    return SentenceTransformer(
        str(directory), backend="onnx", device="cpu",
        model_kwargs={"file_name": export.file_for(variant), "provider": "CPUExecutionProvider",
                      "session_options": _session_options(threads)},
    )


def openvino_config(variant: str, threads: int | None) -> dict[str, str]:
    """OpenVINO's compile options for an OpenVINO variant: its floating-point layers (all of them, or those static
    int8 leaves unquantized) run in bf16 where the CPU has native bf16 (AMX or AVX512-BF16: measured +10-25 % over
    f32 for the int8 IR at the same parity, 1.7-2x for the fp32 IR, RESULTS.md "OpenVINO beside ONNX Runtime",
    "OpenVINO's bf16"), in f32 for ``openvino-fp32`` and on CPUs without native bf16 (emulated bf16 is slower than
    f32, and OpenVINO's kernels held to AVX2 refuse the hint); latency mode (one request at a time, as the batcher
    sends them)."""
    bf16 = variant != "openvino-fp32" and cpu_has_fast_bf16()
    config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


def variant_precision(variant: str) -> str:
    return variant.split("-", 1)[1] if variant.startswith("torch") else "fp32"


def encode_variant(model, variant: str, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """L2-normalized float32 embeddings from a model loaded by ``load_variant``."""
    return encode(model, texts, batch_size=batch_size, precision=variant_precision(variant))  # type: ignore[arg-type]


def timed_encode(model, variant: str, texts: Sequence[str], batch_size: int = 32,
                 warmup: int = 4) -> tuple[np.ndarray, float]:
    """Embeddings and texts/s, timed after a warm-up batch (the first call builds kernels and caches)."""
    encode_variant(model, variant, list(texts[:warmup]), batch_size)
    started = time.perf_counter()
    vectors = encode_variant(model, variant, texts, batch_size)
    return vectors, len(texts) / max(time.perf_counter() - started, 1e-9)


def cosine_to_reference(reference: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two sets of embeddings of the same texts."""
    if reference.shape != vectors.shape:
        raise ValueError(f"embeddings of different shapes: {reference.shape} vs {vectors.shape}")
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors, axis=1)
    return (reference * vectors).sum(axis=1) / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class ParityStats:
    min_cosine: float
    p1_cosine: float
    mean_cosine: float

    @classmethod
    def of(cls, reference: np.ndarray, vectors: np.ndarray) -> ParityStats:
        cosines = cosine_to_reference(reference, vectors)
        return cls(min_cosine=float(cosines.min()), p1_cosine=float(np.percentile(cosines, 1)),
                   mean_cosine=float(cosines.mean()))


def parity_sample(splits: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` test papers taken round-robin over subjects (so subject retrieval has something to find): the
    papers a variant's parity and P@10 are checked on."""
    test = splits[splits["split"] == "test"].sort_values(["primary_subject", "id"])
    if test.empty:
        raise ValueError("the splits have no test papers to check a model variant on")
    ranked = test.assign(_turn=test.groupby("primary_subject").cumcount())
    return ranked.sort_values(["_turn", "primary_subject", "id"]).head(n).drop(columns="_turn").reset_index(drop=True)
