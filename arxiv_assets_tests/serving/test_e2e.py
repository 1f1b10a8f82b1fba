"""The service as deployed: ``python -m serving`` under uvicorn on 127.0.0.1, reading a real Dagster instance.

One server for the module, driven through its life in order: it starts with nothing to serve,
picks up a model materialized while it runs (polling), serves concurrent requests, swaps to a
newer ONNX export and index while requests are in flight (POST /admin/reload), answers the
official ``openai`` client, and survives schemathesis without a 5xx.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import hypothesis
import numpy as np
import openai
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from serving.backends import available_backends

from .conftest import SHORT_TEXTS, assert_embeddings_match, free_port, materialize_artifact, own_embeddings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Server:
    url: str
    home: Path
    artifacts: str
    process: subprocess.Popen
    runs: dict[str, str]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=60)

    def materialize(self, key: str, source: Path, **kwargs) -> str:
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            run = materialize_artifact(instance, self.artifacts, key, source, **kwargs)
        assert run.success
        self.runs[key] = run.run_id
        return run.run_id


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} while waiting for {what}")
        try:
            result = predicate()
        except httpx.TransportError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("e2e_home")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ARXIV_SERVING_PORT": str(port),
        "ARXIV_SERVING_POLL_INTERVAL_S": "1",
        "ARXIV_SERVING_BACKEND": "auto",
        "ARXIV_SERVING_PROBE_TEXTS": "2",
        "ARXIV_SERVING_MAX_TEXTS": "4",
        "ARXIV_SERVING_MAX_CHARS": "300",
        "ARXIV_SERVING_API_TOKEN": TOKEN,
        "ARXIV_SERVING_LOG_LEVEL": "warning",
    }
    log = (tmp_path_factory.mktemp("e2e_logs") / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "serving"], cwd=PROJECT_ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", home, str(tmp_path_factory.mktemp("e2e_artifacts")), process, {})
    try:
        wait_for(lambda: httpx.get(f"{server.url}/health", timeout=2).status_code == 200, 90, "/health", process)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_starts_without_a_model_and_says_what_to_materialize(server: Server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # no token needed
    with server.client() as client:
        wait_for(lambda: client.get("/ready").json()["status"] == "no_model", 30, "the first look for a model")
        response = client.post("/embed", json={"texts": ["a"]})
        assert response.status_code == 503 and "materialize onnx_model" in response.json()["detail"]
        assert httpx.post(f"{server.url}/embed", json={"texts": ["a"]}).status_code == 401


def test_picks_up_a_new_materialization_without_restart(server: Server, model_dir: Path):
    run_id = server.materialize("promoted_model", model_dir)
    with server.client() as client:
        ready = wait_for(lambda: (r := client.get("/ready")).status_code == 200 and r.json(), 60, "the model")
        # A plain model has no ONNX files: one of the PyTorch backends this machine offers, chosen by measuring.
        assert ready["model"]["run_id"] == run_id and ready["backend"] in available_backends(model_dir)
        assert ready["backend"].startswith("torch-")
        vectors = np.array(client.post("/embed", json={"texts": SHORT_TEXTS}).json()["embeddings"])
    assert_embeddings_match(vectors, own_embeddings(model_dir, SHORT_TEXTS), ready["backend"])


def test_concurrent_requests_are_batched_and_answered_in_order(server: Server):
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


def test_hot_swap_to_onnx_and_index_while_requests_are_in_flight(server: Server, onnx_dir: Path, index_dir: Path):
    old_run = server.runs["promoted_model"]
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
        wait_for(lambda: len(seen) >= 3, 60, "traffic on the old model")
        new_run = server.materialize("onnx_model", onnx_dir, metadata={"source_model_run_id": old_run})
        server.materialize("faiss_index", index_dir)
        with server.client() as client:
            reloaded = client.post("/admin/reload").json()
            assert reloaded["model"]["run_id"] == new_run, reloaded  # (or the poller got there first)
            count = len(seen)
            wait_for(lambda: len(seen) >= count + 3, 60, "traffic on the new model")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert {status for status, _ in seen} == {200}  # nothing failed during the swap
    versions = [version for _, version in seen]
    assert versions[0] == old_run and versions[-1] == new_run
    with server.client() as client:
        ready = client.get("/ready").json()
        search = client.post("/search", json={"query": "dark matter in dwarf galaxies", "k": 3}).json()
    measured = {(m["backend"], m["threads"]) for m in ready["backend_measurements"]}
    assert {name for name, _ in measured} == set(available_backends(onnx_dir))
    assert (ready["backend"], ready["threads"]) in measured
    assert ready["index"]["run_id"] == server.runs["faiss_index"] and len(search["results"]) == 3


def test_the_openai_client_gets_the_services_embeddings(server: Server):
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


def test_schemathesis_finds_no_server_error(server: Server):
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
