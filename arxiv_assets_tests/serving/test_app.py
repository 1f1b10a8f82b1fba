"""The service's logic through FastAPI's TestClient, against real models and real releases."""

from __future__ import annotations

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from arxiv_assets.ml.text import paper_texts
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets.storage.releases import Release
from arxiv_assets.storage.releases import main as releases_cli
from serving import Settings, create_app
from serving.backends import Measurement, available_backends, decide
from serving.settings import FINE_TUNED_MIN_COSINE_REDUCED

from .conftest import SHORT_TEXTS, own_embeddings, publish_release


def make_client(root: Path, **overrides) -> TestClient:
    defaults = {"backend": "torch-fp32", "threads": 1}  # pinned: nothing to measure, quick to start
    settings = Settings(releases_uri=str(root / "releases"), poll_interval_s=0, wait_for_model_on_startup=True,
                        **{**defaults, **overrides})
    return TestClient(create_app(settings))


@dataclass(frozen=True)
class World:
    """A releases folder whose CURRENT release serves the bundled model and an index it built."""

    root: Path
    release: Release


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, index_dir: Path) -> World:
    root = tmp_path_factory.mktemp("world")
    return World(root, publish_release(root, model_dir, index_dir))


@pytest.fixture(scope="module")
def client(world: World):
    """One service for the tests that only read; small limits so the limit tests are cheap."""
    with make_client(world.root, max_texts=5, max_chars=100, max_k=10) as client:
        yield client


def metric_value(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_without_a_release_health_is_up_and_model_endpoints_say_what_to_materialize(tmp_path: Path):
    with make_client(tmp_path) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "no_model"
        for path, body in [("/embed", {"texts": ["a"]}), ("/search", {"query": "a"}),
                           ("/find_similar", {"query": "a", "documents": ["b"]}),
                           ("/v1/embeddings", {"input": "a", "model": "arxiv-embeddings"})]:
            response = client.post(path, json=body)
            assert response.status_code == 503, path
            assert "materialize `release`" in response.json()["detail"]


def test_embed_returns_the_models_own_normalized_embeddings(client: TestClient, world: World, model_dir: Path):
    response = client.post("/embed", json={"texts": SHORT_TEXTS})
    assert response.status_code == 200
    body = response.json()
    vectors = np.array(body["embeddings"])
    assert vectors.shape == (len(SHORT_TEXTS), 384) and body["dim"] == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, own_embeddings(model_dir, SHORT_TEXTS), atol=1e-4)
    assert body["model_version"] == world.release.release_id and body["backend"] == "torch-fp32"

    ready = client.get("/ready").json()
    assert ready["release"] == world.release.release_id and ready["model"]["uri"] == world.release.model_uri
    assert ready["model"]["released_at"].startswith("20") and ready["backend"] == "torch-fp32"


def test_find_similar_ranks_documents_by_cosine(client: TestClient, model_dir: Path):
    query, documents = "message passing on molecular graphs", SHORT_TEXTS[1:]
    results = client.post("/find_similar", json={"query": query, "documents": documents, "top_k": 2}).json()["results"]
    assert len(results) == 2
    vectors = own_embeddings(model_dir, [query, *documents])
    expected = np.argsort(-(vectors[1:] @ vectors[0]))[:2]
    assert [r["index"] for r in results] == expected.tolist()
    assert results[0]["score"] >= results[1]["score"]
    assert results[0]["document"] == documents[expected[0]]


