"""ONNX exports of a saved Sentence Transformers model, and how close to it and how fast they are.

Everything goes through sentence-transformers' own machinery: loading a directory with
``backend="onnx"`` exports it through Optimum, ``export_dynamic_quantized_onnx_model`` quantizes
that export to int8 with an ONNX Runtime config for the CPU this runs on. The export directory
keeps the original files next to ``onnx/``, so one artifact serves every backend::

    model.safetensors, tokenizer..., modules.json    the PyTorch model, as trained
    onnx/model.onnx                                   fp32 export
    onnx/model_qint8_<target>.onnx                    dynamic int8 quantization
    onnx_export.json                                  which files are which, and what they came from

Which variant is fastest depends on the machine (AMX, VNNI, AVX-512 or plain AVX2), so speed is
measured where the model runs (``timed_encode``), never assumed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from arxiv_assets.ml.embedding import check_model_dir, encode
from arxiv_assets.ml.hardware import cpu_flags, cpu_has_vnni

QuantizationTarget = Literal["arm64", "avx2", "avx512", "avx512_vnni"]
Variant = Literal["torch-fp32", "torch-bf16", "torch-fp16", "onnx-fp32", "onnx-int8"]
VARIANTS: tuple[str, ...] = ("torch-fp32", "torch-bf16", "torch-fp16", "onnx-fp32", "onnx-int8")
ONNX_VARIANTS: tuple[str, ...] = ("onnx-fp32", "onnx-int8")
REFERENCE_VARIANT: Variant = "torch-fp32"

FP32_FILE = "onnx/model.onnx"
EXPORT_MANIFEST = "onnx_export.json"
# Only MatMuls with a weight operand are quantized. Measured on 256 real arXiv abstracts (avx2 config):
# every MatMul -> min cosine to PyTorch 0.981; also leaving attention's activation x activation
# MatMuls (QK^T, scores x V: both operands re-quantized per batch) in fp32 -> 0.990 at the same speed;
# quantizing the embedding table (a Gather) as well costs another ~0.003.
DEFAULT_QUANTIZED_OPERATORS: tuple[str, ...] = ("MatMul",)
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class ExportError(RuntimeError):
    """An export that cannot be made or read; the message says which file and why."""


def quantization_target() -> QuantizationTarget:
    """The ONNX Runtime dynamic-quantization config for this CPU, from its flags at run time.

    VNNI (AVX512-VNNI, AVX-VNNI or AMX-INT8) runs signed int8 weights natively; plain AVX-512
    takes the avx512 config; anything else x86 gets avx2 (unsigned weights, which avoid the
    int16 saturation of AVX2's u8s8 multiply-add).
    """
    if platform.machine().lower() in {"arm64", "aarch64"}:
        return "arm64"
    if cpu_has_vnni():
        return "avx512_vnni"
    if "avx512f" in cpu_flags() and "avx512bw" in cpu_flags():
        return "avx512"
    return "avx2"


def int8_file_for(target: str) -> str:
    return f"onnx/model_qint8_{target}.onnx"


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


@dataclass(frozen=True)
class OnnxExport:
    directory: Path
    fp32_file: str
    int8_file: str
    quantization_target: str
    quantized_operators: tuple[str, ...]
    excluded_nodes: int  # MatMuls left in fp32 because neither operand is a weight
    source_fingerprint: str
    export_seconds: float

    def file_for(self, variant: str) -> str:
        if variant == "onnx-fp32":
            return self.fp32_file
        if variant == "onnx-int8":
            return self.int8_file
        raise ExportError(f"{variant!r} is not an ONNX variant; choose one of {ONNX_VARIANTS}")

    def file_sizes(self) -> dict[str, int]:
        """Bytes per variant (PyTorch: its weight files)."""
        torch_bytes = sum(p.stat().st_size for p in self.directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        return {
            "torch-fp32": torch_bytes,
            "onnx-fp32": (self.directory / self.fp32_file).stat().st_size,
            "onnx-int8": (self.directory / self.int8_file).stat().st_size,
        }

    def write_manifest(self) -> None:
        fields = {k: v for k, v in asdict(self).items() if k != "directory"}
        fields["quantized_operators"] = list(self.quantized_operators)
        (self.directory / EXPORT_MANIFEST).write_text(json.dumps(fields, indent=2))

    @classmethod
    def read(cls, directory: Path) -> OnnxExport:
        """The export in ``directory``; ``ExportError`` naming the missing file if it is incomplete."""
        manifest = Path(directory) / EXPORT_MANIFEST
        if not manifest.is_file():
            raise ExportError(f"{directory} is not an ONNX export: {EXPORT_MANIFEST} is missing")
        fields = json.loads(manifest.read_text())
        fields["quantized_operators"] = tuple(fields["quantized_operators"])
        export = cls(directory=Path(directory), **fields)
        for name in (export.fp32_file, export.int8_file):
            if not (export.directory / name).is_file():
                raise ExportError(f"{directory} is an incomplete ONNX export: {name} is missing")
        return export


def is_onnx_export(directory: Path) -> bool:
    return (Path(directory) / EXPORT_MANIFEST).is_file()


def activation_matmuls(onnx_file: Path) -> list[str]:
    """Names of the MatMul nodes of which no operand is a stored weight (attention's QK^T and scores x V)."""
    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    weights = {initializer.name for initializer in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and not weights.intersection(node.input)]


def export_onnx(
    model_dir: Path,
    out_dir: Path,
    target: QuantizationTarget | None = None,
    quantized_operators: Sequence[str] = DEFAULT_QUANTIZED_OPERATORS,
) -> OnnxExport:
    """Copy the model to ``out_dir`` (new or empty) and add its fp32 ONNX export and a dynamic int8 quantization."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    check_model_dir(Path(model_dir))
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} is not empty; export into a new or empty directory")
    started = time.perf_counter()
    shutil.copytree(model_dir, out_dir, ignore=shutil.ignore_patterns("onnx", EXPORT_MANIFEST), dirs_exist_ok=True)
    target = target or quantization_target()
    # No model.onnx yet, so sentence-transformers exports one through Optimum while loading.
    onnx_model = SentenceTransformer(str(out_dir), backend="onnx", device="cpu",
                                     model_kwargs={"provider": "CPUExecutionProvider"})
    onnx_model.save_pretrained(str(out_dir))  # writes onnx/model.onnx next to the original files
    excluded = activation_matmuls(out_dir / FP32_FILE)
    config = getattr(AutoQuantizationConfig, target)(is_static=False, operators_to_quantize=list(quantized_operators),
                                                     nodes_to_exclude=excluded)
    int8_file = int8_file_for(target)
    export_dynamic_quantized_onnx_model(onnx_model, config, str(out_dir),
                                        file_suffix=Path(int8_file).stem.removeprefix("model_"))
    export = OnnxExport(
        directory=out_dir, fp32_file=FP32_FILE, int8_file=int8_file, quantization_target=target,
        quantized_operators=tuple(quantized_operators), excluded_nodes=len(excluded),
        source_fingerprint=model_fingerprint(out_dir),
        export_seconds=round(time.perf_counter() - started, 2),
    )
    for name in (export.fp32_file, export.int8_file):
        if not (out_dir / name).is_file():
            raise ExportError(f"the export did not write {name} into {out_dir}")
    export.write_manifest()
    return export


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
    ``encode_variant``); ONNX variants load their file from the export through ONNX Runtime.
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
    export = OnnxExport.read(directory)
    return SentenceTransformer(
        str(directory), backend="onnx", device="cpu",
        model_kwargs={"file_name": export.file_for(variant), "provider": "CPUExecutionProvider",
                      "session_options": _session_options(threads)},
    )


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
