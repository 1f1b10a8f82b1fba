"""The UI's server, driven over GraphQL the way the UI drives it.

``dagster-webserver -w workspace.yaml`` runs on 127.0.0.1 with a temporary DAGSTER_HOME holding the
project's dagster.yaml, beside ``dagster-daemon run`` (together, what ``dagster dev`` starts). The
asset graph it serves lists every asset of ``defs``; a materialization of one raw_papers partition
launched through ``launchRun`` on the ``__ASSET_JOB`` (what the UI's "Materialize" button sends) is
dequeued, runs in its own process and succeeds, and the partition shows up as materialized, with
its artifact on disk.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from arxiv_assets.definitions import defs
from arxiv_assets_tests.conftest import PROJECT_ROOT, VENV_BIN
from arxiv_assets_tests.net import free_port, wait_for_http

from .conftest import subprocess_env

LOCATION = "arxiv_assets"  # workspace.yaml
PARTITION = "2025-05-01"

WORKSPACE = """
query {
  workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } }
}"""
ASSET_NODES = "query { assetNodes { assetKey { path } groupName isPartitioned } }"
LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""
RUN_STATUS = "query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"
MATERIALIZATIONS = """
query Mats($partitions: [String!]) {
  assetOrError(assetKey: {path: ["raw_papers"]}) {
    ... on Asset { assetMaterializations(partitions: $partitions) { partition runId } }
  }
}"""


class GraphQL:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        assert "errors" not in payload, payload["errors"]
        return payload["data"]


@pytest.fixture
def webserver(tmp_path: Path, dagster_home: Path):
    home = dagster_home  # its storages exist: the webserver and the daemon start together
    port = free_port()
    env = subprocess_env(DAGSTER_HOME=str(home), ARXIV_PROFILE="smoke")
    log = (tmp_path / "webserver.log").open("wb")
    # What `make dev` (`dagster dev`) runs: the webserver, and the daemon that dequeues launched runs
    # (dagster's default run coordinator queues them).
    procs = [
        subprocess.Popen([str(VENV_BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
                          "-p", str(port)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
        subprocess.Popen([str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                         cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
    ]
    proc = procs[0]
    try:
        wait_for_http(f"http://127.0.0.1:{port}/server_info", timeout_s=90, process=proc)
        graphql = GraphQL(f"http://127.0.0.1:{port}/graphql")
        deadline = time.monotonic() + 120
        while True:  # the code location loads in the background
            (entry,) = graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
            if entry["loadStatus"] == "LOADED":
                break
            assert time.monotonic() < deadline, entry
            time.sleep(1)
        assert entry["name"] == LOCATION
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
        yield graphql, home
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def test_ui_lists_the_asset_graph_and_materializes_a_partition(webserver):
    graphql, home = webserver

    nodes = graphql(ASSET_NODES)["assetNodes"]
    served = {"/".join(node["assetKey"]["path"]) for node in nodes}
    assert served == {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert {"/".join(n["assetKey"]["path"]) for n in nodes if n["isPartitioned"]} == {"raw_papers", "paper_embeddings"}

    launched = graphql(LAUNCH, executionParams={
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                     "pipelineName": "__ASSET_JOB", "assetSelection": [{"path": ["raw_papers"]}]},
        "mode": "default",
        # The launchpad's executor choice: run the step in the run's process (no second code import).
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION}]},
    })["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    deadline = time.monotonic() + 150
    status = None
    while time.monotonic() < deadline:
        status = graphql(RUN_STATUS, runId=run_id)["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"

    materializations = graphql(MATERIALIZATIONS, partitions=[PARTITION])["assetOrError"]["assetMaterializations"]
    assert [(m["partition"], m["runId"]) for m in materializations] == [(PARTITION, run_id)]
    assert (home / "artifacts" / "raw_papers" / PARTITION / "LATEST").is_file()
