"""Shared fixtures: real data, real IO manager, real Dagster runs in a temporary directory.

``smoke_artifacts`` (session scope) is the whole data + baseline graph materialized once, in process,
with the ``smoke`` profile. Later tests (training, serving, ...) reuse it instead of materializing again::

    def test_something(smoke_artifacts):
        result = dg.materialize(
            [*ALL_ASSETS_NEEDED_AS_INPUTS, my_asset],
            selection=[my_asset],
            instance=smoke_artifacts.instance,      # the DagsterInstance that recorded the runs
            resources={**smoke_artifacts.resources, "my_resource": ...},  # a fresh dict per access
            run_config=smoke_run_config("my_asset"),  # the smoke profile's config for these ops only
        )
        splits = smoke_artifacts.load("splits")     # the LATEST stored version of an asset key

Attributes of ``SmokeArtifacts``:

* ``base_uri`` (str): the ArtifactIOManager's base directory; ``store`` is an ``ArtifactStore`` on it.
* ``instance`` (``dg.DagsterInstance``): an ephemeral in-memory instance holding the runs below.
* ``resources`` (dict): ``{"io_manager": ArtifactIOManager(base_uri), "paper_source": PaperSource()}``.
* ``run_config`` (``dg.RunConfig``): the smoke profile's config for the ops of this fixture's runs.
* ``raw_run`` / ``downstream_run`` (``dg.ExecuteInProcessResult``): the single-run backfill of
  ``raw_papers`` over every month of the bundled sample, then ``splits``, ``pairs``, ``tfidf_baseline``.
* ``load(key)``: ``store.load_latest(key)``, e.g. ``load("raw_papers/2025-06-01")`` or ``load("pairs")``.

``dagster_home`` (function scope) is a temporary DAGSTER_HOME holding the project's dagster.yaml (the
local instance ``make run`` uses), set in the environment, its SQLite storages already created.

Plain helpers (``from arxiv_assets_tests.conftest import ...``): ``smoke_run_config(*ops)`` is
``assets.config.run_config("smoke")`` restricted to ``ops`` (Dagster refuses config for ops not in the run);
``partition_range_tags(start, end)`` makes one run cover a range of months; ``run_error_text(result)``
joins a failed run's step errors; ``write_papers(frame, path)`` writes a parquet ``PaperSource`` can read.

Treat it as read-only: re-materializing its assets adds versions other tests may then read.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from arxiv_assets.assets.baseline import tfidf_baseline
from arxiv_assets.assets.config import run_config
from arxiv_assets.assets.data import pairs, raw_papers, splits
from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets.resources.releases import Releases
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE
from arxiv_assets.storage.artifacts import CACHE_DIR_ENV_VAR, ArtifactStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the project venv's console scripts (dagster, uvicorn, ...)

# Every month the bundled sample covers (partitions are monthly, keyed by their first day).
SAMPLE_FIRST_MONTH = "2025-03-01"
SAMPLE_LAST_MONTH = "2026-07-01"


def partition_range_tags(start: str, end: str) -> dict[str, str]:
    """Run tags that make one run cover the partitions ``start..end`` (the single-run backfill
    ``dagster asset materialize --partition-range`` issues; ``dg.materialize`` honours them)."""
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def smoke_run_config(*ops: str) -> dg.RunConfig:
    """``assets.config.run_config("smoke")`` restricted to ``ops`` (all of it when none are named)."""
    full = run_config("smoke")
    return dg.RunConfig(ops={op: config for op, config in full.ops.items() if not ops or op in ops})


def run_error_text(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's error, causes included, as one string."""
    return "\n".join(event.step_failure_data.error.to_string() for event in result.get_step_failure_events())


@dataclass(frozen=True)
class SmokeArtifacts:
    base_uri: str
    instance: dg.DagsterInstance
    run_config: dg.RunConfig
    raw_run: dg.ExecuteInProcessResult
    downstream_run: dg.ExecuteInProcessResult

    @property
    def resources(self) -> dict[str, Any]:
        return {"io_manager": ArtifactIOManager(base_uri=self.base_uri), "paper_source": PaperSource(kind="bundled"),
                "releases": Releases(base_uri=f"{self.base_uri}/releases")}

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.base_uri)

    def load(self, key: str) -> object:
        return self.store.load_latest(key)


@pytest.fixture(scope="session", autouse=True)
def artifact_cache_in_the_session_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Remote payloads (the GCS emulator's) download into this session's temp folder, which pytest prunes,
    not the shared default cache, where every run's fresh buckets used to add ~0.7 GB for good."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV_VAR, str(tmp_path_factory.mktemp("artifact-cache")))
        yield


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml puts every storage under $DAGSTER_HOME
    # Create the SQLite storages once, as a first `dagster dev` or run would: two processes starting together
    # on an empty home (webserver and daemon, two runs) both stamp schedules.db's alembic version and one then
    # fails with "more than one head" (a Dagster race, seen on CI).
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    return home


@pytest.fixture(scope="session")
def sample_papers() -> pd.DataFrame:
    """The bundled real sample (18,799 papers), read once; copy before changing it."""
    return pd.read_parquet(BUNDLED_SAMPLE)


@pytest.fixture(scope="session")
def smoke_artifacts(tmp_path_factory: pytest.TempPathFactory) -> SmokeArtifacts:
    base_uri = str(tmp_path_factory.mktemp("smoke_artifacts"))
    instance = dg.DagsterInstance.ephemeral()
    resources = {"io_manager": ArtifactIOManager(base_uri=base_uri), "paper_source": PaperSource(kind="bundled"),
                 "releases": Releases(base_uri=f"{base_uri}/releases")}
    raw_run = dg.materialize(
        [raw_papers], instance=instance, resources=resources,
        tags=partition_range_tags(SAMPLE_FIRST_MONTH, SAMPLE_LAST_MONTH),
    )
    run_config = smoke_run_config("splits", "pairs", "tfidf_baseline")
    downstream_run = dg.materialize(
        [raw_papers, splits, pairs, tfidf_baseline], selection=[splits, pairs, tfidf_baseline],
        instance=instance, resources=resources, run_config=run_config,
    )
    return SmokeArtifacts(base_uri, instance, run_config, raw_run, downstream_run)


def write_papers(papers: pd.DataFrame, path: Path) -> str:
    """Write a paper table as parquet (the format ``PaperSource(kind="parquet")`` reads); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    papers.to_parquet(path, index=False)
    return str(path)


GRAPH_UP_TO_BASELINE = [raw_papers, splits, pairs, tfidf_baseline]


@dataclass(frozen=True)
class SmokeModel:
    """The smoke graph's ``model``, ``evaluation`` (ir_metrics, classifier_metrics) and ``promoted_model``,
    materialized once in one run."""

    artifacts: SmokeArtifacts
    run: dg.ExecuteInProcessResult

    @property
    def model_dir(self) -> Path:
        return self.artifacts.store.local_payload(self.artifacts.store.latest_uri("model"))


@pytest.fixture(scope="session")
def smoke_model(smoke_artifacts: SmokeArtifacts) -> SmokeModel:
    from arxiv_assets.assets.promotion import promoted_model
    from arxiv_assets.assets.scoring import score_models
    from arxiv_assets.assets.training import model

    run = dg.materialize(
        [*GRAPH_UP_TO_BASELINE, model, score_models, promoted_model], selection=[model, score_models, promoted_model],
        instance=smoke_artifacts.instance, resources=smoke_artifacts.resources,
        run_config=smoke_run_config("model", "score_models"),
    )
    return SmokeModel(smoke_artifacts, run)
