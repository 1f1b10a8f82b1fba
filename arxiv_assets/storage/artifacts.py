"""Asset storage for tables, datasets, metrics and model directories, on a local disk or GCS.

Layout under ``base_uri`` (a local path or ``gs://bucket/prefix``), per asset (and partition)::

    <asset key>[/<partition>]/versions/<version>/payload...   immutable once written
    <asset key>[/<partition>]/versions/<version>/_manifest.json
    <asset key>[/<partition>]/LATEST                          name of the newest complete version
    <asset key>[/<partition>]/pinned/<version>                kept whatever its age (a release uses it)

A version's files are all written before its manifest, and the manifest before ``LATEST`` moves
(a rename locally, a single-object write on GCS: both atomic). A run that dies mid-write leaves
an orphaned version that nothing points to, so a reader never takes half an artifact for a whole
one. The newest ``keep_versions`` versions stay, and every pinned one: a release pins the versions it
serves (arxiv_assets/storage/releases.py), so rolling back never finds its model pruned.

Formats are chosen by the Python type an asset returns — never pickle:
``pandas.DataFrame`` -> parquet, ``datasets.Dataset(Dict)`` -> ``save_to_disk`` directory,
``dict`` -> JSON, ``pathlib.Path`` (a directory the asset built) -> that directory's files.
"""


import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "_manifest.json"
LATEST = "LATEST"
PAYLOAD = "payload"


def default_artifacts_uri() -> str:
    """``ARXIV_ARTIFACTS_URI`` if set, else ``$DAGSTER_HOME/artifacts`` (the project's .dagster_home by default)."""
    home = os.environ.get("DAGSTER_HOME") or str(PROJECT_ROOT / ".dagster_home")
    return os.environ.get("ARXIV_ARTIFACTS_URI", str(Path(home) / "artifacts"))


class ArtifactNotFoundError(FileNotFoundError):
    """No complete version of an artifact exists at the given location."""


def open_root(base_uri: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str, str]:
    """(filesystem, root path, protocol) of a local path or ``gs://`` URI, as every store here opens it."""
    options = dict(storage_options or {})
    if "://" in base_uri and not base_uri.startswith("file://"):
        # gcsfs caches listings forever by default (and fsspec shares one instance per process), so
        # versions written by another pod would stay invisible; list the bucket afresh every time.
        options.setdefault("use_listings_cache", False)
    fs, root = fsspec.core.url_to_fs(base_uri, **options)
    return fs, root.rstrip("/"), base_uri.split("://", 1)[0] if "://" in base_uri else "file"


def write_atomic(fs: Any, protocol: str, path: str, data: bytes) -> None:
    """Readers see the old object or the new one, never part of one."""
    if protocol == "file":  # write aside, then rename
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    else:  # one object upload is atomic on GCS
        fs.pipe_file(path, data)


@dataclass(frozen=True)
class ArtifactRef:
    """One stored version: its URI (what manifests and releases record) and its payload on this machine."""

    uri: str
    path: Path


CACHE_DIR_ENV_VAR = "ARXIV_ARTIFACT_CACHE_DIR"


def default_cache_dir() -> Path:
    """Where remote payloads are downloaded to: ``ARXIV_ARTIFACT_CACHE_DIR`` if set, else a folder in the temp
    directory. Versions are immutable, so an entry never goes stale, but entries add up: ``prune_cache``."""
    return Path(os.environ.get(CACHE_DIR_ENV_VAR) or Path(tempfile.gettempdir()) / "arxiv-embeddings-cache")


def cache_entry(cache_dir: Path, version_uri: str) -> Path:
    """The folder a remote version's payload is downloaded into."""
    return cache_dir / hashlib.sha256(version_uri.encode()).hexdigest()[:24]


