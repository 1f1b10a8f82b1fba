"""The arXiv API loader against a real HTTP server on 127.0.0.1 serving a recorded Atom feed."""

from __future__ import annotations

import itertools
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from arxiv_assets.sources.arxiv_api import (
    ARXIV,
    ATOM,
    OPENSEARCH,
    ArxivApiError,
    RateLimiter,
    _retry_after_seconds,
    build_search_query,
    load_arxiv_api_month,
)

FIXTURE = Path(__file__).parent / "fixtures" / "arxiv_api_page.xml"
MARCH = (date(2025, 3, 1), date(2025, 4, 1))
CATEGORIES = ["cs.CV", "cs.CL", "astro-ph.GA"]

# (status, headers, body) for the n-th request (0-based) with its query parameters.
Responder = Callable[[int, dict[str, str]], tuple[int, dict[str, str], bytes]]


class _FakeArxiv(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/api/query"
        self.received: list[tuple[float, dict[str, str]]] = []  # (monotonic time, query parameters)
        self.respond: Responder = lambda n, params: (200, {}, FIXTURE.read_bytes())
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _FakeArxiv

    def do_GET(self) -> None:
        params = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        with self.server.lock:
            self.server.received.append((time.monotonic(), params))
            n = len(self.server.received) - 1
        status, headers, body = self.server.respond(n, params)
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/atom+xml; charset=utf-8"))
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def arxiv_server() -> Iterator[_FakeArxiv]:
    server = _FakeArxiv()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def paged_feed(total_results: int | None = None) -> Responder:
    """Serve the fixture's entries sliced by ``start``/``max_results``, as arXiv pages them."""
    for prefix, uri in (("", ATOM), ("arxiv", ARXIV), ("opensearch", OPENSEARCH)):
        ET.register_namespace(prefix, uri.strip("{}"))

    def respond(n: int, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        root = ET.fromstring(FIXTURE.read_bytes())
        entries = root.findall(f"{ATOM}entry")
        first, size = int(params["start"]), int(params["max_results"])
        for index, entry in enumerate(entries):
            if not first <= index < first + size:
                root.remove(entry)
        if total_results is not None:
            root.find(f"{OPENSEARCH}totalResults").text = str(total_results)  # type: ignore[union-attr]
        return 200, {}, ET.tostring(root, encoding="utf-8", xml_declaration=True)

    return respond


def test_loads_recorded_feed_into_schema(arxiv_server: _FakeArxiv) -> None:
    papers = load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0)

    assert papers["id"].tolist() == ["2503.11905", "2503.14662", "2503.15321"]  # versions stripped
    # primary first even when listed after a cross-list; the ACM class I.2.7 is not an arXiv code
    assert papers["categories"].tolist() == [["cs.CV", "cs.AI"], ["cs.CL", "cs.AI"], ["astro-ph.GA", "cs.CV"]]
    assert papers["primary_subject"].tolist() == ["cs.CV", "cs.CL", "astro-ph.GA"]
    # <published> as a GMT date: 2025-03-18T21:30:00-04:00 is already the 19th in GMT
    assert papers["published"].tolist() == ["2025-03-14", "2025-03-18", "2025-03-19"]
    assert papers.loc[0, "title"] == "Upcycling Text-to-Image Diffusion Models for Multi-Task Capabilities"
    assert papers.loc[0, "abstract"].startswith("Text-to-image synthesis has witnessed remarkable advancements")
    assert all("\n" not in text and "  " not in text for text in papers["abstract"])
    assert papers.attrs["dropped"] == {}

    assert len(arxiv_server.received) == 1
    params = arxiv_server.received[0][1]
    assert params["search_query"] == (
        "(cat:cs.CV OR cat:cs.CL OR cat:astro-ph.GA) AND submittedDate:[202503010000 TO 202503312359]"
    )
    assert (params["start"], params["max_results"], params["sortBy"]) == ("0", "200", "submittedDate")


def test_pages_until_total_results(arxiv_server: _FakeArxiv) -> None:
    arxiv_server.respond = paged_feed()  # totalResults 3, two entries a page -> exactly two requests

    papers = load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0, page_size=2)

    assert [params["start"] for _, params in arxiv_server.received] == ["0", "2"]
    assert {params["max_results"] for _, params in arxiv_server.received} == {"2"}
    assert papers["id"].tolist() == ["2503.11905", "2503.14662", "2503.15321"]


