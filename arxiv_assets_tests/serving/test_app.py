"""The service's logic through FastAPI's TestClient, against real models and real materializations."""

from __future__ import annotations

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from arxiv_assets.ml.text import paper_texts
from serving import Settings, create_app
from serving.backends import available_backends

from .conftest import SHORT_TEXTS, materialize_artifact, own_embeddings


def make_client(dagster_home: Path, **overrides) -> TestClient:
    defaults = {"backend": "torch-fp32", "threads": 1}  # pinned: nothing to measure, quick to start
    settings = Settings(dagster_home=str(dagster_home), poll_interval_s=0, wait_for_model_on_startup=True,
                        **{**defaults, **overrides})
    return TestClient(create_app(settings))


@dataclass(frozen=True)
class World:
    """A Dagster instance holding one passing ``model`` and one passing ``faiss_index`` materialization."""

    home: Path
    model_run: str
    index_run: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, index_dir: Path) -> World:
    home = tmp_path_factory.mktemp("dagster_home")
    artifacts = str(tmp_path_factory.mktemp("artifacts"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        model_run = materialize_artifact(instance, artifacts, "promoted_model", model_dir)
        index_run = materialize_artifact(instance, artifacts, "faiss_index", index_dir)
    assert model_run.success and index_run.success
    return World(home, model_run.run_id, index_run.run_id)


@pytest.fixture(scope="module")
def client(world: World):
    """One service for the tests that only read; small limits so the limit tests are cheap."""
    with make_client(world.home, max_texts=5, max_chars=100, max_k=10) as client:
        yield client


def metric_value(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_without_a_model_health_is_up_and_model_endpoints_say_what_to_materialize(dagster_home: Path):
    with make_client(dagster_home) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "no_model"
        for path, body in [("/embed", {"texts": ["a"]}), ("/search", {"query": "a"}),
                           ("/find_similar", {"query": "a", "documents": ["b"]}),
                           ("/v1/embeddings", {"input": "a", "model": "arxiv-embeddings"})]:
            response = client.post(path, json=body)
            assert response.status_code == 503, path
            assert "materialize onnx_model" in response.json()["detail"]


def test_embed_returns_the_models_own_normalized_embeddings(client: TestClient, world: World, model_dir: Path):
    response = client.post("/embed", json={"texts": SHORT_TEXTS})
    assert response.status_code == 200
    body = response.json()
    vectors = np.array(body["embeddings"])
    assert vectors.shape == (len(SHORT_TEXTS), 384) and body["dim"] == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, own_embeddings(model_dir, SHORT_TEXTS), atol=1e-4)
    assert body["model_version"] == world.model_run and body["backend"] == "torch-fp32"

    ready = client.get("/ready").json()
    assert ready["model"]["run_id"] == world.model_run and ready["model"]["asset"] == "promoted_model"
    assert ready["model"]["materialized_at"].startswith("20") and ready["backend"] == "torch-fp32"


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

    wrong = client.post("/v1/embeddings", json={"input": "a", "model": "text-embedding-3-small"})
    assert wrong.status_code == 404 and "arxiv-embeddings" in wrong.json()["detail"]
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
    assert body["index_version"] == world.index_run and body["model_version"] == world.model_run
    top = body["results"][0]
    assert (top["id"], top["title"], top["subject"]) == (paper["id"], paper["title"], paper["primary_subject"])
    assert len(body["results"]) == 3
    assert body["results"][0]["score"] >= body["results"][1]["score"] >= body["results"][2]["score"]
    assert client.get("/ready").json()["index"]["vectors"] == len(index_papers)


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


def test_bearer_token_guards_everything_but_health(world: World):
    with make_client(world.home, api_token="s3cret") as client:
        assert client.get("/health").status_code == 200
        for method, path, body in [("GET", "/ready", None), ("POST", "/embed", {"texts": ["a"]}),
                                   ("GET", "/metrics", None), ("POST", "/admin/reload", None)]:
            assert client.request(method, path, json=body).status_code == 401, path
            wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = client.request(method, path, json=body, headers={"Authorization": "Bearer s3cret"})
            assert right.status_code == 200, path


def test_overload_is_refused_with_429(world: World):
    # a queue of 3 texts, and a batch that waits 300 ms for company: 8 simultaneous requests overflow it
    with make_client(world.home, max_queue_texts=3, max_texts=2, batch_wait_ms=300) as client:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda text: client.post("/embed", json={"texts": [text]}), SHORT_TEXTS * 2))
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses and 429 in statuses and set(statuses) == {200, 429}
        refused = next(r for r in responses if r.status_code == 429)
        assert "ARXIV_SERVING_MAX_QUEUE_TEXTS" in refused.json()["detail"] and refused.headers["Retry-After"]
        assert metric_value(client, 'arxiv_serving_rejected_total{reason="queue_full"}') == statuses.count(429)
        assert client.post("/embed", json={"texts": SHORT_TEXTS[:2]}).status_code == 200  # it recovers


