"""ONNX exports of a saved Sentence Transformers model: the fp32 export and its int8 quantization.

Everything goes through sentence-transformers' own machinery: loading a directory with
``backend="onnx"`` exports it through Optimum, ``export_dynamic_quantized_onnx_model`` quantizes
that export to int8 with an ONNX Runtime config for the CPU this runs on. The export directory
keeps the original files next to ``onnx/``, so one artifact serves every backend::

    model.safetensors, tokenizer..., modules.json    the PyTorch model, as trained
    onnx/model.onnx                                   fp32 export
    onnx/model_qint8_<target>.onnx                    dynamic int8 quantization
    onnx_export.json                                  which files are which, and what they came from

This module needs the export tooling (Optimum, ONNX, the quantizer) and runs in the pipeline only;
reading, loading and timing an export is ``arxiv_assets.ml.variants``, which the service uses.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from arxiv_assets.ml.embedding import check_model_dir
from arxiv_assets.ml.hardware import cpu_flags, cpu_has_vnni
from arxiv_assets.ml.variants import EXPORT_MANIFEST, ExportError, OnnxExport, model_fingerprint

QuantizationTarget = Literal["arm64", "avx2", "avx512", "avx512_vnni"]

FP32_FILE = "onnx/model.onnx"
# Only MatMuls with a weight operand are quantized. Measured on 256 real arXiv abstracts (avx2 config):
# every MatMul -> min cosine to PyTorch 0.981; also leaving attention's activation x activation
# MatMuls (QK^T, scores x V: both operands re-quantized per batch) in fp32 -> 0.990 at the same speed;
# quantizing the embedding table (a Gather) as well costs another ~0.003.
DEFAULT_QUANTIZED_OPERATORS: tuple[str, ...] = ("MatMul",)


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
