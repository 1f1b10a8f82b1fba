"""The artifact IO manager on Google Cloud Storage: ``gs://<bucket>/<prefix>``, bucket and prefix from config.

Everything about the layout (versions, manifests, ``LATEST``) is ``ArtifactStore``'s; this class only says
where the root is. Credentials come from the environment (Workload Identity on GKE; the
``STORAGE_EMULATOR_HOST`` variable, which gcsfs honours, points it at an emulator in tests).
"""

from pydantic import Field

from arxiv_assets.resources.artifact_store import ArtifactIOManager, ArtifactStore


class GCSArtifactIOManager(ArtifactIOManager):
    """``ArtifactIOManager`` rooted at ``gs://<bucket>/<prefix>``."""

    bucket: str = Field(description="GCS bucket holding every artifact (no gs:// scheme)")
    prefix: str = Field(default="", description="Folder inside the bucket, e.g. arxiv-embeddings")
    base_uri: str = Field(default="", description="Unused here: the root is gs://<bucket>/<prefix>")

    @property
    def root_uri(self) -> str:
        prefix = self.prefix.strip("/")
        return f"gs://{self.bucket}/{prefix}" if prefix else f"gs://{self.bucket}"

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root_uri, self.storage_options or None, self.keep_versions)
