"""What to serve: the release ``CURRENT`` names, and nothing else (arxiv_assets/storage/releases.py).

The ``release`` asset writes an immutable manifest per release (the ONNX export's and the index's
URIs, and the fingerprint of the model both were made from) and moves the ``CURRENT`` pointer only
after every gate and check passed. The service reads that pointer, a local path or ``gs://``; it
needs no Dagster instance. Rolling back is moving the pointer back
(``python -m arxiv_assets.storage.releases rollback``); the poller follows it like any other move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets.storage.releases import Release, ReleaseStore


@dataclass(frozen=True)
class ArtifactVersion:
    asset: str  # onnx_model | faiss_index
    uri: str
    release_id: str
    released_at: str
    metadata: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"asset": self.asset, "uri": self.uri, "release_id": self.release_id, "released_at": self.released_at,
                "metadata": self.metadata}

    def local_path(self, storage_options: dict[str, Any] | None = None) -> Path:
        """The payload directory on this machine (downloaded once into the cache for gs://)."""
        return ArtifactStore(self.uri, storage_options or None).local_payload(self.uri)


@dataclass
class Resolution:
    release: Release | None
    model: ArtifactVersion | None
    index: ArtifactVersion | None
    notes: list[str] = field(default_factory=list)  # why there is nothing to serve


class Resolver:
    def __init__(self, releases_uri: str, storage_options: dict[str, Any] | None = None) -> None:
        self.store = ReleaseStore(releases_uri, storage_options or None)

    def where(self) -> str:
        return f"{self.store.base_uri}/CURRENT"

    def resolve(self) -> Resolution:
        release = self.store.current()
        if release is None:
            return Resolution(None, None, None, [f"{self.where()} does not exist yet: materialize `release`"])
        model = ArtifactVersion("onnx_model", release.model_uri, release.release_id, release.created_at,
                                {"model_fingerprint": release.model_fingerprint, "decision": release.decision})
        index = None if release.index_uri is None else ArtifactVersion(
            "faiss_index", release.index_uri, release.release_id, release.created_at,
            {"model_fingerprint": release.model_fingerprint})
        return Resolution(release, model, index)
