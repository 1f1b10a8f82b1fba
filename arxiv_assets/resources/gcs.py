"""The artifact IO manager and the releases on Google Cloud Storage: ``gs://<bucket>/<prefix>[/releases]``,
bucket and prefix from config.

Everything about the layout (versions, manifests, ``LATEST``) is ``ArtifactStore``'s; this class only says
where the root is. Credentials come from the environment (Workload Identity on GKE; the
``STORAGE_EMULATOR_HOST`` variable, which gcsfs honours, points it at an emulator in tests).
"""

import dagster as dg
from pydantic import Field

from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.resources.releases import Releases
from arxiv_assets.storage.artifacts import ArtifactStore


def gcs_uri(bucket: str, prefix: str, *parts: str) -> str:
    return "gs://" + "/".join(p.strip("/") for p in (bucket, prefix, *parts) if p.strip("/"))


class GCSLocation(dg.Config):
    """Where a resource's root is on GCS: the artifacts and the releases live under one bucket and prefix."""

    bucket: str = Field(description="GCS bucket holding every artifact (no gs:// scheme)")
    prefix: str = Field(default="", description="Folder inside the bucket, e.g. arxiv-embeddings")
    base_uri: str = Field(default="", description="Unused here: the root is gs://<bucket>/<prefix>[/releases]")


# GCSLocation comes first so its fields win over the local resources' (base_uri there defaults to a local path).
class GCSArtifactIOManager(GCSLocation, ArtifactIOManager):
    """``ArtifactIOManager`` rooted at ``gs://<bucket>/<prefix>``."""

    @property
    def root_uri(self) -> str:
        return gcs_uri(self.bucket, self.prefix)

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root_uri, self.storage_options or None, self.keep_versions)


class GCSReleases(GCSLocation, Releases):
    """``Releases`` at ``gs://<bucket>/<prefix>/releases``, beside the artifacts."""

    @property
    def root_uri(self) -> str:
        return gcs_uri(self.bucket, self.prefix, "releases")
