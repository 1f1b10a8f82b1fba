"""Fixtures for the production tests: a real GCS emulator process, subprocess helpers.

The emulator is ``gcp-storage-emulator`` (PyPI), a separate process speaking the GCS JSON API on
127.0.0.1. gcsfs reaches it through ``STORAGE_EMULATOR_HOST`` exactly as it reaches
storage.googleapis.com in production: nothing in the code under test is replaced.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from arxiv_assets.storage.artifacts import CACHE_DIR_ENV_VAR
from arxiv_assets_tests.net import free_port, wait_for_http

# No GCE metadata server here: fail credential discovery fast and fall back to anonymous access
# (the emulator needs no credentials). gcsfs' experimental zonal/HNS bucket support asks a gRPC
# control-plane API the emulator does not have; it is read when gcsfs is first imported.
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

BUCKET = "arxiv-test-bucket"


class GCSEmulator:
    """``gcp-storage-emulator`` as a subprocess with on-disk storage, so it can be killed and restarted."""

    def __init__(self, data_dir: Path, bucket: str = BUCKET) -> None:
        self.data_dir = data_dir
        self.bucket = bucket
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "emulator.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GCSEmulator:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gcp_storage_emulator", "-d", str(self.data_dir), "start",
                 "--host", "127.0.0.1", "--port", str(self.port), "--default-bucket", self.bucket, "-q"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            wait_for_http(f"{self.endpoint}/storage/v1/b/{self.bucket}", timeout_s=30, process=self.proc)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"the GCS emulator did not start: {error}\n{self.log_tail()}") from error
        return self

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, whatever was in flight is cut off."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def crash(self) -> None:
        """SIGKILL mid-traffic, at an instant when the emulator's own object table is whole on disk.

        gcp-storage-emulator rewrites its object table (``.meta``) in place after every object; a kill
        inside that rewrite would corrupt the emulator itself, which real GCS never does (a committed
        object stays committed). So: freeze it (SIGSTOP), and kill only if the table parses, else let
        it run a millisecond more. Requests in flight (the uploads) are cut off either way.
        """
        assert self.proc is not None
        table = self.data_dir / ".cloudstorage" / ".meta"
        for _ in range(2000):
            self.proc.send_signal(signal.SIGSTOP)
            while Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
                time.sleep(0.0005)  # SIGSTOP is asynchronous: wait until the process is stopped
            try:
                json.loads(table.read_bytes())
            except ValueError:
                self.proc.send_signal(signal.SIGCONT)
                time.sleep(0.001)
                continue
            self.kill()
            return
        raise RuntimeError("the emulator's object table was never whole")

    def stored_names(self, prefix: str) -> list[str]:
        """Object files the emulator has written to disk under ``prefix`` (listed or not yet)."""
        root = self.data_dir / ".cloudstorage" / self.bucket
        if not (root / prefix).exists():
            return []
        return [str(p.relative_to(root)) for p in (root / prefix).rglob("*") if p.is_file()]

    def object_names(self, prefix: str = "") -> list[str]:
        """Every object in the bucket under ``prefix``, straight from the JSON API (objects.list)."""
        names: list[str] = []
        token = ""
        while True:
            url = f"{self.endpoint}/storage/v1/b/{self.bucket}/o?prefix={prefix}"
            url += f"&pageToken={token}" if token else ""
            with urllib.request.urlopen(url, timeout=10) as response:
                page = json.load(response)
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return names


@pytest.fixture
def gcs_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GCSEmulator]:
    """A fresh emulator with one empty bucket; gcsfs pointed at it through ``STORAGE_EMULATOR_HOST``."""
    emulator = GCSEmulator(tmp_path / "gcs").start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    try:
        yield emulator
    finally:
        emulator.kill()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment for a child process, without anything that would pick another deployment (the
    session's download cache stays: it picks nothing)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DAGSTER_", "ARXIV_")) or k == CACHE_DIR_ENV_VAR}
    env.update(extra)
    return env
