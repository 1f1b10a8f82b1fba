"""Releases: what the service serves, as immutable manifests and one pointer that moves.

Layout under the releases root (``<artifacts>/releases``, a local path or ``gs://bucket/prefix/releases``)::

    <release id>/release.json     the manifest: model, ONNX export and index URIs with the fingerprints
                                  of the model each was made from, the metrics, the decision and why
    CURRENT                       the id of the release being served

A manifest is written once and never changed; releasing or rolling back only moves ``CURRENT``.
The move is a compare-and-swap: it names the release it expects to replace and fails if another
writer moved the pointer in between (locally: a rename under a file lock; on GCS: an upload with an
``ifGenerationMatch`` precondition on the pointer object). A reader sees the old pointer or the new
one, and the manifest it names is complete before the pointer can name it.

Every artifact directory a release is made from carries ``checks.json`` (written by the step that
made it): the fingerprint of the model it came from and its blocking checks. The ``release`` asset
refuses artifacts whose checks failed or whose fingerprints disagree, from this data alone, so a
release never depends on Dagster's check history; the service re-checks the fingerprints on load.

Run as a module for operators (the rollback of docs/production.md)::

    python -m arxiv_assets.storage.releases list     [--releases-uri URI]
    python -m arxiv_assets.storage.releases rollback [--releases-uri URI] [--to RELEASE_ID]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arxiv_assets.storage.artifacts import ArtifactRef, default_artifacts_uri, open_root, write_atomic

CURRENT = "CURRENT"
MANIFEST = "release.json"
CHECKS = "checks.json"
PROMOTION = "promotion.json"


class ReleaseError(RuntimeError):
    """A release cannot be made, read or moved to; the message says which and why."""


class PointerMovedError(ReleaseError):
    """Another writer moved ``CURRENT`` between reading it and replacing it."""


def default_releases_uri() -> str:
    return f"{default_artifacts_uri().rstrip('/')}/releases"


# -- the checks every artifact carries ---------------------------------------------------------------
def write_checks(directory: Path, model_fingerprint: str, checks: dict[str, bool], details: dict[str, Any]) -> None:
    """Record in ``directory`` which model it was made from and whether its blocking checks passed."""
    (directory / CHECKS).write_text(json.dumps({"model_fingerprint": model_fingerprint, "checks": checks,
                                                "details": details}, indent=2, default=float))


def read_checks(directory: Path, what: str) -> dict[str, Any]:
    path = directory / CHECKS
    if not path.is_file():
        raise ReleaseError(f"{what} at {directory} has no {CHECKS}: it was not made by this pipeline's step "
                           f"(or by an older version of it); re-materialize it")
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Promotion:
    """Which model ``promoted_model`` chose and why (arxiv_assets/assets/promotion.py)."""

    decision: str  # challenger | champion | base
    reason: str
    evaluated_model_fingerprint: str  # the fine-tuned model the evaluation judged
    failed_gates: list[str]
    champion_release: str | None  # the release that was CURRENT when the evaluation ran


def write_promotion(model_dir: Path, promotion: Promotion) -> None:
    (model_dir / PROMOTION).write_text(json.dumps(asdict(promotion), indent=2))


def read_promotion(model_dir: Path) -> Promotion:
    path = model_dir / PROMOTION
    if not path.is_file():
        raise ReleaseError(f"{model_dir} has no {PROMOTION}: only a promoted_model can be released")
    return Promotion(**json.loads(path.read_text()))


# -- manifests ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Release:
    release_id: str
    model_uri: str  # the onnx_model version: the PyTorch weights and their ONNX exports
    model_fingerprint: str
    index_uri: str | None  # the faiss_index version built by that model (None: /search is off)
    decision: str  # challenger | champion | base (see arxiv_assets/assets/promotion.py)
    reason: str
    created_at: str = ""  # set when published
    run_id: str = ""
    replaces: str | None = None  # the release that was CURRENT when this one was made
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # system -> headline figures
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> uri, fingerprint, checks

    @staticmethod
    def new_id() -> str:
        return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Release:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def assemble_release(promotion: Promotion, model_fingerprint: str, reports: dict[str, dict[str, Any]],
                     onnx: ArtifactRef, index: ArtifactRef, current: Release | None, run_id: str) -> Release | None:
    """The release of the promoted model's export and index, or None when ``current`` already serves them.

    Refuses (``ReleaseError``) anything whose provenance does not hold: reports about another model than
    the one promoted from, an export or index made from another model or with a failed blocking check,
    or a champion that changed after the evaluation compared the challenger with it.
    """
    if current is not None and (current.model_uri, current.index_uri) == (onnx.uri, index.uri):
        return None  # released already (re-running the step changes nothing)
    problems = [f"{name} judged model {report['model_fingerprint']}, not {promotion.evaluated_model_fingerprint}"
                for name, report in reports.items()
                if report["model_fingerprint"] != promotion.evaluated_model_fingerprint]
    artifacts = {}
    for name, ref in (("onnx_model", onnx), ("faiss_index", index)):
        checks = read_checks(ref.path, name)
        artifacts[name] = {"uri": ref.uri, **checks}
        if checks["model_fingerprint"] != model_fingerprint:
            problems.append(f"{name} {ref.uri} was made from model {checks['model_fingerprint']}, "
                            f"not the promoted model {model_fingerprint}")
        problems += [f"{name} {ref.uri}: blocking check {check} failed" for check, passed in checks["checks"].items()
                     if not passed]
    current_id = current.release_id if current else None
    if promotion.champion_release != current_id:
        problems.append(f"the evaluation compared the challenger with release {promotion.champion_release}, but "
                        f"{current_id} is current now: re-materialize the evaluation")
    if promotion.decision == "champion" and current is not None and current.model_fingerprint != model_fingerprint:
        problems.append(f"the champion kept is model {model_fingerprint}, but release {current_id} serves "
                        f"{current.model_fingerprint}")
    if problems:
        raise ReleaseError("not released: " + "; ".join(problems))
    return Release(
        release_id=Release.new_id(), model_uri=onnx.uri, model_fingerprint=model_fingerprint, index_uri=index.uri,
        decision=promotion.decision, reason=promotion.reason, run_id=run_id, replaces=current_id,
        metrics=reports["ir_metrics"]["headline"], artifacts=artifacts,
    )


class ReleaseStore:
    def __init__(self, base_uri: str | None = None, storage_options: dict[str, Any] | None = None) -> None:
        self.base_uri = (base_uri or default_releases_uri()).rstrip("/")
        self.fs, self.root, self.protocol = open_root(self.base_uri, storage_options)

    # -- reading ---------------------------------------------------------------------------------
    def current_id(self) -> str | None:
        path = f"{self.root}/{CURRENT}"
        return self.fs.cat_file(path).decode().strip() if self.fs.exists(path) else None

    def get(self, release_id: str) -> Release:
        path = f"{self.root}/{release_id}/{MANIFEST}"
        if not self.fs.exists(path):
            raise ReleaseError(f"no release {release_id!r} under {self.base_uri}")
        return Release.from_json(json.loads(self.fs.cat_file(path)))

    def current(self) -> Release | None:
        release_id = self.current_id()
        return self.get(release_id) if release_id else None

    def history(self) -> list[Release]:
        """Every release, oldest first."""
        if not self.fs.exists(self.root):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)]
        releases = [self.get(n) for n in names if self.fs.exists(f"{self.root}/{n}/{MANIFEST}")]
        return sorted(releases, key=lambda r: (r.created_at, r.release_id))

    # -- writing ---------------------------------------------------------------------------------
    def publish(self, release: Release) -> Release:
        """Write ``release``'s manifest and point ``CURRENT`` at it (if nobody moved it since it was read)."""
        release = release if release.created_at else replace(release, created_at=datetime.now(UTC).isoformat())
        manifest = f"{self.root}/{release.release_id}/{MANIFEST}"
        if self.fs.exists(manifest):
            raise ReleaseError(f"release {release.release_id} already exists: manifests are immutable")
        write_atomic(self.fs, self.protocol, manifest, json.dumps(asdict(release), indent=2, default=float).encode())
        self.move(release.release_id, expected=release.replaces)
        return release

    def move(self, release_id: str, expected: str | None) -> None:
        """Point ``CURRENT`` at ``release_id`` if it still names ``expected`` (None: no release yet)."""
        self.get(release_id)  # never point at a manifest that is not there
        if self.protocol == "file":
            self._move_local(release_id, expected)
        else:
            self._move_gcs(release_id, expected)

    def _move_local(self, release_id: str, expected: str | None) -> None:
        pointer = Path(self.root) / CURRENT
        with _locked(Path(self.root) / ".CURRENT.lock"):
            found = self.current_id()
            if found != expected:
                raise PointerMovedError(f"{CURRENT} names {found}, not {expected}: another release moved it; "
                                        f"re-run to compare against the new champion")
            write_atomic(self.fs, self.protocol, str(pointer), f"{release_id}\n".encode())

    def _move_gcs(self, release_id: str, expected: str | None) -> None:
        from gcsfs.core import quote

        path = f"{self.root}/{CURRENT}"
        generation = "0"  # "0": the object must not exist yet
        if self.fs.exists(path):
            info = self.fs.info(path)
            found = self.fs.cat_file(path).decode().strip()
            if found != expected:
                raise PointerMovedError(f"{CURRENT} names {found}, not {expected}: another release moved it")
            generation = str(info["generation"])
        elif expected is not None:
            raise PointerMovedError(f"{CURRENT} is gone, expected it to name {expected}")
        bucket, key, _ = self.fs.split_path(path)
        # A media upload with ifGenerationMatch: GCS answers 412 if another writer replaced the pointer
        # after we read its generation, so two releases can never both believe they moved it.
        try:
            self.fs.call("POST", f"{self.fs._location}/upload/storage/v1/b/{quote(bucket)}/o",
                         uploadType="media", name=key, ifGenerationMatch=generation,
                         data=f"{release_id}\n".encode(), headers={"Content-Type": "text/plain"}, json_out=True)
        except Exception as error:
            if getattr(error, "code", None) == 412 or "Precondition" in str(error):
                raise PointerMovedError(f"{CURRENT} was moved by another writer while releasing {release_id}") \
                    from error
            raise
        self.fs.invalidate_cache(path)

    def rollback(self, to: str | None = None) -> Release:
        """Point ``CURRENT`` at ``to``, or at the release the current one replaced."""
        current = self.current()
        if current is None:
            raise ReleaseError(f"nothing is released under {self.base_uri}: there is nothing to roll back")
        target = to or current.replaces
        if target is None:
            raise ReleaseError(f"release {current.release_id} is the first one: name a release with --to")
        self.move(target, expected=current.release_id)
        return self.get(target)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def describe(release: Release, current_id: str | None) -> str:
    marker = "*" if release.release_id == current_id else " "
    return f"{marker} {release.release_id}  {release.decision:<10} model {release.model_fingerprint}  {release.reason}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arxiv_assets.storage.releases",
                                     description="List releases or roll the served one back.")
    parser.add_argument("command", choices=["list", "rollback"])
    parser.add_argument("--releases-uri", default=os.environ.get("ARXIV_SERVING_RELEASES_URI") or None,
                        help="the releases root (default: ARXIV_SERVING_RELEASES_URI, else the local artifacts')")
    parser.add_argument("--to", help="rollback: the release to serve (default: the one the current one replaced)")
    args = parser.parse_args(argv)
    store = ReleaseStore(args.releases_uri)
    try:
        if args.command == "rollback":
            release = store.rollback(args.to)
            print(f"{CURRENT} -> {release.release_id} ({release.decision}, model {release.model_fingerprint}); "
                  f"the service picks it up at its next poll")
        else:
            current_id = store.current_id()
            for release in store.history():
                print(describe(release, current_id))
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
