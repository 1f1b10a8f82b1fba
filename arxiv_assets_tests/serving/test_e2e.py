"""The service as deployed: ``python -m serving`` under uvicorn on 127.0.0.1, reading a releases folder.

The server runs through ``serve_without_pipeline`` (Dagster and W&B unimportable, as in the slim
serving image). Each test can run alone: ``served`` publishes the first release and waits for the
poller to pick it up, the swap and rollback tests publish their own releases on top of whatever is
current, and the test of an empty start uses a server of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import hypothesis
import numpy as np
import openai
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from arxiv_assets.storage.releases import Release
from arxiv_assets_tests.conftest import PROJECT_ROOT
from arxiv_assets_tests.net import free_port, wait_until
from serving.backends import available_backends

from .conftest import SHORT_TEXTS, assert_embeddings_match, own_embeddings, publish_release

TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Server:
    url: str
    root: Path  # artifacts/ and releases/
    process: subprocess.Popen

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=60)

    def serving(self, release: Release, timeout: float = 120) -> dict:
        """Wait until the poller serves ``release``; its /ready."""
        with self.client() as client:
            return wait_until(lambda: (r := client.get("/ready")).status_code == 200
                              and r.json()["release"] == release.release_id and r.json(), timeout,
                              f"release {release.release_id}", self.process)


@contextlib.contextmanager
def running_server(root: Path, log_path: Path) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "ARXIV_SERVING_RELEASES_URI": str(root / "releases"),
        "ARXIV_SERVING_PORT": str(port),
        "ARXIV_SERVING_POLL_INTERVAL_S": "1",
        "ARXIV_SERVING_BACKEND": "auto",
        "ARXIV_SERVING_PROBE_TEXTS": "2",
        "ARXIV_SERVING_MAX_TEXTS": "4",
        "ARXIV_SERVING_MAX_CHARS": "300",
        "ARXIV_SERVING_API_TOKEN": TOKEN,
        "ARXIV_SERVING_LOG_LEVEL": "warning",
    }
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "arxiv_assets_tests.serving.serve_without_pipeline"],
                                   cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(f"http://127.0.0.1:{port}", root, process)
        try:
            wait_until(lambda: httpx.get(f"{server.url}/health", timeout=2).status_code == 200, 90, "/health", process)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert "is not in the serving image" not in log_path.read_text()  # nothing tried to import the pipeline


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("e2e"), tmp_path_factory.mktemp("e2e_logs") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def served(server: Server, model_dir: Path, index_dir: Path) -> Release:
    """The first release (the plain model and its index), published while the server runs and picked up."""
    release = publish_release(server.root, model_dir, index_dir)
    server.serving(release)
    return release


def test_starts_without_a_release_and_says_what_to_materialize(tmp_path: Path):
    with running_server(tmp_path, tmp_path / "server.log") as server:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # no token needed
        with server.client() as client:
            wait_until(lambda: client.get("/ready").json()["status"] == "no_model", 30, "the first look for a release")
            response = client.post("/embed", json={"texts": ["a"]})
            assert response.status_code == 503 and "materialize `release`" in response.json()["detail"]
            assert httpx.post(f"{server.url}/embed", json={"texts": ["a"]}).status_code == 401


def test_picks_up_a_new_release_without_restart(server: Server, served: Release, model_dir: Path, index_dir: Path):
    newer = publish_release(server.root, model_dir, index_dir)  # whatever the server serves now, this replaces it
    ready = server.serving(newer)
    # A plain model has no ONNX files: one of the PyTorch backends this machine offers, chosen by measuring.
    assert ready["backend"] in available_backends(model_dir) and ready["backend"].startswith("torch-")
    with server.client() as client:
        vectors = np.array(client.post("/embed", json={"texts": SHORT_TEXTS}).json()["embeddings"])
    assert_embeddings_match(vectors, own_embeddings(model_dir, SHORT_TEXTS), ready["backend"])


def test_concurrent_requests_are_batched_and_answered_in_order(server: Server, served: Release):
    requests = [[SHORT_TEXTS[i % 4], f"request {i}: {SHORT_TEXTS[(i + 1) % 4]}"] for i in range(16)]
    with server.client() as client:
        alone = {tuple(texts): np.array(client.post("/embed", json={"texts": texts}).json()["embeddings"])
                 for texts in requests[:2]}
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda texts: client.post("/embed", json={"texts": texts}), requests))
        metrics = client.get("/metrics").text
        backend = client.get("/ready").json()["backend"]
    assert all(r.status_code == 200 for r in responses)
    for texts, response in zip(requests[:2], responses[:2], strict=True):  # batched with others, same vectors
        assert_embeddings_match(np.array(response.json()["embeddings"]), alone[tuple(texts)], backend)
    sizes = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
             if line.startswith("arxiv_serving_batch_size_")}
    assert sizes["arxiv_serving_batch_size_sum"] / sizes["arxiv_serving_batch_size_count"] > 2  # shared passes


def test_hot_swap_to_a_new_release_while_requests_are_in_flight(server: Server, served: Release, onnx_dir: Path,
                                                                index_dir: Path):
    with server.client() as client:
        old = client.get("/ready").json()["release"]
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic():
        with server.client() as client:
            while not stop.is_set():
                response = client.post("/embed", json={"texts": SHORT_TEXTS[:2]})
                seen.append((response.status_code, response.json().get("model_version", "")))

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(seen) >= 3, 60, "traffic on the old model")
        new = publish_release(server.root, onnx_dir, index_dir).release_id  # the same weights, exported
        with server.client() as client:
            reloaded = client.post("/admin/reload").json()
            assert reloaded["release"] == new, reloaded  # (or the poller got there first)
            count = len(seen)
            wait_until(lambda: len(seen) >= count + 3, 60, "traffic on the new model")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert {status for status, _ in seen} == {200}  # nothing failed during the swap
    versions = [version for _, version in seen]
    assert versions[0] == old and versions[-1] == new
    with server.client() as client:
        ready = client.get("/ready").json()
        search = client.post("/search", json={"query": "dark matter in dwarf galaxies", "k": 3}).json()
    measured = {(m["backend"], m["threads"]) for m in ready["backend_measurements"]}
    assert {name for name, _ in measured} == set(available_backends(onnx_dir))
    assert (ready["backend"], ready["threads"]) in measured
    assert ready["index"]["release_id"] == new and len(search["results"]) == 3


def test_rollback_is_one_command_and_the_service_follows(server: Server, served: Release, model_dir: Path,
                                                        index_dir: Path):
    before = publish_release(server.root, model_dir, index_dir)  # two releases: one to go back to
    newest = publish_release(server.root, model_dir, index_dir)
    server.serving(newest)
    rollback = subprocess.run([sys.executable, "-m", "arxiv_assets.storage.releases", "rollback",
                               "--releases-uri", str(server.root / "releases")],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert rollback.returncode == 0, rollback.stderr
    assert before.release_id in rollback.stdout
    server.serving(before)  # picked up by polling: no restart, no reload call


def test_the_openai_client_gets_the_services_embeddings(server: Server, served: Release):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)
    result = client.embeddings.create(model="arxiv-embeddings", input=SHORT_TEXTS[:3])  # base64 on the wire
    vectors = np.array([item.embedding for item in result.data])
    assert vectors.shape == (3, 384) and result.usage.prompt_tokens > 0
    with server.client() as http:
        direct = np.array(http.post("/embed", json={"texts": SHORT_TEXTS[:3]}).json()["embeddings"])
    # int8 activations are quantized per batch, so another batch may move a vector slightly
    assert (vectors * direct).sum(axis=1).min() > 0.99
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="arxiv-embeddings", input="x")


def test_schemathesis_finds_no_server_error(server: Server, served: Release):
    """Generated valid and invalid requests for every operation: refusals are fine, 5xx is not."""
    with server.client() as client:  # the model and the index are served, so every endpoint can answer
        assert client.get("/ready").json()["index"] is not None
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/embed", "/find_similar", "/search", "/v1/embeddings", "/ready"}
    calls: list[int] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(max_examples=5, deadline=None, derandomize=True, database=None,
                                 suppress_health_check=list(hypothesis.HealthCheck))
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def no_server_error(case):
                response = case.call_and_validate(base_url=server.url, headers=AUTH, checks=[not_a_server_error],
                                                  timeout=60)
                calls.append(response.status_code)

            try:
                no_server_error()
            except hypothesis.errors.Unsatisfiable:  # nothing invalid to send to an operation without inputs
                assert mode == GenerationMode.NEGATIVE
    assert len(calls) > 2 * len(operations) and max(calls) < 500
