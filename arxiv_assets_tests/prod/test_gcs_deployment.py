"""The ``prod`` deployment against a real GCS emulator: every asset of ``defs`` lands in the bucket.

``DAGSTER_DEPLOYMENT=prod`` picks the resources; ``ARXIV_GCS_BUCKET`` / ``ARXIV_GCS_PREFIX`` say where;
``STORAGE_EMULATOR_HOST`` sends gcsfs to the emulator. Only the paper source is swapped for the bundled
sample (the test has no network to reach the arXiv API). raw_papers is loaded for a range of months in
one run (the single-run backfill tags), then a month closes: the monthly schedule's run loads it, the
automation conditions request the retrain, and that run (smoke profile) writes everything downstream.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest
from datasets import DatasetDict
from fastapi.testclient import TestClient

from arxiv_assets.assets.config import run_config
from arxiv_assets.definitions import ALL_ASSETS, defs
from arxiv_assets.deployments import current_deployment, executor_for, resources_for
from arxiv_assets.ml.splits import SPLITS
from arxiv_assets.resources.gcs import GCSArtifactIOManager
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets.storage.artifacts import CACHE_DIR_ENV_VAR, LATEST, MANIFEST, PAYLOAD, ArtifactStore, cache_entry
from arxiv_assets.storage.releases import PointerMovedError, Release, ReleaseStore
from arxiv_assets_tests.conftest import partition_range_tags, run_error_text, smoke_run_config
from serving.app import create_app
from serving.settings import Settings

from .conftest import GCSEmulator

PREFIX = "arxiv-embeddings"
MONTHS = ["2025-04-01", "2025-05-01", "2025-06-01"]
EMBEDDINGS = dg.AssetKey("paper_embeddings")


def _smoke_run_config(tmp_path, selection: set[dg.AssetKey]) -> dg.RunConfig:
    """The smoke profile for the ops of ``selection``; training keeps its checkpoints in the test's directory and
    starts no wandb process."""
    config = smoke_run_config(*{defs.resolve_assets_def(key).node_def.name for key in selection})
    if "model" in config.ops:
        config.ops["model"]["config"] |= {"report_to_wandb": False, "work_dir": str(tmp_path / "train")}
    return config


def test_prod_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "prod")
    assert current_deployment() == "prod"
    resources = resources_for()
    assert isinstance(resources["io_manager"], GCSArtifactIOManager)
    assert resources["paper_source"].kind == "arxiv_api"
    assert executor_for().name == "k8s_job_executor"
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "staging")
    with pytest.raises(ValueError, match="choose one of"):
        current_deployment()


def test_every_asset_lands_in_the_bucket(gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "prod")
    monkeypatch.setenv("ARXIV_GCS_BUCKET", gcs_emulator.bucket)
    monkeypatch.setenv("ARXIV_GCS_PREFIX", PREFIX)
    resources = {**resources_for(), "paper_source": PaperSource(kind="bundled")}
    instance = dg.DagsterInstance.ephemeral()

    # History first: two months in one run (the single-run backfill), then the automation sensor is on.
    raw = dg.materialize(ALL_ASSETS, selection=["raw_papers"], resources=resources, instance=instance,
                         tags=partition_range_tags(MONTHS[0], MONTHS[-2]), raise_on_error=False)
    assert raw.success, run_error_text(raw)
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    # A month closes: the schedule's run loads it; the next tick asks for the retrain.
    schedule = defs.resolve_schedule_def("raw_papers_monthly")
    with dg.build_schedule_context(scheduled_execution_time=datetime(2025, 7, 1, 6, tzinfo=UTC),
                                   repository_def=defs.get_repository_def()) as context:
        (month_request,) = schedule.evaluate_tick(context).run_requests
    assert month_request.partition_key == MONTHS[-1]
    month = dg.materialize(ALL_ASSETS, selection=["raw_papers"], resources=resources, instance=instance,
                           partition_key=month_request.partition_key, tags=month_request.tags, raise_on_error=False)
    assert month.success, run_error_text(month)
    # The release attempt, tick by tick as the sensor requests it (smoke sizes), writing into the bucket: the
    # steps up to the export; every month of paper_embeddings (a range, one run locally); the index and release.
    runs = []
    for _ in range(3):
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        selection = {key for key in defs.resolve_asset_graph().get_all_asset_keys() if tick.get_num_requested(key)}
        months = sorted(tick.get_requested_partitions(EMBEDDINGS)) if EMBEDDINGS in selection else []
        runs.append(dg.materialize(
            ALL_ASSETS, selection=list(selection), resources=resources, instance=instance,
            run_config=_smoke_run_config(tmp_path, selection), raise_on_error=False,
            tags=partition_range_tags(months[0], months[-1]) if months else None))
        assert runs[-1].success, run_error_text(runs[-1])
    downstream = runs[0]
    retrain = {e.asset_key for run in runs for e in run.get_asset_materialization_events()} | {dg.AssetKey("release")}
    assert retrain == {spec.key for spec in defs.resolve_all_asset_specs()} - {dg.AssetKey("raw_papers")}
    assert set(MONTHS) <= {e.partition for e in runs[1].get_asset_materialization_events()}  # every month again
    # Once released, later ticks request nothing.
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert tick.total_requested == 0

    # What is in the bucket, listed through the JSON API: LATEST + one complete version per asset (partition).
    names = set(gcs_emulator.object_names(f"{PREFIX}/"))
    artifact_keys = [f"{key}/{m}" for m in MONTHS for key in ("raw_papers", "paper_embeddings")] + [
        key.to_user_string() for key in sorted(retrain - {dg.AssetKey("release"), EMBEDDINGS})]  # release: no artifact
    store = ArtifactStore(f"gs://{gcs_emulator.bucket}/{PREFIX}", cache_dir=str(tmp_path / "cache"))
    formats = {}
    for key in artifact_keys:
        assert f"{PREFIX}/{key}/{LATEST}" in names, f"{key} has no LATEST in the bucket"
        version_uri = store.latest_uri(key)
        version_path = version_uri.removeprefix(f"gs://{gcs_emulator.bucket}/")
        assert f"{version_path}/{MANIFEST}" in names
        formats[key] = json.loads(store.fs.cat_file(store._strip(version_uri) + f"/{MANIFEST}"))["format"]
        payload = sorted(n for n in names if n.startswith(f"{version_path}/{PAYLOAD}"))
        assert payload, f"{key}: empty payload"
        if formats[key] in ("parquet", "json"):  # a table or a metrics dict is one object
            assert payload == [f"{version_path}/{PAYLOAD}"]
        else:  # datasets, models, reports: a directory of plain files, no pickles
            assert all(n.startswith(f"{version_path}/{PAYLOAD}/") for n in payload), (key, payload)
            assert not any(n.endswith((".pkl", ".pickle")) for n in payload)
    assert {formats[f"raw_papers/{m}"] for m in MONTHS} == {"parquet"}
    assert formats["splits"] == "parquet"
    assert formats["pairs"] == "hf_dataset"
    assert formats["tfidf_baseline"] == "json"
    assert formats["model"] == formats["promoted_model"] == "directory"

    # Artifacts load back through ArtifactStore("gs://...") in a fresh reader.
    splits = store.load_latest("splits")
    assert isinstance(splits, pd.DataFrame)
    assert len(splits) == downstream.asset_materializations_for_node("splits")[0].metadata["dagster/row_count"].value
    assert {"train", "eval", "test"} <= set(splits["split"]) <= set(SPLITS)
    month = store.load_latest("raw_papers/2025-05-01")
    assert month["published"].str.startswith("2025-05").all()
    pairs = store.load_latest("pairs")
    assert isinstance(pairs, DatasetDict) and len(pairs["train"]) == run_config("smoke").ops["pairs"]["config"][
        "train_pairs"]
    model_dir = store.load_latest("model")  # downloaded from the bucket into the reader's cache
    assert model_dir.is_relative_to(tmp_path / "cache")
    assert {"config.json", "modules.json", "model.safetensors"} <= {p.name for p in model_dir.iterdir()}
    # The IO manager reports the gs:// URI of what it wrote, so the UI links each materialization to it.
    model_event = downstream.asset_materializations_for_node("model")[0]
    assert model_event.metadata["uri"].value == store.latest_uri("model")

    # The release: a manifest and CURRENT in the bucket, naming the gs:// export and index it pinned.
    releases_uri = f"gs://{gcs_emulator.bucket}/{PREFIX}/releases"
    releases = ReleaseStore(releases_uri)
    released = releases.current()
    assert released is not None and f"{PREFIX}/releases/CURRENT" in names
    assert f"{PREFIX}/releases/{released.release_id}/release.json" in names
    assert released.model_uri == store.latest_uri("onnx_model") and released.index_uri == store.latest_uri(
        "faiss_index")
    assert store.pinned("onnx_model") == {released.model_uri.rsplit("/", 1)[-1]}

    # The service serves straight from the bucket, through the pointer alone. Its download cache held a model
    # it no longer serves: loading the release deletes that download and keeps the served ones.
    service_cache = tmp_path / "service-cache"
    monkeypatch.setenv(CACHE_DIR_ENV_VAR, str(service_cache))
    stale = ArtifactStore(f"gs://{gcs_emulator.bucket}/{PREFIX}").local_payload(store.latest_uri("model")).parent
    settings = Settings(releases_uri=releases_uri, backend="torch-fp32", threads=1, poll_interval_s=0,
                        wait_for_model_on_startup=True, cache_min_age_s=0)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready").json()
        assert ready["release"] == released.release_id and ready["model"]["uri"] == released.model_uri
        assert not stale.exists()
        assert {p.name for p in service_cache.iterdir()} == {
            cache_entry(service_cache, uri).name for uri in (released.model_uri, released.index_uri)}
        embedded = client.post("/embed", json={"texts": ["Dark matter halos of dwarf galaxies"]})
        assert embedded.status_code == 200 and len(embedded.json()["embeddings"][0]) == 384
        hits = client.post("/search", json={"query": "galaxy rotation curves", "k": 3}).json()["results"]
        assert len(hits) == 3 and set(splits["id"]) >= {hit["id"] for hit in hits}

    # Moving the pointer on GCS: a writer that read an older CURRENT is refused; rollback moves it back.
    second = releases.publish(replace(released, release_id=Release.new_id(), created_at="",
                                      replaces=released.release_id))
    with pytest.raises(PointerMovedError):
        releases.move(released.release_id, expected=released.release_id)  # CURRENT names `second` now
    assert releases.current_id() == second.release_id
    assert releases.rollback().release_id == released.release_id
    assert ReleaseStore(releases_uri).current_id() == released.release_id  # a fresh reader sees it
