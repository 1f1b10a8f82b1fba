"""The served model and its hot swap.

``ModelManager.current`` is one immutable ``Served`` (artifact version, backend, batcher, index).
A reload builds a complete new ``Served`` off the event loop and then replaces the reference in
one assignment; requests that already hold the old one finish on it, because its batcher is closed
only after it has answered every text it accepted. A failed load keeps the old model serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arxiv_assets.ml.embedding import check_model_dir
from arxiv_assets.ml.index import PaperIndex
from arxiv_assets.ml.variants import model_fingerprint
from arxiv_assets.storage.artifacts import prune_cache

from .backends import Backend, BackendChoice, Measurement, choose_backend
from .batching import BatcherClosedError, DynamicBatcher
from .metrics import ServiceMetrics
from .resolution import ArtifactVersion, Resolution, Resolver
from .settings import Settings

logger = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """Nothing to serve yet (no release, or still loading); the message says why."""


class IndexUnavailableError(RuntimeError):
    """No usable faiss_index for /search; the message says why."""


@dataclass(frozen=True)
class Served:
    version: ArtifactVersion
    backend: Backend
    batcher: DynamicBatcher
    fingerprint: str
    measurements: list[Measurement]
    backend_reason: str
    loaded_at: float
    index: PaperIndex | None = None
    index_version: ArtifactVersion | None = None
    index_problem: str | None = None
    index_uri_seen: str | None = None  # the faiss_index version last resolved, even if it was rejected

    def require_index(self) -> PaperIndex:
        if self.index is None:
            raise IndexUnavailableError(self.index_problem or "no faiss_index to search")
        return self.index

    def describe(self) -> dict[str, Any]:
        return {
            "release": self.version.release_id,
            "model": {**self.version.describe(), "fingerprint": self.fingerprint,
                      "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at))},
            "backend": self.backend.name,
            "threads": self.backend.threads,
            "dim": self.backend.dim,
            "max_seq_length": self.backend.max_seq_length,
            "backend_reason": self.backend_reason,
            "backend_measurements": [m.as_dict() for m in self.measurements],
            "index": ({**self.index_version.describe(), "vectors": len(self.index), "kind": self.index.meta.get("kind"),
                       "memory_mapped": self.index.memory_mapped}
                      if self.index is not None and self.index_version else None),
            "index_problem": self.index_problem,
        }


@dataclass
class LoadedModel:
    version: ArtifactVersion
    directory: Path
    choice: BackendChoice
    fingerprint: str


@dataclass
class ManagerState:
    status: str = "starting"  # starting | loading | ready | no_model | error
    problem: str | None = None
    notes: list[str] = field(default_factory=list)
    last_check: float | None = None


class ModelManager:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.resolver = Resolver(settings.releases_uri, settings.storage_options)
        self.current: Served | None = None
        self.state = ManagerState()
        self._lock = asyncio.Lock()
        self._failed: dict[str, str] = {}  # uri -> error, not retried by the poller (POST /admin/reload retries)
        self._poller: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()
        metrics.queue_texts.set_function(lambda: self.current.batcher.queued if self.current else 0)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.wait_for_model_on_startup:
            await self.reload()
        self._poller = asyncio.create_task(self._poll(first=not self.settings.wait_for_model_on_startup),
                                           name="model-poller")

    async def stop(self) -> None:
        if self._poller:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self.current:
            await self.current.batcher.close()
        for task in list(self._retiring):
            with contextlib.suppress(Exception):
                await task

    async def _poll(self, first: bool) -> None:
        if first:
            await self._reload_logged()
        while self.settings.poll_interval_s > 0:
            await asyncio.sleep(self.settings.poll_interval_s)
            await self._reload_logged()

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception:  # the poller must survive anything; the error is on /ready
            logger.exception("reload failed")

    # -- serving -------------------------------------------------------------------------------------
    def require(self) -> Served:
        if self.current is None:
            raise ModelUnavailableError(self.state.problem or "the model is loading; retry shortly")
        return self.current

    async def embed(self, texts: list[str]) -> tuple[Served, np.ndarray, list[int]]:
        """Embeddings from the served model, and which ``Served`` produced them (for its index)."""
        for _ in range(3):
            served = self.require()
            try:
                vectors, tokens = await served.batcher.submit(texts)
            except BatcherClosedError:
                continue  # swapped between taking the model and queueing: use the new one
            self.metrics.texts.inc(len(texts))
            self.metrics.tokens.inc(sum(tokens))
            return served, vectors, tokens
        raise ModelUnavailableError("the model is being replaced; retry shortly")

    # -- reloading -----------------------------------------------------------------------------------
    def _no_model_message(self, resolution: Resolution) -> str:
        return (f"no release to serve: {'; '.join(resolution.notes)} (or point ARXIV_SERVING_RELEASES_URI at the "
                f"releases folder)")

    async def reload(self, retry_failed: bool = False) -> dict[str, Any]:
        """Serve the current release's model and index if they differ from what is served; report what happened."""
        async with self._lock:
            try:
                resolution = await asyncio.to_thread(self.resolver.resolve)
            except Exception as error:  # an unreadable pointer keeps the current model serving
                logger.exception("resolving the artifacts to serve failed")
                self.metrics.reloads.labels("error").inc()
                detail = f"cannot read {self.resolver.where()}: {error}"
                if self.current is None:
                    self.state.status, self.state.problem = "error", detail
                return {"changed": False, "status": self.state.status, "detail": detail}
            self.state.last_check = time.time()
            self.state.notes = resolution.notes
            if resolution.model is None:
                if self.current is None:
                    self.state.status, self.state.problem = "no_model", self._no_model_message(resolution)
                return {"changed": False, "status": self.state.status, "detail": self.state.problem}
            current = self.current
            model_changed = current is None or current.version.uri != resolution.model.uri
            index_uri = resolution.index.uri if resolution.index else None
            index_changed = current is None or current.index_uri_seen != index_uri
            if not model_changed and not index_changed:
                return {"changed": False, "status": self.state.status, **current.describe()}
            if model_changed and resolution.model.uri in self._failed and not retry_failed:
                return {"changed": False, "status": self.state.status,
                        "detail": f"{resolution.model.uri} failed to load before: {self._failed[resolution.model.uri]}"}
            if current is None:
                self.state.status = "loading"
            try:
                served = await self._build(resolution, reuse=None if model_changed else current)
            except Exception as error:
                logger.exception("loading %s failed", resolution.model.uri)
                self._failed[resolution.model.uri] = str(error)
                self.metrics.reloads.labels("failed").inc()
                if self.current is None:
                    self.state.status = "error"
                    self.state.problem = f"could not load {resolution.model.uri}: {error}"
                return {"changed": False, "status": self.state.status, "detail": f"load failed: {error}"}
            self._swap(served)
            self.metrics.reloads.labels("loaded").inc()
            await asyncio.to_thread(self._prune_cache, served)
            return {"changed": True, "status": "ready", **served.describe()}

    async def _build(self, resolution: Resolution, reuse: Served | None) -> Served:
        if reuse is None:
            loaded = await asyncio.to_thread(self._load_model, resolution.model)
            backend = loaded.choice.backend
            batcher = DynamicBatcher(
                backend.encode, max_batch_size=self.settings.max_batch_size,
                max_batch_tokens=self.settings.max_batch_tokens, max_wait_s=self.settings.batch_wait_ms / 1000,
                max_queue_texts=self.settings.max_queue_texts, max_seq_length=backend.max_seq_length,
                observe_batch=self.metrics.observe_batch,
            )
            batcher.start()
            base = {"version": loaded.version, "backend": backend, "batcher": batcher,
                    "fingerprint": loaded.fingerprint, "measurements": loaded.choice.measurements,
                    "backend_reason": loaded.choice.reason, "loaded_at": time.time()}
        else:
            base = {"version": reuse.version, "backend": reuse.backend, "batcher": reuse.batcher,
                    "fingerprint": reuse.fingerprint, "measurements": reuse.measurements,
                    "backend_reason": reuse.backend_reason, "loaded_at": reuse.loaded_at}
        index, index_problem = await asyncio.to_thread(self._load_index, resolution.index, base["fingerprint"],
                                                       base["backend"].dim)
        return Served(**base, index=index, index_version=resolution.index if index else None,
                      index_problem=index_problem, index_uri_seen=resolution.index.uri if resolution.index else None)

    def _load_model(self, version: ArtifactVersion) -> LoadedModel:
        started = time.perf_counter()
        directory = version.local_path(self.settings.storage_options)
        check_model_dir(directory)
        fingerprint = model_fingerprint(directory)
        released = version.metadata.get("model_fingerprint")
        if released and released != fingerprint:  # the manifest and the files disagree: refuse both
            raise ValueError(f"{version.uri} holds model {fingerprint}, but release {version.release_id} names "
                             f"{released}")
        choice = choose_backend(
            directory, self.settings.backend, self.settings.threads, self.settings.probe_texts,
            self.settings.backend_rounds, self.settings.max_batch_size, self.settings.min_cosine_fp32,
            self.settings.reduced_precision_bar(version.metadata.get("decision", "base")),
        )
        logger.info("loaded %s (%s) with backend %s in %.1fs", version.uri, version.asset, choice.backend.name,
                    time.perf_counter() - started)
        return LoadedModel(version, directory, choice, fingerprint)

    def _load_index(self, version: ArtifactVersion | None, fingerprint: str, dim: int) -> tuple[PaperIndex | None,
                                                                                               str | None]:
        if version is None:
            return None, "the served release has no faiss_index: /search is off"
        try:
            index = PaperIndex.load(version.local_path(self.settings.storage_options), mmap=self.settings.index_mmap)
        except Exception as error:
            return None, f"faiss_index {version.uri} cannot be loaded: {error}"
        built_by = index.meta.get("model_fingerprint")
        if index.dim != dim or (built_by and built_by != fingerprint):
            return None, (f"faiss_index {version.uri} was built by model {built_by} (dim {index.dim}) but model "
                          f"{fingerprint} (dim {dim}) is served: this release cannot search")
        return index, None

    def _prune_cache(self, served: Served) -> None:
        """Downloads of releases no longer served go (the loaded model and index live in memory)."""
        keep = {served.version.uri} | ({served.index_version.uri} if served.index_version else set())
        for entry in prune_cache(keep, min_age_s=self.settings.cache_min_age_s):
            logger.info("deleted the cached download %s: its release is no longer served", entry)

    def _swap(self, served: Served) -> None:
        old, self.current = self.current, served  # one assignment: the next request sees the new model
        self.state.status, self.state.problem = "ready", None
        self.metrics.model.info({"uri": served.version.uri, "release_id": served.version.release_id,
                                 "backend": served.backend.name, "asset": served.version.asset})
        if old is not None and old.batcher is not served.batcher:
            task = asyncio.create_task(old.batcher.close(), name="retire-model")  # drains in-flight requests
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
