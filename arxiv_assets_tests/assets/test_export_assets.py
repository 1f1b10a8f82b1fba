"""onnx_model, paper_embeddings, faiss_index and release materialized for real: a real model, real papers,
real checks; then what the service resolves from the release pointer, and what the release refuses."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from arxiv_assets.assets.data import monthly_partitions, splits
from arxiv_assets.assets.export import (
    ONNX_CHECKS,
    FaissIndexConfig,
    OnnxModelConfig,
    PaperEmbeddingsConfig,
    embedding_variant,
    faiss_index,
    onnx_model,
    paper_embeddings,
)
from arxiv_assets.assets.promotion import promoted_model
from arxiv_assets.assets.release import release
from arxiv_assets.assets.scoring import score_models
from arxiv_assets.ml import export as export_module
from arxiv_assets.ml import hardware
from arxiv_assets.ml.embedding import (
    BUNDLED_BASE_MODEL,
    EMBEDDING_COLUMNS,
    embedding_rows,
    encode,
    load_model,
    resolve_model_source,
)
from arxiv_assets.ml.export import calibration_texts, quantization_target
from arxiv_assets.ml.hardware import cpu_has_fast_bf16
from arxiv_assets.ml.index import HnswOptions, PaperIndex, build_index, recall_at_k
from arxiv_assets.ml.splits import SplitSettings, make_splits
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.variants import (
    ExportError,
    ModelExport,
    ParityStats,
    encode_variant,
    load_variant,
    model_fingerprint,
    parity_sample,
)
from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.resources.releases import Releases
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets.storage.releases import Promotion, ReleaseStore, write_promotion
from arxiv_assets_tests.conftest import (
    SAMPLE_FIRST_MONTH,
    SAMPLE_LAST_MONTH,
    partition_range_tags,
    run_error_text,
)
from serving.resolution import Resolver

PARITY_TEXTS = 64  # the asset's default is 256; 64 keeps this test to about a minute on 2 cores
CALIBRATION_TEXTS = 32  # the asset's default is 300; NNCF measures activation ranges on these


@dataclass
class Pipeline:
    home: Path
    base_uri: str
    instance: dg.DagsterInstance
    splits: pd.DataFrame
    model_dir: Path  # a copy of what `promoted_model` holds, for reference embeddings

    @property
    def releases(self) -> ReleaseStore:
        return ReleaseStore(f"{self.base_uri}/releases")

    def materialize(self, assets, run_config: dict | None = None, tags: dict | None = None
                    ) -> dg.ExecuteInProcessResult:
        upstream = [promoted_model, splits, score_models, onnx_model, paper_embeddings, faiss_index]
        return dg.materialize(
            # the real upstream assets, read from the store (not re-run): their stored versions are the inputs
            [*(s for a in upstream if a not in assets for s in a.to_source_assets()), *assets], selection=assets,
            instance=self.instance, raise_on_error=False,
            resources={"io_manager": ArtifactIOManager(base_uri=self.base_uri),
                       "releases": Releases(base_uri=f"{self.base_uri}/releases")},
            run_config=dg.RunConfig(ops=run_config or {}), tags=tags,
        )

    def embed(self, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        """paper_embeddings over every month of the sample, in one run (the local single-run backfill)."""
        return self.materialize([paper_embeddings], run_config,
                                tags=partition_range_tags(SAMPLE_FIRST_MONTH, SAMPLE_LAST_MONTH))

    def copy(self, target: Path) -> Pipeline:
        """The same store (artifacts and releases) copied, for a test that publishes bad versions into it."""
        shutil.copytree(self.base_uri, target)
        return Pipeline(self.home, str(target), dg.DagsterInstance.ephemeral(), self.splits, self.model_dir)


EVALUATED = 10  # papers the evaluation encoded with the promoted model (and 5 with another model)


def evaluation_embeddings(papers: pd.DataFrame, model_dir: Path, fingerprint: str) -> pd.DataFrame:
    """What score_models stores: the first papers' vectors by the promoted model, then other papers' by another."""
    evaluated, other = papers.head(EVALUATED), papers.iloc[EVALUATED:EVALUATED + 5]
    return pd.concat([
        embedding_rows(evaluated["id"], paper_texts(evaluated), encode(load_model(model_dir), paper_texts(evaluated)),
                       fingerprint),
        embedding_rows(other["id"], paper_texts(other), np.ones((len(other), 384), np.float32), "another-model"),
    ], ignore_index=True)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    """``promoted_model`` (the bundled all-MiniLM-L6-v2, as the promotion asset would store it) and ``splits`` (real
    papers from 6 subjects) in an artifact store, plus an on-disk Dagster instance."""
    papers = pd.read_parquet(BUNDLED_SAMPLE)
    subjects = papers["primary_subject"].value_counts().index[:6]
    result = make_splits(papers[papers["primary_subject"].isin(subjects)], SplitSettings(
        min_papers_per_subject=1, max_papers_per_subject=24, eval_fraction=0.1, test_fraction=0.5,
        probe_papers_per_subject=None, unseen_subject_fraction=0.0, unseen_papers_per_subject=None, new_months=0))
    base_uri = str(tmp_path_factory.mktemp("artifacts"))
    store = ArtifactStore(base_uri)
    reference = tmp_path_factory.mktemp("reference") / "model"
    shutil.copytree(resolve_model_source(BUNDLED_BASE_MODEL), reference)
    published = tmp_path_factory.mktemp("published") / "model"
    shutil.copytree(reference, published)
    fingerprint = model_fingerprint(reference)
    write_promotion(published, Promotion("challenger", "passed every gate (test)", fingerprint, [], None))
    store.publish("promoted_model", published)  # what the promoted_model asset's IO manager writes
    for report in ("ir_metrics", "classifier_metrics"):  # the evaluation's verdict on that model
        report_dir = tmp_path_factory.mktemp(report)
        (report_dir / "metrics.json").write_text(json.dumps({
            "model_fingerprint": fingerprint, "gates": [], "served_release": "",
            "headline": {"fine-tuned": {"test/P@10": 0.6}, "base": {"test/P@10": 0.5}}}))
        store.publish(report, report_dir)
    store.publish("evaluation_embeddings", evaluation_embeddings(result.papers, reference, fingerprint))
    store.publish("splits", result.papers)
    home = tmp_path_factory.mktemp("dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield Pipeline(home, base_uri, instance, result.papers, reference)


@pytest.fixture(scope="module")
def exported(pipeline: Pipeline) -> dg.ExecuteInProcessResult:
    """One run, as the backfill would order it: the export, every month's embeddings, the index."""
    result = pipeline.materialize([onnx_model, paper_embeddings, faiss_index], {
        "onnx_model": OnnxModelConfig(parity_texts=PARITY_TEXTS, calibration_texts=CALIBRATION_TEXTS),
        "faiss_index": FaissIndexConfig(recall_queries=50),
    }, tags=partition_range_tags(SAMPLE_FIRST_MONTH, SAMPLE_LAST_MONTH))
    assert result.success, run_error_text(result)
    return result