def test_stops_on_an_empty_page(arxiv_server: _FakeArxiv) -> None:
    arxiv_server.respond = paged_feed(total_results=10)  # claims more than it has, as arXiv sometimes does

    papers = load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0, page_size=2)

    assert [params["start"] for _, params in arxiv_server.received] == ["0", "2", "3"]
    assert len(papers) == 3


def test_retries_503_honouring_retry_after(arxiv_server: _FakeArxiv) -> None:
    def respond(n: int, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if n == 0:
            return 503, {"Retry-After": "1", "Content-Type": "text/plain"}, b"Service Unavailable"
        return 200, {}, FIXTURE.read_bytes()

    arxiv_server.respond = respond
    papers = load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0.01)

    assert len(papers) == 3
    (first, _), (second, _) = arxiv_server.received
    assert second - first >= 0.9  # waited for Retry-After, not just the 0.01 s backoff


def test_retries_a_rate_exceeded_body(arxiv_server: _FakeArxiv) -> None:
    def respond(n: int, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if n == 0:  # arXiv's throttling answer: not a feed at all
            return 200, {"Content-Type": "text/plain"}, b"Rate exceeded."
        return 200, {}, FIXTURE.read_bytes()

    arxiv_server.respond = respond
    papers = load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0.01)

    assert len(arxiv_server.received) == 2 and len(papers) == 3


def test_rate_limit_spaces_requests(arxiv_server: _FakeArxiv) -> None:
    arxiv_server.respond = paged_feed()
    began = time.monotonic()

    load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0.2, page_size=1)

    times = [t for t, _ in arxiv_server.received]
    assert len(times) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.15, gaps  # 0.2 s asked; margin for when the server thread notes the time
    assert time.monotonic() - began < 10  # and no runaway sleeping


def test_gives_up_after_last_retry_naming_url_and_status(arxiv_server: _FakeArxiv) -> None:
    arxiv_server.respond = lambda n, params: (500, {"Content-Type": "text/plain"}, b"boom")

    with pytest.raises(ArxivApiError) as raised:
        load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0.01, max_retries=2)

    assert len(arxiv_server.received) == 3
    message = str(raised.value)
    assert "3 attempt" in message and "HTTP 500" in message and arxiv_server.url in message


def test_client_errors_are_not_retried(arxiv_server: _FakeArxiv) -> None:
    arxiv_server.respond = lambda n, params: (400, {"Content-Type": "text/plain"}, b"max_results too large")

    with pytest.raises(ArxivApiError, match="HTTP 400"):
        load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0.01)

    assert len(arxiv_server.received) == 1


def test_error_feed_raises_with_arxiv_message(arxiv_server: _FakeArxiv) -> None:
    error_feed = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">
  <opensearch:totalResults>1</opensearch:totalResults>
  <entry>
    <id>http://arxiv.org/api/errors#max_results_must_be_an_integer</id>
    <title>Error</title>
    <summary>max_results must be an integer</summary>
  </entry>
</feed>"""
    arxiv_server.respond = lambda n, params: (200, {}, error_feed)

    with pytest.raises(ArxivApiError, match="max_results must be an integer"):
        load_arxiv_api_month(CATEGORIES, *MARCH, base_url=arxiv_server.url, request_interval_s=0)


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/query"

    with pytest.raises(ArxivApiError, match="2 attempt") as raised:
        load_arxiv_api_month(CATEGORIES, *MARCH, base_url=url, request_interval_s=0.01, max_retries=1)

    assert url in str(raised.value) and "ConnectionError" in str(raised.value)


def test_build_search_query_checks_its_inputs() -> None:
    assert build_search_query(["cs.LG"], date(2025, 2, 1), date(2025, 3, 1)) == (
        "(cat:cs.LG) AND submittedDate:[202502010000 TO 202502282359]"
    )
    with pytest.raises(ValueError, match="not arXiv category"):
        build_search_query(["cs.LG OR all:x"], *MARCH)
    with pytest.raises(ValueError, match="empty date range"):
        build_search_query(["cs.LG"], date(2025, 3, 1), date(2025, 3, 1))


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _retry_after_seconds("7") == 7.0
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now
    assert _retry_after_seconds("not a date") is None
    assert _retry_after_seconds("999999") == 600.0  # capped


def test_rate_limiter_waits_only_the_remainder() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3.0, clock=lambda: now[0], sleep=sleep)
    limiter.wait()  # first request: no wait
    now[0] += 1.0
    limiter.wait()  # 1 s after the first: waits the other 2 s
    now[0] += 5.0
    limiter.wait()  # long after: no wait
    assert slept == [pytest.approx(2.0)]
