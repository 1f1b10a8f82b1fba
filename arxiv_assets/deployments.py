"""Resources per deployment, chosen in one place by ``DAGSTER_DEPLOYMENT`` (local | prod).

Nothing in an asset knows where it runs: assets ask for resources by key, and this module is the
only place that decides what those keys mean.

- ``local`` (default): artifacts on the local disk, papers from the bundled sample, Dagster's
  multiprocess executor running one step at a time (``LOCAL_EXECUTOR_CONFIG``).
- ``prod`` (GKE): artifacts in ``gs://$ARXIV_GCS_BUCKET/$ARXIV_GCS_PREFIX``, papers from the arXiv API,
  every step its own Kubernetes Job (``k8s_job_executor``; GPU steps ask for a GPU through their
  op tags, see ``arxiv_assets/k8s.py``). Schedules and the automation sensor start switched on.

How a backfill of ``paper_embeddings`` (every month, after a new model) is cut into runs is chosen here
too: locally one run covers the range (what ``dagster asset materialize --partition-range`` and
``make run`` need: the CLI accepts a range only for single-run assets); in prod one run per
``EMBEDDING_MONTHS_PER_RUN`` months, so the backfill's runs go to parallel pods.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import dagster as dg

from arxiv_assets.resources.gcs import GCSArtifactIOManager, GCSReleases
from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets.resources.releases import Releases
from arxiv_assets.storage.artifacts import default_artifacts_uri
from arxiv_assets.storage.releases import default_releases_uri

DEPLOYMENT_ENV_VAR = "DAGSTER_DEPLOYMENT"

# Read when a run starts (dg.EnvVar), never baked into code or shown in the UI.
GCS_BUCKET_ENV_VAR = "ARXIV_GCS_BUCKET"
GCS_PREFIX_ENV_VAR = "ARXIV_GCS_PREFIX"


def local_resources() -> dict[str, Any]:
    return {
        "io_manager": ArtifactIOManager(base_uri=default_artifacts_uri()),
        "releases": Releases(base_uri=default_releases_uri()),
        "paper_source": PaperSource(kind="bundled"),
    }


def prod_resources() -> dict[str, Any]:
    return {
        # Tables as parquet, datasets and models as directories of files: all under one bucket prefix.
        # keep_versions: how far back a served model can be rolled back (docs/production.md).
        "io_manager": GCSArtifactIOManager(bucket=dg.EnvVar(GCS_BUCKET_ENV_VAR), prefix=dg.EnvVar(GCS_PREFIX_ENV_VAR),
                                           keep_versions=10),
        "releases": GCSReleases(bucket=dg.EnvVar(GCS_BUCKET_ENV_VAR), prefix=dg.EnvVar(GCS_PREFIX_ENV_VAR)),
        "paper_source": PaperSource(kind="arxiv_api"),
    }


# Every step of this graph that computes uses all the cores (torch's and BLAS's threads). Two at once
# oversubscribe them: in `make run` on 2 cores (2026-12-02) training steps took ~8 s instead of ~2 s
# while tfidf_baseline ran beside the model step. On a laptop one step at a time is the faster way.
LOCAL_EXECUTOR_CONFIG: dict[str, Any] = {"max_concurrent": 1}


def local_executor() -> dg.ExecutorDefinition:
    return dg.multiprocess_executor.configured(LOCAL_EXECUTOR_CONFIG, name="multiprocess_one_step_at_a_time")


def prod_executor() -> dg.ExecutorDefinition:
    from dagster_k8s import k8s_job_executor  # imported only where it is used: it pulls in the k8s client

    from arxiv_assets.k8s import K8S_EXECUTOR_CONFIG

    return k8s_job_executor.configured(K8S_EXECUTOR_CONFIG, name="k8s_job_executor")


RESOURCES_BY_DEPLOYMENT: dict[str, Callable[[], dict[str, Any]]] = {
    "local": local_resources,
    "prod": prod_resources,
}
EXECUTOR_BY_DEPLOYMENT: dict[str, Callable[[], dg.ExecutorDefinition]] = {
    "local": local_executor,
    "prod": prod_executor,
}
EMBEDDING_MONTHS_PER_RUN = 6
EMBEDDING_BACKFILL_BY_DEPLOYMENT: dict[str, Callable[[], dg.BackfillPolicy]] = {
    "local": dg.BackfillPolicy.single_run,
    "prod": lambda: dg.BackfillPolicy.multi_run(max_partitions_per_run=EMBEDDING_MONTHS_PER_RUN),
}
# Whether schedules and the automation sensor run as soon as the code location loads. Locally they
# start stopped, so `dagster dev` never retrains behind a newcomer's back.
AUTOMATION_ON_BY_DEFAULT = {"local": False, "prod": True}


def current_deployment() -> str:
    name = os.environ.get(DEPLOYMENT_ENV_VAR, "local")
    if name not in RESOURCES_BY_DEPLOYMENT:
        raise ValueError(f"{DEPLOYMENT_ENV_VAR}={name!r}; choose one of {sorted(RESOURCES_BY_DEPLOYMENT)}")
    return name


def resources_for(deployment: str | None = None) -> dict[str, Any]:
    return RESOURCES_BY_DEPLOYMENT[deployment or current_deployment()]()


def executor_for(deployment: str | None = None) -> dg.ExecutorDefinition:
    return EXECUTOR_BY_DEPLOYMENT[deployment or current_deployment()]()


def embedding_backfill_policy(deployment: str | None = None) -> dg.BackfillPolicy:
    return EMBEDDING_BACKFILL_BY_DEPLOYMENT[deployment or current_deployment()]()


def automation_on_by_default(deployment: str | None = None) -> bool:
    return AUTOMATION_ON_BY_DEFAULT[deployment or current_deployment()]
