"""Real models, real exports and real releases for the service tests.

* ``model_dir``: a copy of the bundled all-MiniLM-L6-v2 (a real Sentence Transformers directory).
* ``onnx_dir``: that model exported by ``arxiv_assets.ml.export.export_onnx`` (ONNX fp32 + int8, OpenVINO fp32 and
  static int8 calibrated on 16 real papers), once per session.
* ``index_dir``: a real FAISS index of real bundled papers embedded by ``model_dir``.
* ``publish_release``: stores a model and an index through the project's ``ArtifactStore`` and moves
  ``CURRENT`` to a release of them through ``ReleaseStore``, the two calls the ``release`` asset makes
  (after its gates, which the graph tests exercise) and exactly what the service reads.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, encode, load_model, resolve_model_source
from arxiv_assets.ml.export import export_onnx
from arxiv_assets.ml.index import paper_index
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.variants import model_fingerprint
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets.storage.releases import Release, ReleaseStore

SHORT_TEXTS = ["Graph neural networks for molecules", "Dark matter halos in dwarf galaxies",
               "A proof of the twin prime conjecture", "Reinforcement learning for robot grasping"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("models") / "minilm"
    shutil.copytree(resolve_model_source(BUNDLED_BASE_MODEL), target)
    return target


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    calibration = paper_texts(pd.read_parquet(BUNDLED_SAMPLE).sort_values("id").tail(16))
    return export_onnx(model_dir, tmp_path_factory.mktemp("exports") / "minilm-onnx",
                       calibration_texts=calibration).directory


@pytest.fixture(scope="session")
def index_papers() -> pd.DataFrame:
    """24 real papers, 4 per subject from 6 subjects, shortened so embedding them is quick."""
    papers = pd.read_parquet(BUNDLED_SAMPLE)
    subjects = papers["primary_subject"].value_counts().index[:6]
    chosen = papers[papers["primary_subject"].isin(subjects)].sort_values("id").groupby("primary_subject").head(4)
    return chosen.assign(abstract=chosen["abstract"].str.slice(0, 300)).reset_index(drop=True)


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, index_papers: pd.DataFrame) -> Path:
    vectors = encode(load_model(model_dir), paper_texts(index_papers))
    built = paper_index(vectors, index_papers, model_fingerprint=model_fingerprint(model_dir))
    return built.save(tmp_path_factory.mktemp("indexes") / "index")


def store_copy(store: ArtifactStore, key: str, source: Path) -> str:
    """Publish a copy of the directory ``source`` as a new version of ``key`` (publishing consumes its input; the
    staging directory goes with it, so no test run leaves one in the machine's temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="test-artifact-") as staging:
        payload = Path(staging) / "payload"
        shutil.copytree(source, payload)
        return store.publish(key, payload)


def publish_release(root: Path, model: Path, index: Path | None = None, model_fingerprint_claimed: str | None = None,
                    decision: str = "challenger") -> Release:
    """A release of ``model`` (and ``index``) under ``root``/artifacts, CURRENT moved to it under ``root``/releases."""
    store, releases = ArtifactStore(str(root / "artifacts")), ReleaseStore(str(root / "releases"))
    return releases.publish(Release(
        release_id=Release.new_id(), model_uri=store_copy(store, "onnx_model", model),
        model_fingerprint=model_fingerprint_claimed or model_fingerprint(model),
        index_uri=store_copy(store, "faiss_index", index) if index else None, decision=decision,
        reason="published by a test", replaces=releases.current_id(),
    ))


def own_embeddings(model_dir: Path, texts: list[str]) -> np.ndarray:
    """What the model itself says, through sentence-transformers (PyTorch fp32)."""
    return encode(load_model(model_dir), texts)


def assert_embeddings_match(vectors: np.ndarray, expected: np.ndarray, backend: str) -> None:
    """What the service guarantees for the backend it chose: fp32 backends reproduce PyTorch fp32 to
    1e-4; reduced-precision ones (picked where the CPU runs bf16 or int8 fast) pass the service's own
    parity bar, cosine >= 0.98 to PyTorch fp32 (``serving.backends.choose_backend``)."""
    if backend.endswith("fp32"):
        np.testing.assert_allclose(vectors, expected, atol=1e-4)
    else:
        assert (vectors * expected).sum(axis=1).min() >= 0.98
