"""Resources per deployment, chosen in one place by ``DAGSTER_DEPLOYMENT`` (local | prod).

Nothing in an asset knows where it runs: assets ask for resources by key, and this module is the
only place that decides what those keys mean.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from arxiv_assets.resources.artifact_store import ArtifactIOManager
from arxiv_assets.resources.paper_source import PaperSource

DEPLOYMENT_ENV_VAR = "DAGSTER_DEPLOYMENT"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def local_artifacts_uri() -> str:
    """``ARXIV_ARTIFACTS_URI`` if set, else ``$DAGSTER_HOME/artifacts`` (the project's .dagster_home by default)."""
    home = os.environ.get("DAGSTER_HOME") or str(PROJECT_ROOT / ".dagster_home")
    return os.environ.get("ARXIV_ARTIFACTS_URI", str(Path(home) / "artifacts"))


def local_resources() -> dict[str, Any]:
    return {
        "io_manager": ArtifactIOManager(base_uri=local_artifacts_uri()),
        "paper_source": PaperSource(kind="bundled"),
    }


RESOURCES_BY_DEPLOYMENT = {
    "local": local_resources,
}


def current_deployment() -> str:
    name = os.environ.get(DEPLOYMENT_ENV_VAR, "local")
    if name not in RESOURCES_BY_DEPLOYMENT:
        raise ValueError(f"{DEPLOYMENT_ENV_VAR}={name!r}; choose one of {sorted(RESOURCES_BY_DEPLOYMENT)}")
    return name


def resources_for(deployment: str | None = None) -> dict[str, Any]:
    return RESOURCES_BY_DEPLOYMENT[deployment or current_deployment()]()
