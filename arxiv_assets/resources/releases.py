"""``Releases``: where the ``release`` asset writes manifests and moves ``CURRENT`` (and where the
evaluation finds the champion), as a typed resource over the plain ``ReleaseStore``."""

from typing import Any

import dagster as dg
from pydantic import Field

from arxiv_assets.storage.releases import ReleaseStore


class Releases(dg.ConfigurableResource):
    """The releases root: a local path, or ``gs://bucket/prefix/releases`` (see ``GCSReleases``)."""

    base_uri: str = Field(description="Folder holding release manifests and the CURRENT pointer")
    storage_options: dict[str, Any] = {}

    @property
    def root_uri(self) -> str:
        return self.base_uri

    def store(self) -> ReleaseStore:
        return ReleaseStore(self.root_uri, self.storage_options or None)
