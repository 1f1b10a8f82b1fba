"""The helpers that tests and benchmarks use to start servers: a free port, and waiting until one answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from arxiv_assets_tests.net import free_port, wait_for_http, wait_until


def test_free_port_can_be_listened_on():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))  # raises if the port were taken
        sock.listen()


def test_wait_until_returns_the_first_truthy_result_and_retries_connection_errors():
    calls = []

    def ready() -> dict | None:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("not listening yet")
        return {"status": "ready"} if len(calls) >= 3 else None

    assert wait_until(ready, timeout_s=10, what="ready", interval_s=0.01) == {"status": "ready"}
    assert len(calls) == 3


def test_wait_until_stops_when_the_server_exits_and_times_out_naming_what():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with pytest.raises(RuntimeError, match="exited with 3 while waiting for /health"):
        wait_until(lambda: False, timeout_s=10, what="/health", process=process)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="waiting for nothing"):
        wait_until(lambda: False, timeout_s=0.3, what="nothing", interval_s=0.05)
    assert time.monotonic() - started < 5


def test_wait_for_http_times_out_on_a_port_nothing_listens_on():
    with pytest.raises(TimeoutError, match="/health"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/health", timeout_s=0.5)