def materialization_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_onnx_model_passes_its_parity_checks_and_reports_speed_and_size(exported, pipeline: Pipeline):
    checks = check_results(exported)
    for name in ONNX_CHECKS:
        assert checks[name].passed, (name, checks[name].metadata)
    for variant in ("onnx_fp32", "openvino_fp32", "openvino_bf16"):  # bf16 accumulates in f32: fp32's bar
        assert checks[f"{variant}_parity"].metadata["min_cosine"].value >= 0.999
    for variant in ("onnx_int8", "openvino_int8"):
        assert checks[f"{variant}_parity"].metadata["min_cosine"].value >= 0.98
        assert abs(checks[f"{variant}_p_at_10"].metadata["diff_points"].value) <= 1.0

    meta = materialization_metadata(exported, "onnx_model")
    for variant in ("torch-fp32", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16", "openvino-int8"):
        assert meta[f"{variant}_texts_per_s"] > 0 and meta[f"{variant}_bytes"] > 1_000_000
    # int8 weights: a quarter of fp32's (OpenVINO) or less than fp32's (ONNX Runtime keeps some tensors fp32)
    assert meta["openvino-int8_bytes"] < meta["onnx-int8_bytes"] < meta["onnx-fp32_bytes"]
    # the two OpenVINO float variants are one fp32 IR (no weight stored in a narrower type)
    assert meta["openvino-fp32_bytes"] == meta["openvino-bf16_bytes"] > 0.9 * meta["onnx-fp32_bytes"]
    assert meta["quantization_target"] == quantization_target()
    native_bf16 = "bf16" if cpu_has_fast_bf16() else "f32"
    assert meta["openvino_precision_hints"] == {"openvino-fp32": "f32", "openvino-bf16": native_bf16,
                                                "openvino-int8": native_bf16}
    assert meta["parity_texts"] == PARITY_TEXTS and meta["openvino_calibration_texts"] == CALIBRATION_TEXTS
    assert meta["source_model_fingerprint"] == model_fingerprint(pipeline.model_dir)

    # the stored artifact is a loadable export whose int8 variants stay close to the PyTorch model
    export = ModelExport.read(Path(meta["uri"]) / "payload")
    assert export.variants == ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16", "openvino-int8")
    texts = paper_texts(parity_sample(pipeline.splits, 8))
    reference = encode(load_model(pipeline.model_dir), texts)
    for variant in ("onnx-int8", "openvino-int8"):
        int8 = encode_variant(load_variant(export.directory, variant), variant, texts)
        assert ParityStats.of(reference, int8).min_cosine >= 0.98, variant
    # OpenVINO's static int8 multiplies every weight in int8: 6 projections in each of the 6 layers
    matmuls = int8_weight_matmuls(export.directory / export.file_for("openvino-int8"))
    assert len(matmuls) == 6 * 6 and all(matmuls.values()), sorted(name for name, int8 in matmuls.items() if not int8)


def int8_weight_matmuls(ir_file: Path) -> dict[str, bool]:
    """Each MatMul of an OpenVINO IR, and whether an int8 constant (a quantized weight) feeds it."""
    import openvino as ov

    def int8_upstream(node, hops: int = 4) -> bool:
        if node.get_type_name() == "Constant" and node.get_element_type() in (ov.Type.i8, ov.Type.u8):
            return True
        return hops > 0 and any(int8_upstream(i.get_source_output().get_node(), hops - 1) for i in node.inputs())

    model = ov.Core().read_model(str(ir_file))
    return {op.get_friendly_name(): int8_upstream(op) for op in model.get_ops() if op.get_type_name() == "MatMul"}


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
    # the stored vectors come from the export variant that passed parity (int8 where it is fastest): cosine to
    # the PyTorch fp32 query of the same text is at least the parity bar, not exactly 1
    assert all(h[0]["score"] >= OnnxModelConfig().min_cosine_int8 for h in hits)


@pytest.fixture(scope="module")
def released(exported, pipeline: Pipeline) -> dg.ExecuteInProcessResult:
    result = pipeline.materialize([release])
    assert result.success, run_error_text(result)
    return result


def test_release_points_the_service_at_the_export_and_the_index(released, exported, pipeline: Pipeline):
    meta = materialization_metadata(released, "release")
    assert meta["moved"] is True and meta["decision"] == "challenger" and meta["replaces"] == ""
    resolution = Resolver(f"{pipeline.base_uri}/releases").resolve()
    assert resolution.release.release_id == meta["release_id"]
    assert resolution.model.uri == materialization_metadata(exported, "onnx_model")["uri"]
    assert resolution.index.uri == materialization_metadata(exported, "faiss_index")["uri"]
    assert resolution.model.local_path().joinpath("onnx_export.json").is_file()
    assert resolution.release.model_fingerprint == model_fingerprint(pipeline.model_dir)
    again = pipeline.materialize([release])  # nothing new to release: the pointer stays
    assert again.success and materialization_metadata(again, "release")["moved"] is False
    assert pipeline.releases.current_id() == meta["release_id"]


def test_an_export_whose_parity_check_failed_is_never_released(released, pipeline: Pipeline, tmp_path: Path):
    copy = pipeline.copy(tmp_path / "store")
    current = copy.releases.current_id()
    failing = copy.materialize([onnx_model], {
        "onnx_model": OnnxModelConfig(parity_texts=16, calibration_texts=16,
                                    min_cosine_int8=1.01),  # unreachable: must fail
    })
    assert not failing.success and not check_results(failing)["onnx_int8_parity"].passed
    # The failed export is stored (the store's LATEST names it); a release in another run reads its checks.
    attempt = copy.materialize([release])
    assert not attempt.success
    assert "blocking check onnx_int8_parity failed" in run_error_text(attempt)
    assert copy.releases.current_id() == current  # the service keeps serving the release it had


def test_an_index_built_by_another_model_is_never_released(released, pipeline: Pipeline, tmp_path: Path):
    copy = pipeline.copy(tmp_path / "store")
    current = copy.releases.current_id()
    other = load_model(pipeline.model_dir)
    other[0].auto_model.embeddings.word_embeddings.weight.data[0] += 1.0  # other weights, another fingerprint
    other.save(str(tmp_path / "other-model"))
    # promoted after the same evaluation (the reports judged the reference model), then indexed alone
    write_promotion(tmp_path / "other-model", Promotion("challenger", "test", model_fingerprint(pipeline.model_dir),
                                                        [], None))
    ArtifactStore(copy.base_uri).publish("promoted_model", tmp_path / "other-model")
    # The stored embeddings are the export's model's: the index refuses them, naming the months to redo.
    index = copy.materialize([faiss_index], {"faiss_index": FaissIndexConfig(recall_queries=20)})
    assert not index.success
    assert "embedded by another model than the promoted one" in run_error_text(index)
    assert "materialize paper_embeddings for months ['2025-" in run_error_text(index)
    attempt = copy.materialize([release])  # the export is still the old model's
    assert not attempt.success
    assert "onnx_model" in run_error_text(attempt) and "not the promoted model" in run_error_text(attempt)
    assert copy.releases.current_id() == current


def test_each_month_holds_its_own_papers_embedded_by_the_exported_model(exported, pipeline: Pipeline):
    store = ArtifactStore(pipeline.base_uri)
    fingerprint = model_fingerprint(pipeline.model_dir)
    months = {e.partition: e for e in exported.get_asset_materialization_events()
              if e.asset_key == dg.AssetKey("paper_embeddings")}
    assert set(months) == set(monthly_partitions.get_partition_keys_in_range(
        dg.PartitionKeyRange(SAMPLE_FIRST_MONTH, SAMPLE_LAST_MONTH)))
    stored = {month: store.load_latest(f"paper_embeddings/{month}") for month in months}
    assert sum(len(frame) for frame in stored.values()) == len(pipeline.splits)
    published = pipeline.splits.set_index("id")["published"]
    for month, frame in stored.items():
        assert list(frame.columns) == list(EMBEDDING_COLUMNS)
        assert published[frame["id"]].str.startswith(month[:7]).all(), month
        assert (frame["model_fingerprint"] == fingerprint).all()
    # The vectors are the model's own (the variant that passed parity), within the int8 parity bar.
    sample = pipeline.splits.head(8)
    by_id = pd.concat(stored.values()).set_index("id")["embedding"]
    reference = encode(load_model(pipeline.model_dir), paper_texts(sample))
    assert ParityStats.of(reference, np.stack(by_id[sample["id"]].to_numpy())).min_cosine >= 0.98


def embedding_counts(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    """Papers encoded and reused over every month the run materialized (each month's own metadata)."""
    events = [e.materialization.metadata for e in result.get_asset_materialization_events()
              if e.asset_key == dg.AssetKey("paper_embeddings")]
    return {name: sum(meta[name].value for meta in events) for name in ("encoded", "reused")}


def test_papers_the_evaluation_encoded_with_the_promoted_model_are_not_encoded_again(exported, pipeline: Pipeline):
    assert embedding_counts(exported) == {"encoded": len(pipeline.splits) - EVALUATED, "reused": EVALUATED}
    store = ArtifactStore(pipeline.base_uri)
    months = {e.partition for e in exported.get_asset_materialization_events()
              if e.asset_key == dg.AssetKey("paper_embeddings")}
    stored = pd.concat(store.load_latest(f"paper_embeddings/{month}") for month in months).set_index("id")
    evaluated = store.load_latest("evaluation_embeddings").set_index("id")
    same_model = evaluated[evaluated["model_fingerprint"] == model_fingerprint(pipeline.model_dir)]
    for paper, vector in same_model["embedding"].items():  # the evaluation's vectors, as they were
        assert np.array_equal(stored.loc[paper, "embedding"], vector)
    for paper, vector in evaluated.loc[evaluated.index.difference(same_model.index), "embedding"].items():
        assert not np.array_equal(stored.loc[paper, "embedding"], vector)  # another model's: encoded anew


def test_a_month_already_embedded_by_the_same_model_is_reused_not_encoded(exported, pipeline: Pipeline,
                                                                           tmp_path: Path):
    copy = pipeline.copy(tmp_path / "store")
    again = copy.embed()
    assert again.success, run_error_text(again)
    assert embedding_counts(again) == {"encoded": 0, "reused": len(pipeline.splits)}
    # A paper whose text changed is encoded again; the rest are still reused.
    store = ArtifactStore(copy.base_uri)
    changed = pipeline.splits.copy()
    changed.loc[0, "abstract"] = changed.loc[0, "abstract"] + " Revised."
    store.publish("splits", changed)
    stale_index = copy.materialize([faiss_index], {"faiss_index": FaissIndexConfig(recall_queries=20)})
    assert "embedded from another text than the splits now hold" in run_error_text(stale_index)
    redone = copy.embed()
    assert embedding_counts(redone) == {"encoded": 1, "reused": len(changed) - 1}
    assert copy.materialize([faiss_index], {"faiss_index": FaissIndexConfig(recall_queries=20)}).success


CHECKS_ALL_PASSED = {"checks": dict.fromkeys(ONNX_CHECKS, True),
                     "details": {"variants": {"torch-fp32": {"texts_per_s": 40.0, "min_cosine": 1.0},
                                              "onnx-fp32": {"texts_per_s": 50.0, "min_cosine": 0.99999},
                                              "onnx-int8": {"texts_per_s": 90.0, "min_cosine": 0.993},
                                              "openvino-fp32": {"texts_per_s": 45.0, "min_cosine": 0.99999},
                                              "openvino-bf16": {"texts_per_s": 70.0, "min_cosine": 0.99997},
                                              "openvino-int8": {"texts_per_s": 80.0, "min_cosine": 0.996}}}}


def test_papers_are_embedded_by_the_fastest_variant_that_passed_parity():
    assert embedding_variant(CHECKS_ALL_PASSED, "auto", "cpu") == "onnx-int8"
    int8_failed = {**CHECKS_ALL_PASSED, "checks": {**CHECKS_ALL_PASSED["checks"], "onnx_int8_p_at_10": False}}
    assert embedding_variant(int8_failed, "auto", "cpu") == "openvino-int8"
    both_int8_failed = {**int8_failed, "checks": {**int8_failed["checks"], "openvino_int8_parity": False}}
    assert embedding_variant(both_int8_failed, "auto", "cpu") == "openvino-bf16"
    # an export made before the OpenVINO variant existed has no checks for it: never chosen
    older = {**CHECKS_ALL_PASSED, "checks": {k: v for k, v in CHECKS_ALL_PASSED["checks"].items()
                                             if not k.startswith("openvino")}}
    assert embedding_variant({**older, "checks": {**older["checks"], "onnx_int8_parity": False}}, "auto",
                             "cpu") == "onnx-fp32"
    onnx_failed = {**CHECKS_ALL_PASSED, "checks": dict.fromkeys(CHECKS_ALL_PASSED["checks"], False)}
    assert embedding_variant(onnx_failed, "auto", "cpu") == "torch-fp32"
    assert embedding_variant(CHECKS_ALL_PASSED, "auto", "cuda:0") == "torch-fp32"  # ONNX variants are CPU builds
    assert embedding_variant(CHECKS_ALL_PASSED, "onnx-fp32", "cpu") == "onnx-fp32"
    with pytest.raises(dg.Failure, match="onnx-int8 did not pass"):
        embedding_variant(int8_failed, "onnx-int8", "cpu")
    # the config's default bar (fp32's 0.999) keeps int8 out of auto: the fastest variant that matches fp32, bf16
    # with f32 accumulation included
    default_bar = PaperEmbeddingsConfig().min_cosine
    assert embedding_variant(CHECKS_ALL_PASSED, "auto", "cpu", default_bar) == "openvino-bf16"
    assert embedding_variant(older, "auto", "cpu", default_bar) == "onnx-fp32"
    bf16_failed = {**CHECKS_ALL_PASSED, "checks": {**CHECKS_ALL_PASSED["checks"], "openvino_bf16_parity": False}}
    assert embedding_variant(bf16_failed, "auto", "cpu", default_bar) == "onnx-fp32"
    assert embedding_variant(CHECKS_ALL_PASSED, "auto", "cpu", 0.995) == "openvino-int8"
    assert embedding_variant(onnx_failed, "auto", "cpu", default_bar) == "torch-fp32"  # the reference needs none
    assert embedding_variant(CHECKS_ALL_PASSED, "onnx-int8", "cpu", default_bar) == "onnx-int8"  # asked for by name


def test_hnsw_option_reports_recall_and_gates_on_it(exported, pipeline: Pipeline, tmp_path: Path):
    copy = pipeline.copy(tmp_path / "store")  # the failing index below must not become the shared store's latest
    config = FaissIndexConfig(kind="hnsw", splits_to_index=["test"])
    result = copy.materialize([faiss_index], {"faiss_index": config})
    assert result.success
    assert check_results(result)["ann_recall_at_10"].metadata["recall_at_10"].value >= 0.95
    weak = copy.materialize([faiss_index], {"faiss_index": FaissIndexConfig(
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


# Every CPU class the README names, by its /proc/cpuinfo flags (the relevant ones), and the int8 config it must
# get: signed int8 weights only where VNNI (AVX512-VNNI, AVX-VNNI or AMX-INT8) multiplies them natively,
# the AVX-512 config where AVX-512 has no VNNI, otherwise the AVX2 config (no int16 saturation).
CPU_CLASSES: dict[str, tuple[str, frozenset[str], str]] = {
    "AVX2 only (AMD EPYC Zen 2/3)": ("x86_64", frozenset({"avx2", "fma"}), "avx2"),
    "AVX-512 without VNNI (Skylake-SP)": ("x86_64", frozenset({"avx2", "avx512f", "avx512bw"}), "avx512"),
    "AVX512-VNNI and AVX512-BF16 (AMD EPYC Zen 4)": (
        "x86_64", frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}), "avx512_vnni"),
    "AMX (Intel Xeon Sapphire Rapids)": (
        "x86_64", frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni", "amx_int8", "amx_bf16"}), "avx512_vnni"),
    "AVX-VNNI without AVX-512 (Alder Lake)": ("x86_64", frozenset({"avx2", "avx_vnni"}), "avx512_vnni"),
    "no flags to read (macOS on Intel)": ("x86_64", frozenset(), "avx2"),
    "ARM (Graviton, Apple silicon)": ("aarch64", frozenset(), "arm64"),
}


@pytest.mark.parametrize("cpu", list(CPU_CLASSES))
def test_quantization_config_suits_every_cpu_class(cpu: str, monkeypatch: pytest.MonkeyPatch):
    machine, flags, expected = CPU_CLASSES[cpu]
    monkeypatch.setattr(export_module.platform, "machine", lambda: machine)
    monkeypatch.setattr(export_module, "cpu_flags", lambda: flags)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    assert quantization_target() == expected


def test_an_incomplete_export_is_refused_naming_the_missing_file(exported, tmp_path: Path):
    export = ModelExport.read(Path(materialization_metadata(exported, "onnx_model")["uri"]) / "payload")
    broken = tmp_path / "broken"
    shutil.copytree(export.directory, broken, ignore=shutil.ignore_patterns("model_qint8_*"))
    with pytest.raises(ExportError, match=r"model_qint8_\w+\.onnx \(onnx-int8\) is missing"):
        ModelExport.read(broken)
    no_openvino = tmp_path / "no-openvino"
    shutil.copytree(export.directory, no_openvino, ignore=shutil.ignore_patterns("openvino_model_qint8_static.xml"))
    with pytest.raises(ExportError, match=r"openvino_model_qint8_static\.xml \(openvino-int8\) is missing"):
        ModelExport.read(no_openvino)
    no_openvino_fp32 = tmp_path / "no-openvino-fp32"
    shutil.copytree(export.directory, no_openvino_fp32, ignore=shutil.ignore_patterns("openvino_model.xml"))
    with pytest.raises(ExportError, match=r"openvino_model\.xml \(openvino-fp32, openvino-bf16\) is missing"):
        ModelExport.read(no_openvino_fp32)
    with pytest.raises(ExportError, match=r"onnx_export\.json is missing"):
        ModelExport.read(tmp_path)  # a plain directory, no export in it


def test_the_default_auto_kind_indexes_a_small_corpus_exactly_and_says_so(exported, pipeline: Pipeline):
    meta = materialization_metadata(exported, "faiss_index")
    assert meta["requested_kind"] == "auto" and meta["kind"] == "flat" and meta["recall_at_10"] == 1.0
    index = PaperIndex.load(Path(meta["uri"]) / "payload")
    assert index.meta["kind"] == "flat" and index.meta["model_fingerprint"] == model_fingerprint(pipeline.model_dir)


def test_static_int8_is_calibrated_on_train_papers_never_on_the_parity_papers(pipeline: Pipeline):
    parity = parity_sample(pipeline.splits, PARITY_TEXTS)
    texts = calibration_texts(pipeline.splits, 40, exclude=parity["id"])
    train = pipeline.splits[pipeline.splits["split"] == "train"]
    assert len(texts) == 40 and set(texts) <= set(paper_texts(train))
    assert texts == calibration_texts(pipeline.splits, 40, exclude=parity["id"])  # the same papers every time
    # splits with nothing to train on (a scored corpus) lend their other papers; with none left, a clear error
    scored = pipeline.splits.assign(split="test")
    assert not set(calibration_texts(scored, 40, exclude=parity["id"])) & set(paper_texts(parity))
    with pytest.raises(ValueError, match="all parity papers"):
        calibration_texts(parity, 40, exclude=parity["id"])
