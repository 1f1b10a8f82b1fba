"""Which artifact versions to serve: the newest materializations whose blocking checks passed.

A materialization whose blocking check failed is still written to the artifact store (the check
runs after the output), and the store's ``LATEST`` points at it; only the Dagster instance knows
it failed. So the service reads the instance: for ``onnx_model``, ``model`` and ``faiss_index`` it
walks materializations newest first and takes the first one where every check planned in its run
finished, and none of the blocking ones failed. Its ``uri`` metadata (written by the artifact IO
manager) is the version to load, through ``ArtifactStore`` so local paths and ``gs://`` behave the
same. Explicit URIs (settings) bypass the instance.

Between the two embedding artifacts, ``onnx_model`` (it carries the PyTorch weights and the ONNX
exports) wins unless a ``promoted_model`` is newer than it, i.e. not exported yet. ``model`` (the
fine-tuned model before its evaluation) is never served: ``promoted_model`` is the fine-tuned model
only when it passed every quality gate, and the untrained base model otherwise.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arxiv_assets.resources.artifact_store import ArtifactStore

ONNX_MODEL_KEY = "onnx_model"
MODEL_KEY = "promoted_model"
INDEX_KEY = "faiss_index"
RUNLESS_RUN_ID = ""  # dagster's run id for events reported outside a run
HISTORY_LIMIT = 25  # materializations looked at per asset before giving up


@dataclass(frozen=True)
class ArtifactVersion:
    asset: str  # onnx_model | model | faiss_index | explicit
    uri: str
    run_id: str
    materialized_at: float | None  # epoch seconds
    metadata: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        info = asdict(self)
        info["materialized_at"] = (datetime.fromtimestamp(self.materialized_at, UTC).isoformat()
                                   if self.materialized_at else None)
        return info

    def local_path(self, storage_options: dict[str, Any] | None = None) -> Path:
        """The payload directory on this machine (downloaded once into the cache for gs://)."""
        return ArtifactStore(self.uri, storage_options or None).local_payload(self.uri)


@dataclass
class Resolution:
    model: ArtifactVersion | None
    index: ArtifactVersion | None
    notes: list[str] = field(default_factory=list)  # why newer materializations were passed over


def _metadata_text(value: Any) -> str:
    return str(getattr(value, "value", value))


class Resolver:
    def __init__(self, dagster_home: str | None, model_uri: str | None = None, index_uri: str | None = None,
                 storage_options: dict[str, Any] | None = None) -> None:
        self.dagster_home = dagster_home
        self.model_uri = model_uri
        self.index_uri = index_uri
        self.storage_options = storage_options or None
        self._instance = None
        self._lock = threading.Lock()

    # -- the Dagster instance --------------------------------------------------------------
    def instance(self):
        """The instance at ``dagster_home`` (DAGSTER_HOME by default), or ``None`` if there is none yet."""
        from dagster import DagsterInstance

        if self._instance is None:
            if self.dagster_home:
                if not (Path(self.dagster_home).is_dir()):
                    return None
                self._instance = DagsterInstance.from_config(self.dagster_home)
            else:
                self._instance = DagsterInstance.get()  # raises, naming DAGSTER_HOME, if unset
        return self._instance

    def close(self) -> None:
        with self._lock:
            if self._instance is not None:
                self._instance.dispose()
                self._instance = None

    def where(self) -> str:
        return f"the Dagster instance at {self.dagster_home}" if self.dagster_home else "the Dagster instance"

    def failed_checks(self, instance, asset_key, run_id: str) -> list[str]:
        """Why the checks planned for ``asset_key`` in ``run_id`` do not let it be served ([] = they passed)."""
        from dagster import AssetCheckKey, AssetCheckSeverity, DagsterEventType

        if run_id == RUNLESS_RUN_ID:
            return []
        events = instance.get_records_for_run(
            run_id, of_type={DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED, DagsterEventType.ASSET_CHECK_EVALUATION},
        ).records
        check_keys = {
            AssetCheckKey(data.asset_key, data.check_name)
            for data in (record.event_log_entry.dagster_event.event_specific_data for record in events)
            if data.asset_key == asset_key
        }
        problems = []
        for check_key in sorted(check_keys, key=lambda k: k.name):
            history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=HISTORY_LIMIT)
            execution = next((h for h in history if h.run_id == run_id), None)  # newest first
            if execution is None or execution.status.value == "PLANNED":
                problems.append(f"check {check_key.name} has not finished")
                continue
            evaluation = execution.evaluation
            if evaluation is None or evaluation.passed:
                continue
            blocking = evaluation.blocking if evaluation.blocking is not None else (
                evaluation.severity == AssetCheckSeverity.ERROR)
            if blocking:
                problems.append(f"blocking check {check_key.name} failed")
        return problems

    def latest_passing(self, key: str, notes: list[str]) -> ArtifactVersion | None:
        from dagster import AssetKey

        instance = self.instance()
        if instance is None:
            return None
        asset_key = AssetKey(key)
        records = instance.fetch_materializations(asset_key, limit=HISTORY_LIMIT).records  # newest first
        for record in records:
            materialization = record.asset_materialization
            metadata = dict(materialization.metadata) if materialization else {}
            if "uri" not in metadata:
                notes.append(f"{key} run {record.run_id}: no uri metadata (not written by the artifact IO manager)")
                continue
            problems = self.failed_checks(instance, asset_key, record.run_id)
            if problems:
                notes.append(f"{key} run {record.run_id}: {'; '.join(problems)}")
                continue
            return ArtifactVersion(
                asset=key, uri=_metadata_text(metadata["uri"]), run_id=record.run_id,
                materialized_at=record.timestamp,
                metadata={k: _metadata_text(v) for k, v in metadata.items()
                          if k in {"source_model_run_id", "source_model_fingerprint", "model_fingerprint", "kind"}},
            )
        return None

    # -- explicit URIs ---------------------------------------------------------------------------
    def explicit(self, uri: str) -> ArtifactVersion:
        manifest = ArtifactStore(uri, self.storage_options).manifest(uri)
        created = manifest.get("created_at")
        return ArtifactVersion(
            asset="explicit", uri=uri, run_id=str(manifest.get("metadata", {}).get("run_id", "")),
            materialized_at=datetime.fromisoformat(created).timestamp() if created else None,
        )

    # -- the decision ---------------------------------------------------------------------------------
    def resolve(self) -> Resolution:
        with self._lock:  # one instance connection, shared by the poller and /admin/reload
            notes: list[str] = []
            if self.model_uri:
                model = self.explicit(self.model_uri)
            else:
                exported = self.latest_passing(ONNX_MODEL_KEY, notes)
                promoted = self.latest_passing(MODEL_KEY, notes)
                model = exported
                if promoted and (exported is None or (
                        exported.metadata.get("source_model_run_id") != promoted.run_id
                        and (promoted.materialized_at or 0) > (exported.materialized_at or 0))):
                    model = promoted  # promoted but not exported yet: serve it with PyTorch
            index = self.explicit(self.index_uri) if self.index_uri else self.latest_passing(INDEX_KEY, notes)
            return Resolution(model=model, index=index, notes=notes)