def test_openai_embeddings_float_and_base64_with_usage(client: TestClient, model_dir: Path):
    floats = client.post("/v1/embeddings", json={"input": SHORT_TEXTS[:2], "model": "arxiv-embeddings"}).json()
    assert floats["object"] == "list" and floats["model"] == "arxiv-embeddings"
    assert [d["index"] for d in floats["data"]] == [0, 1] and floats["data"][0]["object"] == "embedding"
    assert floats["usage"]["prompt_tokens"] == floats["usage"]["total_tokens"] > 4
    encoded = client.post("/v1/embeddings", json={"input": SHORT_TEXTS[0], "model": "arxiv-embeddings",
                                                  "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats["data"][0]["embedding"], atol=1e-5)
    np.testing.assert_allclose(decoded, own_embeddings(model_dir, SHORT_TEXTS[:1])[0], atol=1e-4)

    # one model is served: a client naming another model (or none) gets it, and the response says which it is
    for other in ({"model": "text-embedding-3-small"}, {}):
        answer = client.post("/v1/embeddings", json={"input": SHORT_TEXTS[0], **other}).json()
        assert answer["model"] == "arxiv-embeddings"
        np.testing.assert_allclose(answer["data"][0]["embedding"], floats["data"][0]["embedding"], atol=1e-5)
    assert client.post("/v1/embeddings", json={"input": "a", "model": "arxiv-embeddings",
                                               "dimensions": 16}).status_code == 422
    assert client.post("/v1/embeddings", json={"input": [1, 2], "model": "arxiv-embeddings"}).status_code == 422
    assert client.get("/v1/models").json()["data"][0]["id"] == "arxiv-embeddings"


@pytest.mark.parametrize(("path", "body", "status", "fragment"), [
    ("/embed", {"texts": []}, 422, "texts is empty"),
    ("/embed", {"texts": ["ok", "   "]}, 422, "texts[1] is empty or whitespace"),
    ("/embed", {"texts": ["\n\t"]}, 422, "texts[0] is empty"),
    ("/embed", {"texts": ["ok", 3]}, 422, None),
    ("/embed", {"texts": "not a list"}, 422, None),
    ("/embed", {}, 422, None),
    ("/embed", {"texts": ["x"] * 6}, 413, "ARXIV_SERVING_MAX_TEXTS"),
    ("/embed", {"texts": ["x" * 101]}, 413, "ARXIV_SERVING_MAX_CHARS"),
    ("/find_similar", {"query": " ", "documents": ["a"]}, 422, "query[0] is empty"),
    ("/find_similar", {"query": "a", "documents": []}, 422, "documents is empty"),
    ("/find_similar", {"query": "a", "documents": ["b"], "top_k": 11}, 422, "ARXIV_SERVING_MAX_K"),
    ("/search", {"query": "a", "k": 11}, 422, "ARXIV_SERVING_MAX_K"),
    ("/search", {"query": "a", "k": 0}, 422, None),
    ("/search", {"query": 5}, 422, None),
    ("/v1/embeddings", {"input": "", "model": "arxiv-embeddings"}, 422, "input[0] is empty"),
    ("/v1/embeddings", {"input": ["a"] * 6, "model": "arxiv-embeddings"}, 413, "ARXIV_SERVING_MAX_TEXTS"),
])
def test_bad_input_is_refused_naming_the_limit(client: TestClient, path, body, status, fragment):
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    if fragment:
        assert fragment in response.json()["detail"]


def test_search_finds_papers_in_the_served_index(client: TestClient, world: World, index_papers: pd.DataFrame):
    paper = index_papers.iloc[5]
    response = client.post("/search", json={"query": paper_texts(index_papers.iloc[[5]])[0][:100], "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["index_version"] == body["model_version"] == world.release.release_id
    top = body["results"][0]
    assert (top["id"], top["title"], top["subject"]) == (paper["id"], paper["title"], paper["primary_subject"])
    assert len(body["results"]) == 3
    assert body["results"][0]["score"] >= body["results"][1]["score"] >= body["results"][2]["score"]
    assert client.get("/ready").json()["index"]["vectors"] == len(index_papers)
    assert client.get("/ready").json()["index"]["memory_mapped"] is False  # read into memory unless asked


def test_a_memory_mapped_index_is_searched_from_its_file(world: World, index_papers: pd.DataFrame):
    with make_client(world.root, index_mmap=True) as client:
        index = client.get("/ready").json()["index"]
        assert index["memory_mapped"] is True
        index_file = ArtifactStore(index["uri"]).local_payload(index["uri"]).resolve() / "index.faiss"
        assert str(index_file) in Path("/proc/self/maps").read_text()  # the service's own copy, mapped
        query = paper_texts(index_papers.iloc[[5]])[0][:100]
        assert client.post("/search", json={"query": query, "k": 1}).json()["results"][0]["id"] == \
            index_papers.iloc[5]["id"]


def test_metrics_count_requests_and_batches(client: TestClient):
    ok = 'arxiv_serving_requests_total{method="POST",route="/embed",status="200"}'
    refused = 'arxiv_serving_requests_total{method="POST",route="/embed",status="422"}'
    names = (ok, refused, "arxiv_serving_texts_embedded_total", "arxiv_serving_batch_size_count")
    before = {name: metric_value(client, name) for name in names}
    client.post("/embed", json={"texts": SHORT_TEXTS})
    client.post("/embed", json={"texts": []})
    assert metric_value(client, ok) == before[ok] + 1
    assert metric_value(client, refused) == before[refused] + 1
    assert metric_value(client, names[2]) == before[names[2]] + len(SHORT_TEXTS)
    assert metric_value(client, names[3]) > before[names[3]]


def test_bearer_token_guards_everything_but_the_probes(world: World):
    with make_client(world.root, api_token="s3cret") as client:
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
        for method, path, body in [("POST", "/embed", {"texts": ["a"]}),
                                   ("GET", "/metrics", None), ("POST", "/admin/reload", None)]:
            assert client.request(method, path, json=body).status_code == 401, path
            wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = client.request(method, path, json=body, headers={"Authorization": "Bearer s3cret"})
            assert right.status_code == 200, path


def test_the_default_limits_take_a_request_of_openai_size(world: World, model_dir: Path):
    with make_client(world.root) as client:
        # more texts than ten batches (and than the limit before it became OpenAI's 2048), answered in order
        many = [f"{text} {i}" for i in range(75) for text in SHORT_TEXTS]
        vectors = client.post("/v1/embeddings", json={"input": many, "model": "arxiv-embeddings"}).json()["data"]
        assert [d["index"] for d in vectors] == list(range(300))
        np.testing.assert_allclose([vectors[i]["embedding"] for i in (0, 299)],
                                   own_embeddings(model_dir, [many[0], many[299]]), atol=1e-4)
        too_many = client.post("/v1/embeddings", json={"input": ["a"] * 2049, "model": "arxiv-embeddings"})
        assert too_many.status_code == 413 and "limit is 2048" in too_many.json()["detail"]


def test_strict_model_name_refuses_other_models_naming_the_served_one(world: World):
    with make_client(world.root, strict_model_name=True) as client:
        for other in ({"model": "text-embedding-3-small"}, {}):
            wrong = client.post("/v1/embeddings", json={"input": "a", **other})
            assert wrong.status_code == 404 and "use 'arxiv-embeddings'" in wrong.json()["detail"]
        assert client.post("/v1/embeddings", json={"input": "a", "model": "arxiv-embeddings"}).status_code == 200


def test_overload_is_refused_with_429(world: World):
    # a queue of 3 texts, and a batch that waits 300 ms for company: 8 simultaneous requests overflow it
    with make_client(world.root, max_queue_texts=3, max_texts=2, batch_wait_ms=300) as client:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda text: client.post("/embed", json={"texts": [text]}), SHORT_TEXTS * 2))
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses and 429 in statuses and set(statuses) == {200, 429}
        refused = next(r for r in responses if r.status_code == 429)
        assert "ARXIV_SERVING_MAX_QUEUE_TEXTS" in refused.json()["detail"] and refused.headers["Retry-After"]
        assert metric_value(client, 'arxiv_serving_rejected_total{reason="queue_full"}') == statuses.count(429)
        assert client.post("/embed", json={"texts": SHORT_TEXTS[:2]}).status_code == 200  # it recovers


def test_the_reduced_precision_bar_follows_what_the_release_serves():
    defaults = Settings(releases_uri="unused")
    assert defaults.reduced_precision_bar("challenger") == defaults.reduced_precision_bar("champion") == 0.994
    assert defaults.reduced_precision_bar("base") == defaults.min_cosine_fp32  # int8 of the base is below the base
    explicit = Settings(releases_uri="unused", min_cosine_reduced=0.98)
    assert explicit.reduced_precision_bar("base") == explicit.reduced_precision_bar("challenger") == 0.98


def test_a_release_of_the_base_model_serves_nothing_below_fp32s_parity(tmp_path, onnx_dir):
    publish_release(tmp_path, onnx_dir, decision="base")
    with make_client(tmp_path, backend="auto", probe_texts=2) as client:
        ready = client.get("/ready").json()
        measured = {m["backend"]: m for m in ready["backend_measurements"]}
        for int8 in ("onnx-int8", "openvino-int8"):
            assert measured[int8]["threshold"] == 0.999
            assert measured[int8]["passed"] == (measured[int8]["min_cosine"] >= 0.999)
        assert measured[ready["backend"]]["passed"]


def test_settings_refuse_a_queue_smaller_than_one_request():
    with pytest.raises(ValueError, match="max_queue_texts"):
        Settings(max_queue_texts=4, max_texts=4)


def test_an_index_built_by_another_model_is_not_searched(tmp_path, model_dir, index_dir):
    other = tmp_path / "other-index"
    shutil.copytree(index_dir, other)
    meta = json.loads((other / "index.json").read_text())
    (other / "index.json").write_text(json.dumps({**meta, "model_fingerprint": "0123456789abcdef"}))
    publish_release(tmp_path, model_dir, other)  # a manifest the release asset would refuse, written by hand
    with make_client(tmp_path) as client:
        response = client.post("/search", json={"query": "galaxies"})
        assert response.status_code == 503
        assert "this release cannot search" in response.json()["detail"]
        assert client.post("/embed", json={"texts": ["still embeds"]}).status_code == 200


def test_a_release_whose_files_are_another_model_is_not_served(tmp_path, model_dir):
    publish_release(tmp_path, model_dir, model_fingerprint_claimed="0123456789abcdef")
    with make_client(tmp_path) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "names 0123456789abcdef" in ready.json()["detail"]
        assert client.post("/embed", json={"texts": ["a"]}).status_code == 503


def test_reload_follows_the_pointer_to_a_new_release_and_back_on_rollback(tmp_path, model_dir, onnx_dir):
    first = publish_release(tmp_path, model_dir)
    with make_client(tmp_path, backend="auto", probe_texts=2) as client:
        # A plain model has no ONNX files: one of the PyTorch backends this machine offers.
        assert client.get("/ready").json()["backend"] in available_backends(model_dir)
        assert client.get("/ready").json()["backend"].startswith("torch-")
        assert client.post("/admin/reload").json()["changed"] is False
        second = publish_release(tmp_path, onnx_dir)
        reloaded = client.post("/admin/reload").json()
        assert reloaded["changed"] is True and reloaded["release"] == second.release_id
        ready = client.get("/ready").json()
        measured = {m["backend"]: m for m in ready["backend_measurements"]}
        assert set(measured) == set(available_backends(onnx_dir))
        assert measured["onnx-fp32"]["min_cosine"] > 0.999 and measured["onnx-int8"]["min_cosine"] > 0.98
        # a fine-tuned release (challenger): reduced precision is held to the bar that admits static int8
        assert measured["onnx-int8"]["threshold"] == measured["openvino-int8"]["threshold"] == \
            FINE_TUNED_MIN_COSINE_REDUCED
        chosen, reason = decide([Measurement(**m) for m in ready["backend_measurements"]])
        assert (chosen.backend, chosen.threads, reason) == (ready["backend"], ready["threads"], ready["backend_reason"])
        assert chosen.passed
        vectors = np.array(client.post("/embed", json={"texts": SHORT_TEXTS}).json()["embeddings"])
        assert (vectors * own_embeddings(model_dir, SHORT_TEXTS)).sum(axis=1).min() > 0.98
        assert metric_value(client, 'arxiv_serving_reloads_total{outcome="loaded"}') == 2.0
        assert f'release_id="{second.release_id}"' in client.get("/metrics").text

        # Rollback: the documented command moves CURRENT back; the next look at the pointer follows it.
        assert releases_cli(["rollback", "--releases-uri", str(tmp_path / "releases")]) == 0
        rolled_back = client.post("/admin/reload").json()
        assert rolled_back["changed"] is True and rolled_back["release"] == first.release_id
        assert client.get("/ready").json()["backend"].startswith("torch-")
