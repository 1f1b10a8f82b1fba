"""onnx_model and faiss_index materialized for real: a real model, real papers, real checks; then what
the service would pick from the Dagster instance they were recorded in."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from arxiv_assets.assets.data import splits
from arxiv_assets.assets.export import FaissIndexConfig, OnnxModelConfig, faiss_index, onnx_model, parity_sample
from arxiv_assets.assets.promotion import promoted_model
from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, encode, load_model, resolve_model_source
from arxiv_assets.ml.export import (
    ExportError,
    OnnxExport,
    ParityStats,
    encode_variant,
    load_variant,
    model_fingerprint,
    quantization_target,
)
from arxiv_assets.ml.hardware import cpu_flags
from arxiv_assets.ml.index import HnswOptions, PaperIndex, build_index, recall_at_k
from arxiv_assets.ml.splits import make_splits
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.resources.artifact_store import ArtifactIOManager, ArtifactStore
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE
from serving.resolution import Resolver

PARITY_TEXTS = 64  # the asset's default is 256; 64 keeps this test to about a minute on 2 cores


@dataclass
class Pipeline:
    home: Path
    base_uri: str
    instance: dg.DagsterInstance
    splits: pd.DataFrame
    model_dir: Path  # a copy of what `promoted_model` holds, for reference embeddings

    def materialize(self, assets, run_config: dict) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            # the real upstream assets, read from the store (not re-run): their stored versions are the inputs
            [promoted_model.to_source_asset(), splits.to_source_asset(), *assets], selection=assets,
            instance=self.instance, raise_on_error=False,
            resources={"io_manager": ArtifactIOManager(base_uri=self.base_uri)},
            run_config=dg.RunConfig(ops=run_config),
        )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    """``promoted_model`` (the bundled all-MiniLM-L6-v2, as the promotion asset would store it) and ``splits`` (real
    papers from 6 subjects) in an artifact store, plus an on-disk Dagster instance."""
    papers = pd.read_parquet(BUNDLED_SAMPLE)
    subjects = papers["primary_subject"].value_counts().index[:6]
    result = make_splits(papers[papers["primary_subject"].isin(subjects)], min_papers_per_subject=1,
                         max_papers_per_subject=24, eval_fraction=0.1, test_fraction=0.5)
    base_uri = str(tmp_path_factory.mktemp("artifacts"))
    store = ArtifactStore(base_uri)
    reference = tmp_path_factory.mktemp("reference") / "model"
    shutil.copytree(resolve_model_source(BUNDLED_BASE_MODEL), reference)
    published = tmp_path_factory.mktemp("published") / "model"
    shutil.copytree(reference, published)
    store.publish("promoted_model", published)  # what the promoted_model asset's IO manager writes
    store.publish("splits", result.papers)
    home = tmp_path_factory.mktemp("dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield Pipeline(home, base_uri, instance, result.papers, reference)


@pytest.fixture(scope="module")
def exported(pipeline: Pipeline) -> dg.ExecuteInProcessResult:
    result = pipeline.materialize([onnx_model, faiss_index], {
        "onnx_model": OnnxModelConfig(parity_texts=PARITY_TEXTS),
        "faiss_index": FaissIndexConfig(recall_queries=50),
    })
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def materialization_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_onnx_model_passes_its_parity_checks_and_reports_speed_and_size(exported, pipeline: Pipeline):
    checks = check_results(exported)
    for name in ("onnx_fp32_parity", "onnx_int8_parity", "onnx_int8_p_at_10"):
        assert checks[name].passed, (name, checks[name].metadata)
    assert checks["onnx_fp32_parity"].metadata["min_cosine"].value >= 0.999
    assert checks["onnx_int8_parity"].metadata["min_cosine"].value >= 0.98
    assert abs(checks["onnx_int8_p_at_10"].metadata["diff_points"].value) <= 1.0

    meta = materialization_metadata(exported, "onnx_model")
    for variant in ("torch-fp32", "onnx-fp32", "onnx-int8"):
        assert meta[f"{variant}_texts_per_s"] > 0 and meta[f"{variant}_bytes"] > 1_000_000
    assert meta["onnx-int8_bytes"] < meta["onnx-fp32_bytes"]
    assert meta["quantization_target"] == quantization_target()
    assert meta["parity_texts"] == PARITY_TEXTS
    assert meta["source_model_fingerprint"] == model_fingerprint(pipeline.model_dir)

    # the stored artifact is a loadable export whose int8 variant stays close to the PyTorch model
    export = OnnxExport.read(Path(meta["uri"]) / "payload")
    texts = paper_texts(parity_sample(pipeline.splits, 8))
    reference = encode(load_model(pipeline.model_dir), texts)
    int8 = encode_variant(load_variant(export.directory, "onnx-int8"), "onnx-int8", texts)
    assert ParityStats.of(reference, int8).min_cosine >= 0.98


def test_faiss_index_holds_every_paper_and_finds_each_one_first(exported, pipeline: Pipeline):
    assert check_results(exported)["ann_recall_at_10"].passed
    meta = materialization_metadata(exported, "faiss_index")
    assert meta["vectors"] == len(pipeline.splits) and meta["dim"] == 384 and meta["recall_at_10"] == 1.0
    assert meta["bytes"] > 0 and meta["build_seconds"] >= 0 and meta["kind"] == "flat"
    index = PaperIndex.load(Path(meta["uri"]) / "payload")
    assert index.meta["model_fingerprint"] == model_fingerprint(pipeline.model_dir)
    papers = pipeline.splits.iloc[[0, 7, 30]]
    hits = index.search(encode(load_model(pipeline.model_dir), paper_texts(papers)), k=5)
    assert [h[0]["id"] for h in hits] == papers["id"].tolist()
    assert [h[0]["subject"] for h in hits] == papers["primary_subject"].tolist()
    assert all(h[0]["score"] == pytest.approx(1.0, abs=1e-4) for h in hits)


def test_the_service_resolves_the_export_and_the_index_from_the_instance(exported, pipeline: Pipeline):
    resolution = Resolver(str(pipeline.home)).resolve()
    assert resolution.model.asset == "onnx_model" and resolution.model.run_id == exported.run_id
    assert resolution.index.asset == "faiss_index" and resolution.index.run_id == exported.run_id
    assert resolution.model.local_path().joinpath("onnx_export.json").is_file()


def test_a_failed_parity_check_blocks_and_the_service_keeps_the_passing_export(exported, pipeline: Pipeline):
    failing = pipeline.materialize([onnx_model], {
        "onnx_model": OnnxModelConfig(parity_texts=16, min_cosine_int8=1.01),  # unreachable: must fail
    })
    assert not failing.success
    checks = check_results(failing)
    assert not checks["onnx_int8_parity"].passed and checks["onnx_fp32_parity"].passed
    # the store's LATEST now points at the failed export; only the instance knows not to serve it
    assert materialization_metadata(failing, "onnx_model")["uri"] == ArtifactStore(pipeline.base_uri).latest_uri(
        "onnx_model")
    resolution = Resolver(str(pipeline.home)).resolve()
    assert resolution.model.run_id == exported.run_id
    assert any(failing.run_id in note and "onnx_int8_parity failed" in note for note in resolution.notes)


def test_hnsw_option_reports_recall_and_gates_on_it(exported, pipeline: Pipeline):
    config = FaissIndexConfig(kind="hnsw", splits_to_index=["test"])
    result = pipeline.materialize([faiss_index], {"faiss_index": config})
    assert result.success
    assert check_results(result)["ann_recall_at_10"].metadata["recall_at_10"].value >= 0.95
    weak = pipeline.materialize([faiss_index], {"faiss_index": FaissIndexConfig(
        kind="hnsw", hnsw_m=2, hnsw_ef_construction=4, hnsw_ef_search=1, splits_to_index=["test"])})
    assert not weak.success  # a graph this sparse misses neighbours; the blocking check stops it
    recall = check_results(weak)["ann_recall_at_10"]
    assert not recall.passed and recall.metadata["recall_at_10"].value < 0.95


def test_recall_is_measured_against_exact_search(exported):
    index = PaperIndex.load(Path(materialization_metadata(exported, "faiss_index")["uri"]) / "payload")
    vectors = index.index.reconstruct_n(0, len(index))  # real paper embeddings
    rows = np.arange(0, len(vectors), 3)
    assert recall_at_k(build_index(vectors, "flat"), vectors, rows) == 1.0
    assert recall_at_k(build_index(vectors, "hnsw"), vectors, rows) >= 0.95
    weak = build_index(vectors, "hnsw", HnswOptions(m=2, ef_construction=4, ef_search=1))
    assert recall_at_k(weak, vectors, rows) < 0.95


def test_quantization_config_follows_the_cpu_flags():
    flags = cpu_flags()
    expected = ("avx512_vnni" if {"avx512_vnni", "avx_vnni", "amx_int8"} & flags
                else "avx512" if {"avx512f", "avx512bw"} <= flags else "avx2")
    assert quantization_target() in {expected, "arm64"}


def test_an_incomplete_export_is_refused_naming_the_missing_file(exported, tmp_path: Path):
    export = OnnxExport.read(Path(materialization_metadata(exported, "onnx_model")["uri"]) / "payload")
    broken = tmp_path / "broken"
    shutil.copytree(export.directory, broken, ignore=shutil.ignore_patterns("model_qint8_*"))
    with pytest.raises(ExportError, match=r"model_qint8_\w+\.onnx is missing"):
        OnnxExport.read(broken)
    with pytest.raises(ExportError, match=r"onnx_export\.json is missing"):
        OnnxExport.read(tmp_path)  # a plain directory, no export in it
