"""ArtifactStore and ArtifactIOManager on a real temporary directory: formats, versions, crash safety."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.storage.artifacts import (
    LATEST,
    MANIFEST,
    PAYLOAD,
    ArtifactNotFoundError,
    ArtifactStore,
    cache_entry,
    prune_cache,
)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"), keep_versions=2)


@pytest.fixture
def papers(sample_papers: pd.DataFrame) -> pd.DataFrame:
    return sample_papers.head(25).reset_index(drop=True)


def test_dataframe_round_trip(store, papers):
    uri = store.publish("raw_papers/2025-06-01", papers, {"run_id": "r1"})
    loaded = store.load_latest("raw_papers/2025-06-01")
    assert store.latest_uri("raw_papers/2025-06-01") == uri
    pd.testing.assert_frame_equal(loaded.assign(categories=loaded["categories"].map(list)),
                                  papers.assign(categories=papers["categories"].map(list)))
    manifest = store.manifest(uri)
    assert manifest["format"] == "parquet"
    assert manifest["metadata"] == {"run_id": "r1"}
    assert uri.endswith(manifest["version"])


def test_dict_round_trip(store):
    metrics = {"micro": {"P@10": 0.41}, "macro": {"P@10": 0.38}, "test_papers": 120}
    store.publish("tfidf_baseline", metrics)
    assert store.load_latest("tfidf_baseline") == metrics
    assert store.manifest(store.latest_uri("tfidf_baseline"))["format"] == "json"


def test_dataset_dict_round_trip(store):
    sets = DatasetDict({"train": Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"]}),
                        "eval": Dataset.from_dict({"anchor": ["e"], "positive": ["f"]})})
    store.publish("pairs", sets)
    loaded = store.load_latest("pairs")
    assert isinstance(loaded, DatasetDict)
    assert {split: loaded[split].to_dict() for split in loaded} == {split: sets[split].to_dict() for split in sets}


def test_directory_round_trip_takes_ownership_of_the_directory(store, tmp_path):
    model = tmp_path / "model"
    (model / "onnx").mkdir(parents=True)
    (model / "config.json").write_text('{"dim": 384}')
    (model / "onnx" / "model.onnx").write_bytes(b"\x00\x01weights")
    store.publish("model", model)
    payload = store.load_latest("model")
    assert isinstance(payload, Path) and payload.is_dir()
    assert json.loads((payload / "config.json").read_text()) == {"dim": 384}
    assert (payload / "onnx" / "model.onnx").read_bytes() == b"\x00\x01weights"
    assert not model.exists()  # the asset's working directory became the payload


def test_unsupported_objects_are_refused_and_nothing_is_published(store, tmp_path):
    with pytest.raises(TypeError, match="cannot store list"):
        store.publish("bad", [1, 2, 3])
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(TypeError, match="must be a directory"):
        store.publish("bad", a_file)
    assert not store.exists("bad")
    assert store.versions("bad") == []


def test_versions_are_kept_then_pruned(store):
    uris = [store.publish("metrics", {"n": n}) for n in range(4)]
    versions = store.versions("metrics")
    assert len(versions) == 2  # keep_versions=2
    assert [store.load(store.uri(f"{store.root}/metrics/versions/{v}")) for v in versions] == [{"n": 2}, {"n": 3}]
    assert store.latest_uri("metrics") == uris[-1]
    for old in uris[:2]:
        assert not Path(old).exists()
        with pytest.raises(ArtifactNotFoundError):
            store.load(old)
    assert store.load(uris[2]) == {"n": 2}  # the previous version stays: a rollback target


def test_a_pinned_version_outlives_pruning(store):
    released = store.publish("onnx_model", {"v": 0})
    store.pin(released)
    for i in range(1, 5):
        store.publish("onnx_model", {"v": i})
    assert store.load(released) == {"v": 0}  # four newer versions, keep_versions=2: still there
    assert len(store.versions("onnx_model")) == 3  # the two newest and the pinned one


def test_latest_only_moves_after_the_manifest(tmp_path):
    order: list[tuple[str, bool]] = []

    class Recording(ArtifactStore):
        def _write_atomic(self, path: str, data: bytes) -> None:
            if path.endswith(f"/{LATEST}"):
                version_dir = f"{self.root}/metrics/versions/{data.decode()}"
                order.append(("LATEST", Path(version_dir, MANIFEST).exists() and Path(version_dir, PAYLOAD).exists()))
            else:
                order.append((Path(path).name, Path(path).with_name(PAYLOAD).exists()))
            super()._write_atomic(path, data)

    Recording(str(tmp_path)).publish("metrics", {"n": 1})
    assert order == [(MANIFEST, True), ("LATEST", True)]


def test_a_crash_before_the_manifest_leaves_the_previous_version_latest(store):
    good = store.publish("splits", {"good": True})

    class CrashesOnManifest(ArtifactStore):
        def _write_atomic(self, path: str, data: bytes) -> None:
            if path.endswith(MANIFEST):
                raise OSError("disk full")
            super()._write_atomic(path, data)

    with pytest.raises(OSError, match="disk full"):
        CrashesOnManifest(store.root, keep_versions=2).publish("splits", {"good": False})
    on_disk = sorted(p.name for p in Path(store.root, "splits", "versions").iterdir())
    assert len(on_disk) == 2  # the orphan's payload was written...
    assert store.versions("splits") == [Path(good).name]  # ...but it is not a version
    assert store.latest_uri("splits") == good
    assert store.load_latest("splits") == {"good": True}


def test_a_version_directory_without_manifest_is_never_returned(store):
    good = store.publish("splits", {"good": True})
    orphan = Path(store.root, "splits", "versions", "99991231T235959999999Z-deadbeef")  # sorts last
    (orphan / PAYLOAD).parent.mkdir(parents=True)
    (orphan / PAYLOAD).write_text('{"good": false}')
    assert store.versions("splits") == [Path(good).name]
    assert store.latest_uri("splits") == good
    with pytest.raises(ArtifactNotFoundError, match="not a complete artifact"):
        store.load(str(orphan))
    with pytest.raises(ArtifactNotFoundError):
        store.local_payload(str(orphan))
    # Later publishes neither pick it up nor count it towards keep_versions.
    newest = store.publish("splits", {"good": "again"})
    assert store.versions("splits") == [Path(good).name, Path(newest).name]


def test_missing_artifact_says_to_materialize_first(store):
    assert not store.exists("pairs")
    with pytest.raises(ArtifactNotFoundError, match=r"no complete version of 'pairs' .*materialize it first"):
        store.load_latest("pairs")


# -- through Dagster --------------------------------------------------------------------------------

@dg.asset
def table(papers_fixture: dg.ResourceParam[pd.DataFrame]) -> pd.DataFrame:
    return papers_fixture


@dg.asset
def summary() -> dict:
    return {"P@10": 0.5, "subjects": ["cs.CV", "gr-qc"]}


@dg.asset
def sets() -> DatasetDict:
    return DatasetDict({"train": Dataset.from_dict({"anchor": ["a"], "positive": ["b"]})})


@dg.asset
def model_dir(workdir: dg.ResourceParam[str]) -> Path:
    path = Path(workdir) / "built-model"
    path.mkdir(parents=True)
    (path / "weights.bin").write_bytes(b"w" * 16)
    return path


@dg.asset
def consumer(table: pd.DataFrame, summary: dict, sets: DatasetDict, model_dir: Path) -> dict:
    return {"rows": len(table), "ids": table["id"].tolist(), "P@10": summary["P@10"],
            "anchor": sets["train"][0]["anchor"], "weights": (model_dir / "weights.bin").read_bytes().decode()}


def test_io_manager_round_trips_every_format_through_a_run(tmp_path, papers):
    base = str(tmp_path / "artifacts")
    result = dg.materialize(
        [table, summary, sets, model_dir, consumer],
        resources={"io_manager": ArtifactIOManager(base_uri=base), "papers_fixture": papers,
                   "workdir": str(tmp_path / "work")},
    )
    assert result.success
    store = ArtifactStore(base)
    assert store.load_latest("consumer") == {"rows": 25, "ids": papers["id"].tolist(), "P@10": 0.5, "anchor": "a",
                                             "weights": "w" * 16}
    formats = {key: store.manifest(store.latest_uri(key))["format"] for key in ("table", "summary", "sets",
                                                                                 "model_dir")}
    assert formats == {"table": "parquet", "summary": "json", "sets": "hf_dataset", "model_dir": "directory"}
    uri_metadata = result.asset_materializations_for_node("table")[0].metadata["uri"]
    assert uri_metadata.value == store.latest_uri("table")
    assert store.manifest(store.latest_uri("table"))["metadata"]["run_id"] == result.run_id


def test_io_manager_keeps_versions_across_runs(tmp_path):
    base = str(tmp_path / "artifacts")
    resources = {"io_manager": ArtifactIOManager(base_uri=base, keep_versions=2)}
    for _ in range(3):
        assert dg.materialize([summary], resources=resources).success
    assert len(ArtifactStore(base).versions("summary")) == 2


def test_reading_an_unmaterialized_upstream_fails_with_a_clear_message(tmp_path):
    @dg.asset
    def reads_summary(summary: dict) -> dict:
        return summary

    result = dg.materialize([summary, reads_summary], selection=[reads_summary],
                            resources={"io_manager": ArtifactIOManager(base_uri=str(tmp_path))},
                            raise_on_error=False)
    assert not result.success
    error = "\n".join(e.step_failure_data.error.to_string() for e in result.get_step_failure_events())
    assert "no complete version of 'summary'" in error
    assert "materialize it first" in error


def test_pruning_the_download_cache_keeps_what_is_served_and_what_is_fresh(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    uris = {name: f"gs://bucket/{name}/versions/v1" for name in ("served-model", "served-index", "old", "fresh")}
    for name, uri in uris.items():
        (cache_entry(cache, uri) / PAYLOAD).mkdir(parents=True)
        if name != "fresh":  # downloaded an hour ago
            hour_ago = time.time() - 3600
            os.utime(cache_entry(cache, uri), (hour_ago, hour_ago))
    removed = prune_cache({uris["served-model"], uris["served-index"]}, cache, min_age_s=600)
    assert removed == [cache_entry(cache, uris["old"])]
    assert {p.name for p in cache.iterdir()} == {cache_entry(cache, uris[n]).name
                                                  for n in ("served-model", "served-index", "fresh")}
    assert prune_cache(set(), tmp_path / "no-cache-yet") == []
