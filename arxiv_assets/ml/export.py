"""Exports of a saved Sentence Transformers model: ONNX fp32, its int8 quantization, and OpenVINO static int8.

Everything goes through sentence-transformers' and Optimum's own machinery: loading a directory with
``backend="onnx"`` exports it through Optimum, ``export_dynamic_quantized_onnx_model`` quantizes
that export to int8 with an ONNX Runtime config for the CPU this runs on; loading it with
``backend="openvino"`` converts it to OpenVINO IR through optimum-intel, whose ``OVQuantizer`` (NNCF
post-training quantization) makes a static int8 IR calibrated on real papers. The export directory
keeps the original files next to ``onnx/`` and ``openvino/``, so one artifact serves every backend::

    model.safetensors, tokenizer..., modules.json    the PyTorch model, as trained
    onnx/model.onnx                                   fp32 export
    onnx/model_qint8_<target>.onnx                    dynamic int8 quantization
    openvino/openvino_model.{xml,bin}                 OpenVINO IR in fp32 (run in f32 or bf16), when calibration
                                                      texts are given (the OpenVINO conversion is made once, for both)
    openvino/openvino_model_qint8_static.{xml,bin}    static int8 (activations too), when calibration texts are given
    onnx_export.json                                  which files are which, and what they came from

This module needs the export tooling (Optimum, ONNX, the quantizers) and runs in the pipeline only;
reading, loading and timing an export is ``arxiv_assets.ml.variants``, which the service uses.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from arxiv_assets.ml.embedding import check_model_dir
from arxiv_assets.ml.hardware import cpu_flags, cpu_has_vnni
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.variants import EXPORT_MANIFEST, ExportError, ModelExport, model_fingerprint

QuantizationTarget = Literal["arm64", "avx2", "avx512", "avx512_vnni"]

FP32_FILE = "onnx/model.onnx"
# Only MatMuls with a weight operand are quantized. Measured on 256 real arXiv abstracts (avx2 config):
# every MatMul -> min cosine to PyTorch 0.981; also leaving attention's activation x activation
# MatMuls (QK^T, scores x V: both operands re-quantized per batch) in fp32 -> 0.990 at the same speed;
# quantizing the embedding table (a Gather) as well costs another ~0.003.
DEFAULT_QUANTIZED_OPERATORS: tuple[str, ...] = ("MatMul",)
OPENVINO_INT8_FILE = "openvino/openvino_model_qint8_static.xml"
OPENVINO_FP32_FILE = "openvino/openvino_model.xml"
# Calibration texts are tokenized to this length: the activations' ranges NNCF measures are those of full
# abstracts (most run past 128 tokens), as the service sees them.
CALIBRATION_SEQ_LENGTH = 256


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
    calibration_texts: Sequence[str] = (),
) -> ModelExport:
    """Copy the model to ``out_dir`` (new or empty) and add its fp32 ONNX export, a dynamic int8 quantization and,
    given ``calibration_texts`` (real papers the checks do not use), OpenVINO IRs in fp32 and in static int8."""
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
    if calibration_texts:
        export_openvino(out_dir, calibration_texts)
    export = ModelExport(
        directory=out_dir, fp32_file=FP32_FILE, int8_file=int8_file, quantization_target=target,
        quantized_operators=tuple(quantized_operators), excluded_nodes=len(excluded),
        source_fingerprint=model_fingerprint(out_dir),
        export_seconds=round(time.perf_counter() - started, 2),
        openvino_int8_file=OPENVINO_INT8_FILE if calibration_texts else None,
        openvino_calibration_texts=len(calibration_texts),
        openvino_fp32_file=OPENVINO_FP32_FILE if calibration_texts else None,
    )
    if missing := export.missing_files():
        raise ExportError(f"the export did not write {', '.join(missing)} into {out_dir}")
    export.write_manifest()
    return export


def calibration_texts(splits: pd.DataFrame, n: int = 300, exclude: Collection[str] = ()) -> list[str]:
    """``n`` train-split papers (the same ones for the same splits) as the texts that calibrate static int8, never
    one of ``exclude`` (the papers the variants' parity and P@10 are checked on). Splits with no train paper (a
    corpus scored, not trained on) lend any other papers."""
    candidates = splits[~splits["id"].isin(list(exclude))]
    train = candidates[candidates["split"] == "train"]
    chosen = train if not train.empty else candidates
    if chosen.empty:
        raise ValueError(f"no paper to calibrate a quantized model on: the splits' {len(splits)} papers are all "
                         f"parity papers; check parity on fewer (parity_texts) or add papers")
    return paper_texts(chosen.sample(n=min(n, len(chosen)), random_state=0))


def export_openvino(model_dir: Path, calibration_texts: Sequence[str]) -> None:
    """Write ``OPENVINO_FP32_FILE`` and ``OPENVINO_INT8_FILE`` (each with its ``.bin``) into ``model_dir``: the model
    converted to OpenVINO IR, as it is and quantized to int8, weights and activations, by NNCF post-training
    quantization (optimum-intel's transformer preset: smooth quant, fast bias correction) with activation ranges
    measured on ``calibration_texts``.

    sentence-transformers' ``export_static_quantized_openvino_model`` does the same but calibrates on a Hugging
    Face Hub dataset (GLUE SST-2 by default); this calibrates on the papers the model will embed, offline.
    """
    from datasets import Dataset
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers import SentenceTransformer

    # Converted from the PyTorch weights in memory (optimum-intel), once for both IRs.
    fp32 = SentenceTransformer(str(model_dir), backend="openvino", device="cpu",
                               model_kwargs={"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}})
    tokens = fp32.tokenizer(list(calibration_texts), padding="max_length", truncation=True,
                            max_length=min(CALIBRATION_SEQ_LENGTH, fp32.max_seq_length))
    config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(calibration_texts)))
    with tempfile.TemporaryDirectory() as work:
        fp32.transformers_model.save_pretrained(Path(work) / "fp32")
        _move_ir(Path(work) / "fp32", Path(model_dir) / OPENVINO_FP32_FILE)
        OVQuantizer.from_pretrained(fp32.transformers_model).quantize(
            Dataset.from_dict(dict(tokens)), save_directory=Path(work) / "int8", ov_config=config)
        _move_ir(Path(work) / "int8", Path(model_dir) / OPENVINO_INT8_FILE)


def _move_ir(written_to: Path, target: Path) -> None:
    """Move the ``openvino_model.{xml,bin}`` optimum-intel wrote under ``written_to`` to ``target`` (``.xml``)."""
    # optimum-intel writes into an openvino/ subfolder of the save directory (1.27) or the folder itself.
    written = next(written_to.rglob("openvino_model.xml"), None)
    if written is None:
        raise ExportError(f"OpenVINO wrote no openvino_model.xml: {sorted(written_to.rglob('*'))}")
    target.parent.mkdir(exist_ok=True)
    for suffix in (".bin", ".xml"):  # the graph last: its presence means both files are complete
        shutil.move(written.with_suffix(suffix), target.with_suffix(suffix))