def prune_cache(keep_uris: set[str], cache_dir: Path | None = None, min_age_s: float = 600.0) -> list[Path]:
    """Delete the cached payloads of every version but ``keep_uris``; return what was deleted.

    An entry (or a download still being staged) younger than ``min_age_s`` stays: another process sharing
    the cache may have just fetched it to load."""
    cache_dir = cache_dir or default_cache_dir()
    if not cache_dir.is_dir():
        return []
    keep = {cache_entry(cache_dir, uri).name for uri in keep_uris}
    now = datetime.now(UTC).timestamp()
    removed = []
    for entry in cache_dir.iterdir():
        if entry.name not in keep and now - entry.stat().st_mtime >= min_age_s:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class ArtifactStore:
    """The storage protocol above, usable without Dagster (the serving app reads through it too)."""

    def __init__(self, base_uri: str, storage_options: dict[str, Any] | None = None, keep_versions: int = 3,
                 cache_dir: str | None = None) -> None:
        self.fs, self.root, self.protocol = open_root(base_uri, storage_options)
        self.keep_versions = keep_versions
        self.cache_dir = Path(cache_dir or default_cache_dir())

    def uri(self, path: str) -> str:
        return path if self.protocol == "file" else f"{self.protocol}://{path}"

    def _strip(self, uri: str) -> str:
        return uri.split("://", 1)[1] if "://" in uri else uri

    # -- writing -----------------------------------------------------------------------------
    def publish(self, key: str, obj: object, metadata: dict[str, Any] | None = None) -> str:
        """Write ``obj`` as a new version of ``key`` and point ``LATEST`` at it; return the version's URI."""
        version = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
        version_dir = f"{self.root}/{key}/versions/{version}"
        with tempfile.TemporaryDirectory(prefix="arxiv-publish-") as staging:
            fmt = _serialize(obj, Path(staging) / PAYLOAD)
            if isinstance(obj, Path):  # the asset's directory becomes the payload, nothing else references it
                shutil.rmtree(obj, ignore_errors=True)
            self._upload(Path(staging) / PAYLOAD, f"{version_dir}/{PAYLOAD}")
        manifest = {"format": fmt, "version": version, "created_at": datetime.now(UTC).isoformat(),
                     "metadata": metadata or {}}
        self._write_atomic(f"{version_dir}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
        self._write_atomic(f"{self.root}/{key}/{LATEST}", version.encode())
        self._prune(key, keep=version)
        return self.uri(version_dir)

    def _upload(self, local: Path, remote: str) -> None:
        if self.protocol == "file":
            Path(remote).parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(local, remote) if local.is_dir() else shutil.copy2(local, remote)
        else:
            self.fs.put(str(local), remote, recursive=local.is_dir())

    def _write_atomic(self, path: str, data: bytes) -> None:
        write_atomic(self.fs, self.protocol, path, data)

    def _prune(self, key: str, keep: str) -> None:
        versions = self.versions(key)
        pinned = self.pinned(key)
        for old in versions[: max(0, len(versions) - self.keep_versions)]:
            if old != keep and old not in pinned:
                self.fs.rm(f"{self.root}/{key}/versions/{old}", recursive=True)

    def pin(self, version_uri: str) -> None:
        """Keep this version however many newer ones are written."""
        self.manifest(version_uri)  # only complete versions can be pinned
        key_dir, version = self._strip(version_uri).rsplit("/versions/", 1)
        self._write_atomic(f"{key_dir}/pinned/{version}", b"")

    def pinned(self, key: str) -> set[str]:
        base = f"{self.root}/{key}/pinned"
        return {p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False)} \
            if self.fs.exists(base) else set()

    # -- reading -----------------------------------------------------------------------------
    def versions(self, key: str) -> list[str]:
        """Complete versions of ``key``, oldest first."""
        base = f"{self.root}/{key}/versions"
        if not self.fs.exists(base):
            return []
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False))
        return [n for n in names if self.fs.exists(f"{base}/{n}/{MANIFEST}")]

    def latest_uri(self, key: str) -> str:
        pointer = f"{self.root}/{key}/{LATEST}"
        if not self.fs.exists(pointer):
            raise ArtifactNotFoundError(f"no complete version of {key!r} under {self.uri(self.root)}; "
                                        f"materialize it first")
        return self.uri(f"{self.root}/{key}/versions/{self.fs.cat_file(pointer).decode().strip()}")

    def exists(self, key: str) -> bool:
        return self.fs.exists(f"{self.root}/{key}/{LATEST}")

    def manifest(self, version_uri: str) -> dict[str, Any]:
        path = f"{self._strip(version_uri)}/{MANIFEST}"
        if not self.fs.exists(path):
            raise ArtifactNotFoundError(f"{version_uri} is not a complete artifact (no {MANIFEST})")
        return json.loads(self.fs.cat_file(path))

    def local_payload(self, version_uri: str) -> Path:
        """A local path to the version's payload, downloaded once into the cache if remote."""
        self.manifest(version_uri)  # refuse incomplete versions before touching anything
        remote = f"{self._strip(version_uri)}/{PAYLOAD}"
        if self.protocol == "file":
            return Path(remote)
        target = cache_entry(self.cache_dir, version_uri) / PAYLOAD
        if not target.exists():  # versions are immutable, so a cached copy never goes stale
            staging = target.parent.with_name(target.parent.name + f".{uuid.uuid4().hex}.tmp")
            staging.mkdir(parents=True)
            is_dir = self.fs.isdir(remote)
            self.fs.get(remote, str(staging / PAYLOAD), recursive=is_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # another reader won the race; its copy is identical
                (staging / PAYLOAD).rename(target)
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def load(self, version_uri: str) -> object:
        return _deserialize(self.manifest(version_uri)["format"], self.local_payload(version_uri))

    def load_latest(self, key: str) -> object:
        return self.load(self.latest_uri(key))

    def latest_ref(self, key: str) -> ArtifactRef:
        uri = self.latest_uri(key)
        return ArtifactRef(uri, self.local_payload(uri))


def _serialize(obj: object, target: Path) -> str:
    from datasets import Dataset, DatasetDict

    if isinstance(obj, pd.DataFrame):
        obj.to_parquet(target, index=False)
        return "parquet"
    if isinstance(obj, Dataset | DatasetDict):
        obj.save_to_disk(str(target))
        return "hf_dataset"
    if isinstance(obj, dict):
        target.write_text(json.dumps(obj, indent=2, default=str))
        return "json"
    if isinstance(obj, Path):
        if not obj.is_dir():
            raise TypeError(f"a Path artifact must be a directory, got {obj}")
        shutil.copytree(obj, target)
        return "directory"
    raise TypeError(f"cannot store {type(obj).__name__}: return a DataFrame, a datasets Dataset, a dict or a "
                    f"directory Path")


def _deserialize(fmt: str, payload: Path) -> object:
    if fmt == "parquet":
        return pd.read_parquet(payload)
    if fmt == "hf_dataset":
        from datasets import load_from_disk

        return load_from_disk(str(payload))
    if fmt == "json":
        return json.loads(payload.read_text())
    if fmt == "directory":
        return payload
    raise ValueError(f"unknown artifact format {fmt!r} in {payload.parent}")


def local_payload_of(version_uri: str, storage_options: dict[str, Any] | None = None) -> Path:
    """A local path to the payload of a version given by its full URI (as recorded in metadata)."""
    return ArtifactStore(version_uri.rsplit("/versions/", 1)[0], storage_options).local_payload(version_uri)


def pin_version(version_uri: str, storage_options: dict[str, Any] | None = None) -> None:
    """Keep the version at ``version_uri`` (as recorded in metadata) however many newer ones are written."""
    ArtifactStore(version_uri.rsplit("/versions/", 1)[0], storage_options).pin(version_uri)
