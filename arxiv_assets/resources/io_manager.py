"""``ArtifactIOManager``: Dagster's side of ``ArtifactStore`` (arxiv_assets/storage/artifacts.py)."""

from typing import Any

import dagster as dg

from arxiv_assets.storage.artifacts import ArtifactNotFoundError, ArtifactRef, ArtifactStore


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Dagster's side of ``ArtifactStore``: one versioned artifact per asset (and partition).

    An input annotated ``ArtifactRef`` gets the version's URI and local payload instead of the loaded
    object (the release records URIs). An unpartitioned asset that reads a partitioned one gets
    ``{partition_key: value}`` for the partitions materialized so far; a run covering several partitions
    returns such a dict too.
    """

    base_uri: str
    storage_options: dict[str, Any] = {}
    keep_versions: int = 3

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.base_uri, self.storage_options or None, self.keep_versions)

    @staticmethod
    def _key(asset_key: dg.AssetKey, partition: str | None) -> str:
        return "/".join(asset_key.path) + (f"/{partition}" if partition else "")

    def latest_value(self, asset_key: dg.AssetKey, partition: str | None = None) -> object | None:
        """What the latest materialization of ``asset_key`` (and ``partition``) stored, or None if there is none:
        for an asset that reuses its own previous output (``paper_embeddings`` keeps valid vectors)."""
        store, key = self.store(), self._key(asset_key, partition)
        return store.load_latest(key) if store.exists(key) else None

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        store = self.store()
        partitions = context.asset_partition_keys if context.has_asset_partitions else [None]
        if len(partitions) > 1:
            if not isinstance(obj, dict) or set(obj) != set(partitions):
                raise TypeError(f"a run over partitions {partitions} must return a dict keyed by them")
            values = obj
        else:
            values = {partitions[0]: obj}
        uris = {p: store.publish(self._key(context.asset_key, p), v, {"run_id": context.run_id})
                for p, v in values.items()}
        context.add_output_metadata({"uri": dg.MetadataValue.path(next(iter(uris.values())))}
                                    if len(uris) == 1 else {"uris": dg.MetadataValue.json(uris)})

    def load_input(self, context: dg.InputContext) -> object:
        store = self.store()
        asset_key = context.asset_key
        if not context.has_asset_partitions:
            if getattr(context.dagster_type, "typing_type", None) is ArtifactRef:
                return store.latest_ref(self._key(asset_key, None))
            return store.load_latest(self._key(asset_key, None))
        keys = context.asset_partition_keys
        if len(keys) == 1 and context.has_partition_key:  # a partition reads its own upstream partition
            return store.load_latest(self._key(asset_key, keys[0]))
        loaded = {k: store.load_latest(self._key(asset_key, k)) for k in keys if store.exists(self._key(asset_key, k))}
        if not loaded:
            raise ArtifactNotFoundError(f"no partition of {asset_key.to_user_string()} is materialized "
                                        f"under {self.base_uri}")
        missing = len(keys) - len(loaded)
        if missing:
            context.log.info(f"{asset_key.to_user_string()}: {len(loaded)} partition(s) loaded, "
                             f"{missing} not materialized yet")
        return loaded
