"""model -> ir_metrics / classifier_metrics -> promoted_model on the smoke graph, with real (tiny) training."""

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from arxiv_assets.assets.baseline import tfidf_baseline
from arxiv_assets.assets.data import pairs, raw_papers, splits
from arxiv_assets.assets.promotion import promoted_model
from arxiv_assets.assets.scoring import BEATS_SERVED, score_models
from arxiv_assets.assets.training import model
from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, ModelLoadError, encode, load_model
from arxiv_assets.ml.evaluation import GATE_ASSETS, SLICES, TRAINED_ARCHIVES, UNTRAINED_ARCHIVES, GateSettings
from arxiv_assets.ml.train_precision import pick_training_precision
from arxiv_assets.ml.variants import model_fingerprint
from arxiv_assets.profiles import get_profile
from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets.resources.releases import Releases
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets.storage.releases import Release, ReleaseStore, read_promotion
from arxiv_assets_tests.conftest import SmokeModel, run_error_text, smoke_run_config

GRAPH = [raw_papers, splits, pairs, tfidf_baseline, model, score_models, promoted_model]
STRICT_GATES = asdict(GateSettings())  # the default profile's gates, not the smoke profile's lenient ones


def test_smoke_training_saves_a_model_that_reloads_and_embeds(smoke_model: SmokeModel) -> None:
    assert smoke_model.run.success
    materialization = smoke_model.run.asset_materializations_for_node("model")[0]
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["loss"] == get_profile("smoke").train.loss
    assert metadata["settings"]["multi_dataset"] is True  # one dataset and one loss per kind of pair
    assert metadata["steps"] == 4
    assert metadata["max_seq_length"] == 64  # the smoke cap, below the measured p90
    assert metadata["train_seq_length"] == 32  # trained on shorter texts than it encodes
    assert metadata["token_length_percentiles"]["p90"] > 64
    assert metadata["samples_per_second"] > 0 and metadata["peak_memory_mb"] > 0
    # the precision timed on this CPU, whichever won, and why
    timed = metadata["precision_timed_step_seconds"]
    assert metadata["precision"] == pick_training_precision(timed["fp32"], timed["bf16"]).precision
    assert "bf16 timed" in metadata["precision_reason"]
    # MiniLM's attention dropout: PyTorch's CPU flash kernel takes none, so the kernel is not timed (without
    # attention dropout it is: test_training)
    assert metadata["attention_kernel"] == "default" and "attention dropout 0.1" in metadata["attention_kernel_reason"]
    assert "attention_kernel_timed_step_seconds" not in metadata
    assert Path(metadata["wandb"]["run_dir"]).exists()  # offline W&B run written locally
    # a soup of the base, this run and a second run in plain no-duplicate batches (the default recipe)
    assert (metadata["soup_loss"], metadata["soup_steps"]) == ("mnrl", 4) and metadata["soup_train_seconds"] > 0
    assert "interpolation_weight" not in metadata

    reloaded = load_model(smoke_model.model_dir)
    assert reloaded.max_seq_length == 64
    vectors = encode(reloaded, ["Galaxy rotation curves", "Vision transformers for segmentation"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_evaluation_reports_every_system_on_every_slice(smoke_model: SmokeModel) -> None:
    store = smoke_model.artifacts.store
    splits_table = smoke_model.artifacts.load("splits")
    ir = json.loads((store.local_payload(store.latest_uri("ir_metrics")) / "metrics.json").read_text())
    assert set(ir["headline"]) == {"base", "fine-tuned", "tfidf"}
    for figures in ir["headline"].values():
        for slice_name in SLICES:
            assert 0.0 <= figures[f"{slice_name}/P@10"] <= 1.0
        assert figures["test/papers"] == (splits_table["split"] == "test").sum()
        assert figures["unseen/papers"] == (splits_table["split"] == "unseen").sum()
        assert {"test/known-item MRR@10", "unseen/known-item R@1", "unseen/LR accuracy", "new/P@10"} <= set(figures)
    assert ir["model_fingerprint"] == model_fingerprint(smoke_model.model_dir)
    assert {g["name"] for g in ir["gates"]} == {*GATE_ASSETS, BEATS_SERVED}
    # every per-paper figure of every slice: the fine-tuned model minus the base, with a paired interval
    versus_base = pd.DataFrame(ir["fine_tuned_vs_base"])
    assert set(versus_base["slice"]) == set(SLICES)
    assert {("test", "P@10"), ("unseen", "LR accuracy"), ("new", "known-item R@1"), ("test", "known-item MRR@10")} \
        <= set(zip(versus_base["slice"], versus_base["figure"], strict=True))
    for row in versus_base.itertuples():
        headline = ir["headline"]
        key = f"{row.slice}/{row.figure}"
        assert row.points == pytest.approx(100 * (headline["fine-tuned"][key] - headline["base"][key]), abs=1e-6)
        assert row.low <= row.points <= row.high
        assert row.verdict == ("above" if row.low > 0 else "below" if row.high < 0 else "within noise")
    # and off the training subjects, the papers of archives the training read and of those it never read apart
    by_archive = pd.DataFrame(ir["fine_tuned_vs_base_by_archive"])
    assert set(by_archive["slice"]) <= {"unseen", "rare"} and "unseen" in set(by_archive["slice"])
    assert set(by_archive["group"]) <= {TRAINED_ARCHIVES, UNTRAINED_ARCHIVES}
    for name, rows in by_archive[by_archive["figure"] == "LR accuracy"].groupby("slice"):
        assert rows["papers"].sum() == ir["headline"]["base"][f"{name}/papers"]  # the groups partition the slice
    assert (store.local_payload(store.latest_uri("ir_metrics")) / "projection.png").stat().st_size > 10_000
    clf_dir = store.local_payload(store.latest_uri("classifier_metrics"))
    clf = json.loads((clf_dir / "metrics.json").read_text())
    assert clf["gates"] == ir["gates"] and "accuracy" in clf["tfidf_lr_all_train"]
    assert (clf_dir / "confusion.png").exists()
    # the base model, untouched by training, retrieves far above chance on real papers
    subjects = splits_table.query("split == 'test'")["primary_subject"]
    chance = float(((subjects.value_counts() / len(subjects)) ** 2).sum())
    assert ir["headline"]["base"]["test/P@10"] > chance + 0.1
    # every gate is an asset check on the report it guards
    checks = {e.check_name: e for e in smoke_model.run.get_asset_check_evaluations()}
    assert set(checks) == {*GATE_ASSETS, BEATS_SERVED}
    for name, asset in GATE_ASSETS.items():
        assert checks[name].asset_key == dg.AssetKey(asset)


def test_a_model_that_passes_the_gates_is_promoted_as_it_is(smoke_model: SmokeModel) -> None:
    promoted = smoke_model.run.asset_materializations_for_node("promoted_model")[0]
    metadata = {k: v.value for k, v in promoted.metadata.items()}
    assert metadata["promoted"] == "challenger" and metadata["failed_gates"] == []
    promoted_dir = smoke_model.artifacts.store.local_payload(metadata["uri"])
    assert model_fingerprint(promoted_dir) == model_fingerprint(smoke_model.model_dir) == metadata["model_fingerprint"]


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


def _resources(base_uri: str) -> dict:
    return {"io_manager": ArtifactIOManager(base_uri=base_uri), "paper_source": PaperSource(),
            "releases": Releases(base_uri=f"{base_uri}/releases")}


def _evaluate_and_promote(base_uri: str, instance: dg.DagsterInstance, **gates: float) -> dg.ExecuteInProcessResult:
    config = smoke_run_config("score_models")
    config.ops["score_models"]["config"] |= gates
    return dg.materialize(GRAPH, selection=[score_models, promoted_model], raise_on_error=False, run_config=config,
                          instance=instance, resources=_resources(base_uri))


def _release_promoted(base_uri: str) -> Release:
    """Make the promoted model the champion, as ``release`` does after exporting and indexing it (those steps
    and the release asset itself are exercised in test_export_assets.py; here only the champion matters)."""
    store = ArtifactStore(base_uri)
    uri = store.latest_uri("promoted_model")
    releases = ReleaseStore(f"{base_uri}/releases")
    return releases.publish(Release(release_id=Release.new_id(), model_uri=uri,
                                    model_fingerprint=model_fingerprint(store.local_payload(uri)), index_uri=None,
                                    decision="challenger", reason="test champion", replaces=releases.current_id()))


def _promoted(result: dg.ExecuteInProcessResult) -> dict:
    materialization = result.asset_materializations_for_node("promoted_model")[0]
    return {k: v.value for k, v in materialization.metadata.items()}


def test_a_worse_challenger_keeps_the_champion_and_a_failing_champion_gives_way_to_the_base(
        smoke_model: SmokeModel, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    good = shutil.copytree(smoke_model.model_dir, tmp_path / "good-model")
    good_fingerprint = model_fingerprint(good)
    first = _evaluate_and_promote(_store_with_model(smoke_model, tmp_path, good, instance), instance)
    assert first.success and _promoted(first)["promoted"] == "challenger"  # smoke gates: the first model passes
    store = ArtifactStore(str(tmp_path / "store"))
    champion = _release_promoted(str(tmp_path / "store"))

    # A re-initialized model under the smoke profile's lenient gates: it passes them, but scores below the
    # served model on the same test split, so the served model (still passing) stays.
    _store_with_model(smoke_model, tmp_path, _random_model(smoke_model, tmp_path), instance)
    second = _evaluate_and_promote(str(tmp_path / "store"), instance)
    assert second.success  # a failed gate is not an error: the run goes on and promotes what should be served
    checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
    assert not checks[BEATS_SERVED].passed
    beats_served = {k: v.value for k, v in checks[BEATS_SERVED].metadata.items()}
    assert beats_served["value"] < beats_served["threshold"]  # scored below the served fine-tuned model
    promoted = _promoted(second)
    assert promoted["promoted"] == "champion" and promoted["failed_gates"] == [BEATS_SERVED]
    assert model_fingerprint(store.local_payload(promoted["uri"])) == good_fingerprint
    kept = read_promotion(store.local_payload(promoted["uri"]))
    assert kept.decision == "champion" and kept.champion_release == champion.release_id

    # The same challenger under the default profile's gates, with an in-distribution bar nothing clears:
    # it fails them, so does the champion, and the untrained base model is promoted.
    _store_with_model(smoke_model, tmp_path, _random_model(smoke_model, tmp_path), instance)
    third = _evaluate_and_promote(str(tmp_path / "store"), instance, **{**STRICT_GATES, "min_p10_margin": 1.0})
    assert third.success
    checks = {e.check_name: e for e in third.get_asset_check_evaluations()}
    for name in ("in_distribution_p10_beats_base_and_tfidf", "known_item_mrr_not_below_base",
                 "unseen_subjects_p10_not_below_base", "unseen_subjects_lr_accuracy_not_below_base"):
        assert not checks[name].passed, name
    promoted = _promoted(third)
    assert promoted["promoted"] == "base" and "unseen_subjects_p10_not_below_base" in promoted["failed_gates"]
    base_dir = store.local_payload(promoted["uri"])
    # the evaluation's vectors of the base are filed under the fingerprint the promoted base has: reusable
    evaluated = store.load_latest("evaluation_embeddings")
    assert (evaluated["model_fingerprint"] == model_fingerprint(base_dir)).sum() > 0
    assert {good_fingerprint, _promoted(third)["evaluated_model_fingerprint"]} <= set(evaluated["model_fingerprint"])
    texts = ["Dark matter halos of dwarf galaxies", "A transformer for low-resource translation"]
    np.testing.assert_allclose(encode(load_model(base_dir), texts), encode(load_model(BUNDLED_BASE_MODEL), texts),
                               atol=1e-5)  # the untrained base model's weights...
    # ...encoding as many tokens as the model it replaces (the random model keeps the smoke model's length)
    assert load_model(base_dir).max_seq_length == load_model(smoke_model.model_dir).max_seq_length


def test_promotion_refuses_reports_about_another_model(smoke_model: SmokeModel, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    evaluated = shutil.copytree(smoke_model.model_dir, tmp_path / "evaluated-model")  # publishing moves it
    base_uri = _store_with_model(smoke_model, tmp_path, evaluated, instance)
    assert _evaluate_and_promote(base_uri, instance).success
    _store_with_model(smoke_model, tmp_path, _random_model(smoke_model, tmp_path), instance)  # a newer model...
    alone = dg.materialize(  # ...promoted against the reports of the old one
        GRAPH, selection=[promoted_model], raise_on_error=False, instance=instance,
        resources=_resources(base_uri),
    )
    assert not alone.success
    assert "not the model being promoted" in run_error_text(alone)


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
        GRAPH, selection=[score_models], raise_on_error=False, run_config=smoke_run_config("score_models"),
        resources=_resources(_store_with_model(smoke_model, tmp_path, corrupt)),
    )
    assert not result.success
    assert "could not load model" in run_error_text(result)
