"""model -> ir_metrics / classifier_metrics on the smoke graph, with real (tiny) training."""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from arxiv_assets.assets.baseline import tfidf_baseline
from arxiv_assets.assets.data import pairs, raw_papers, splits
from arxiv_assets.assets.evaluation import (
    BEATS_BASELINES,
    BEATS_SERVED,
    F1_AT_LEAST_TFIDF,
    evaluation,
    served_model_uri,
)
from arxiv_assets.assets.training import model
from arxiv_assets.ml.embedding import ModelLoadError, encode, load_model
from arxiv_assets.resources.artifact_store import ArtifactIOManager, ArtifactStore
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets_tests.conftest import SmokeModel, run_error_text, smoke_run_config

GRAPH = [raw_papers, splits, pairs, tfidf_baseline, model, evaluation]


def test_smoke_training_saves_a_model_that_reloads_and_embeds(smoke_model: SmokeModel) -> None:
    assert smoke_model.run.success
    materialization = smoke_model.run.asset_materializations_for_node("model")[0]
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["loss"] == "mnrl_distinct_subjects"
    assert metadata["steps"] == 4
    assert metadata["max_seq_length"] == 64  # the smoke cap, below the measured p90
    assert metadata["train_seq_length"] == 32  # trained on shorter texts than it encodes
    assert metadata["token_length_percentiles"]["p90"] > 64
    assert metadata["samples_per_second"] > 0 and metadata["peak_memory_mb"] > 0
    assert Path(metadata["wandb"]["run_dir"]).exists()  # offline W&B run written locally

    reloaded = load_model(smoke_model.model_dir)
    assert reloaded.max_seq_length == 64
    vectors = encode(reloaded, ["Galaxy rotation curves", "Vision transformers for segmentation"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_evaluation_reports_all_three_systems_on_the_same_test_split(smoke_model: SmokeModel) -> None:
    store = smoke_model.artifacts.store
    test_papers = int((smoke_model.artifacts.load("splits")["split"] == "test").sum())
    ir = json.loads((store.local_payload(store.latest_uri("ir_metrics")) / "metrics.json").read_text())
    for average in ("micro", "macro"):
        assert set(ir["subject_retrieval"][average]) == {"base", "fine-tuned", "tfidf"}
        for scores in ir["subject_retrieval"][average].values():
            assert {"P@1", "P@5", "P@10", "MRR@10", "NDCG@10", "MAP@100"} <= set(scores)
            assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert set(ir["known_item"]) == {"base", "fine-tuned", "tfidf"}
    assert ir["test_papers"] == test_papers
    assert (store.local_payload(store.latest_uri("ir_metrics")) / "projection.png").stat().st_size > 10_000
    clf_dir = store.local_payload(store.latest_uri("classifier_metrics"))
    clf = json.loads((clf_dir / "metrics.json").read_text())
    assert set(clf["classification"]) == {"base", "fine-tuned", "tfidf", "tfidf (LR on all train)"}
    assert (clf_dir / "confusion.png").exists()
    # the base model, untouched by training, retrieves far above chance on real papers
    subjects = smoke_model.artifacts.load("splits").query("split == 'test'")["primary_subject"]
    chance = float(((subjects.value_counts() / len(subjects)) ** 2).sum())
    assert ir["subject_retrieval"]["micro"]["base"]["P@10"] > chance + 0.1


def _store_with_model(smoke_model: SmokeModel, tmp_path: Path, model_dir: Path,
                      instance: dg.DagsterInstance | None = None) -> str:
    """A store holding the smoke graph's splits and baseline, and ``model_dir`` as the newest model.

    With an ``instance``, the model is also recorded there as materialized (a runless event, as an
    external training job would report it), so the evaluation knows which model version it scores.
    """
    source, target = smoke_model.artifacts.store, ArtifactStore(str(tmp_path / "store"))
    for key in ("splits", "tfidf_baseline"):
        if not target.exists(key):
            target.publish(key, source.load_latest(key))
    uri = target.publish("model", model_dir)
    if instance is not None:
        instance.report_runless_asset_event(dg.AssetMaterialization("model", metadata={"uri": uri}))
    return str(tmp_path / "store")


def _random_model(smoke_model: SmokeModel, tmp_path: Path) -> Path:
    """A real Sentence Transformers model whose transformer weights are re-initialized: worse than anything."""
    untrained = load_model(smoke_model.model_dir)
    transformer = untrained[0].auto_model
    transformer.apply(transformer._init_weights)
    untrained.save(str(tmp_path / "random-model"))
    return tmp_path / "random-model"


def _evaluate(base_uri: str, instance: dg.DagsterInstance, **margins: float) -> dg.ExecuteInProcessResult:
    config = smoke_run_config("evaluation")
    config.ops["evaluation"]["config"] |= margins
    return dg.materialize(
        GRAPH, selection=[evaluation], raise_on_error=False, run_config=config, instance=instance,
        resources={"io_manager": ArtifactIOManager(base_uri=base_uri), "paper_source": PaperSource()},
    )


def test_a_worse_model_fails_every_blocking_check_and_is_not_promoted(smoke_model: SmokeModel,
                                                                       tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    good = shutil.copytree(smoke_model.model_dir, tmp_path / "good-model")
    first = _evaluate(_store_with_model(smoke_model, tmp_path, good, instance), instance)
    assert first.success  # smoke margins: the first model is promoted (nothing served yet)
    served = served_model_uri(instance)
    assert served is not None and served.endswith(ArtifactStore(str(tmp_path / "store")).versions("model")[-1])

    worse = _random_model(smoke_model, tmp_path)
    second = _evaluate(_store_with_model(smoke_model, tmp_path, worse, instance), instance,
                       min_p10_margin=0.0, min_f1_margin=0.0)
    checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
    assert not checks[BEATS_BASELINES].passed
    assert not checks[F1_AT_LEAST_TFIDF].passed
    assert not checks[BEATS_SERVED].passed
    promotion = {k: v.value for k, v in checks[BEATS_SERVED].metadata.items()}
    assert promotion["served_model_uri"] == served
    assert promotion["P@10 fine-tuned"] < promotion["P@10 served"]
    assert not second.success  # blocking: nothing downstream of the metrics is built from this model
    assert served_model_uri(instance) == served  # the service keeps the old model


def test_corrupt_model_directory_gives_a_clear_error(smoke_model: SmokeModel, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt-model"
    shutil.copytree(smoke_model.model_dir, corrupt)
    (corrupt / "modules.json").unlink()
    with pytest.raises(ModelLoadError, match=r"modules\.json is missing"):
        load_model(corrupt)
    for weights in corrupt.glob("*.safetensors"):
        weights.write_bytes(b"not a tensor file")
    (corrupt / "modules.json").write_text((smoke_model.model_dir / "modules.json").read_text())
    with pytest.raises(ModelLoadError, match="could not load model"):
        load_model(corrupt)

    result = dg.materialize(
        GRAPH, selection=[evaluation], raise_on_error=False, run_config=smoke_run_config("evaluation"),
        resources={"io_manager": ArtifactIOManager(base_uri=_store_with_model(smoke_model, tmp_path, corrupt)),
                   "paper_source": PaperSource()},
    )
    assert not result.success
    assert "could not load model" in run_error_text(result)