def test_settings_refuse_a_queue_smaller_than_one_request():
    with pytest.raises(ValueError, match="max_queue_texts"):
        Settings(max_queue_texts=4, max_texts=4)


def test_an_index_built_by_another_model_is_not_searched(instance, dagster_home, tmp_path, model_dir, index_dir):
    other = tmp_path / "other-index"
    shutil.copytree(index_dir, other)
    meta = json.loads((other / "index.json").read_text())
    (other / "index.json").write_text(json.dumps({**meta, "model_fingerprint": "0123456789abcdef"}))
    artifacts = str(tmp_path / "artifacts")
    assert materialize_artifact(instance, artifacts, "promoted_model", model_dir).success
    assert materialize_artifact(instance, artifacts, "faiss_index", other).success
    with make_client(dagster_home) as client:
        response = client.post("/search", json={"query": "galaxies"})
        assert response.status_code == 503
        assert "materialize faiss_index for the served model" in response.json()["detail"]
        assert client.post("/embed", json={"texts": ["still embeds"]}).status_code == 200


def test_a_materialization_whose_blocking_check_failed_is_never_served(instance, dagster_home, tmp_path, model_dir,
                                                                       onnx_dir):
    artifacts = str(tmp_path / "artifacts")
    good = materialize_artifact(instance, artifacts, "promoted_model", model_dir)
    bad = materialize_artifact(instance, artifacts, "onnx_model", onnx_dir, passes=False)
    assert good.success and not bad.success
    with make_client(dagster_home) as client:
        ready = client.get("/ready").json()
        assert ready["model"]["run_id"] == good.run_id and ready["model"]["asset"] == "promoted_model"


def test_reload_swaps_to_a_newer_onnx_model_measuring_backends(instance, dagster_home, tmp_path, model_dir,
                                                               onnx_dir):
    artifacts = str(tmp_path / "artifacts")
    first = materialize_artifact(instance, artifacts, "promoted_model", model_dir)
    with make_client(dagster_home, backend="auto", probe_texts=2) as client:
        # A plain model has no ONNX files: one of the PyTorch backends this machine offers.
        assert client.get("/ready").json()["backend"] in available_backends(model_dir)
        assert client.get("/ready").json()["backend"].startswith("torch-")
        assert client.post("/admin/reload").json()["changed"] is False
        second = materialize_artifact(instance, artifacts, "onnx_model", onnx_dir,
                                      metadata={"source_model_run_id": first.run_id})
        reloaded = client.post("/admin/reload").json()
        assert reloaded["changed"] is True and reloaded["model"]["run_id"] == second.run_id
        ready = client.get("/ready").json()
        measured = {m["backend"]: m for m in ready["backend_measurements"]}
        assert set(measured) == set(available_backends(onnx_dir))
        assert measured["onnx-fp32"]["min_cosine"] > 0.999 and measured["onnx-int8"]["min_cosine"] > 0.98
        chosen = measured[ready["backend"]]
        fastest = max(m["texts_per_s"] for m in measured.values() if m["passed"])
        assert chosen["passed"] and chosen["texts_per_s"] == fastest
        vectors = np.array(client.post("/embed", json={"texts": SHORT_TEXTS}).json()["embeddings"])
        assert (vectors * own_embeddings(model_dir, SHORT_TEXTS)).sum(axis=1).min() > 0.98
        assert metric_value(client, 'arxiv_serving_reloads_total{outcome="loaded"}') == 2.0
        assert f'run_id="{second.run_id}"' in client.get("/metrics").text
