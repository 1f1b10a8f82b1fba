"""Helpers for tests and benchmarks that start servers on 127.0.0.1: a free port, and waiting until one answers.

A plain module (no pytest, no fixtures), so ``benchmarks/`` imports it as the tests do.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str,
               process: subprocess.Popen | None = None, interval_s: float = 0.2) -> T:
    """``predicate()``'s first truthy result, polled every ``interval_s``; a connection error counts as not yet.

    ``RuntimeError`` as soon as ``process`` (the server being waited for) exits, ``TimeoutError`` after
    ``timeout_s``; both name ``what``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} while waiting for {what}")
        try:
            result = predicate()
        except (httpx.TransportError, OSError):  # not listening yet, or restarting
            result = None
        if result:
            return result
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def wait_for_http(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Wait until ``GET url`` answers 200."""
    wait_until(lambda: httpx.get(url, timeout=2).status_code == 200, timeout_s, url, process)
