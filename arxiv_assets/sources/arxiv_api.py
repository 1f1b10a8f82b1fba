"""Papers from the arXiv export API (Atom 1.0), one month at a time.

Follows arXiv's API user manual: ``search_query`` with ``cat:`` and ``submittedDate:[YYYYMMDDTTTT TO
YYYYMMDDTTTT]`` (GMT), 0-based ``start``/``max_results`` paging in slices of at most 2000,
``sortBy=submittedDate``, one request every 3 seconds. Errors come back (HTTP 200) as a feed with a
single entry titled ``Error``; throttling is reported by API users to come back as a bare
``Rate exceeded.`` body, so that is retried like a 429.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pandas as pd
import requests

from arxiv_assets.ml.schema import (
    DUPLICATE_ID,
    UnmappableRecord,
    collapse_whitespace,
    drop_repeated_ids,
    empty_papers,
    is_arxiv_category,
    paper_row,
    validate_papers,
)

logger = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"

MAX_PAGE_SIZE = 2000  # the manual: "slices of at most 2000"
MAX_RESULTS_PER_QUERY = 30_000  # the manual: results beyond this are not served for one query
MAX_RETRY_AFTER_S = 600.0  # never sleep longer than this on a server's say-so
REQUEST_TIMEOUT_S = (10.0, 120.0)  # (connect, read): large slices take a while to render
USER_AGENT = "arxiv-embeddings/0.1 (paper loader; python-requests)"
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_ERROR_ID_PREFIXES = ("http://arxiv.org/api/errors", "https://arxiv.org/api/errors")


class ArxivApiError(RuntimeError):
    """The arXiv API could not be read; the message names the URL and what went wrong."""


@dataclass
class AtomPage:
    entries: list[dict[str, Any]]
    total_results: int | None
    skipped: Counter[str] = field(default_factory=Counter)


class RateLimiter:
    """At least ``interval_s`` between the starts of consecutive requests."""

    def __init__(
        self, interval_s: float,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._last: float | None = None

    def wait(self) -> None:
        if self._last is not None:
            remaining = self.interval_s - (self._clock() - self._last)
            if remaining > 0:
                self._sleep(remaining)
        self._last = self._clock()


def build_search_query(categories: list[str], start: date, end: date) -> str:
    """``(cat:cs.CV OR cat:cs.CL) AND submittedDate:[202503010000 TO 202503312359]`` for ``[start, end)``."""
    if not categories:
        raise ValueError("no arXiv categories given")
    bad = [c for c in categories if not is_arxiv_category(c)]
    if bad:  # also keeps query syntax (spaces, brackets) out of the search string
        raise ValueError(f"not arXiv category codes: {bad}")
    if end <= start:
        raise ValueError(f"empty date range: start={start} end={end}")
    last_day = end - timedelta(days=1)
    cats = " OR ".join(f"cat:{c}" for c in categories)
    return f"({cats}) AND submittedDate:[{start:%Y%m%d}0000 TO {last_day:%Y%m%d}2359]"


def parse_entry(entry: ET.Element) -> dict[str, Any]:
    """One Atom ``<entry>`` -> one row of our schema; raises ``UnmappableRecord`` naming what is missing."""
    primary = entry.find(f"{ARXIV}primary_category")
    terms = [primary.get("term", "")] if primary is not None else []
    # <category> also carries ACM ("I.2.6") and MSC ("68T05") classes; paper_row keeps the arXiv codes.
    terms += [c.get("term", "") for c in entry.findall(f"{ATOM}category")]
    return paper_row(
        paper_id=_child_text(entry, "id").rsplit("/abs/", 1)[-1],
        title=_child_text(entry, "title"),
        abstract=_child_text(entry, "summary"),
        categories=terms,
        published=_parse_timestamp(_child_text(entry, "published")),
    )


def parse_feed(xml_text: str, url: str) -> AtomPage:
    """An API response -> its paper entries and ``opensearch:totalResults``; an error feed raises."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as error:
        raise ArxivApiError(f"{url}: response is not an Atom feed ({error}): {xml_text[:200]!r}") from error
    entries = root.findall(f"{ATOM}entry")
    for entry in entries:
        if _child_text(entry, "id").startswith(_ERROR_ID_PREFIXES):
            raise ArxivApiError(f"{url}: arXiv API error: {collapse_whitespace(_child_text(entry, 'summary'))}")
    total_text = root.findtext(f"{OPENSEARCH}totalResults")
    total = int(total_text.strip()) if total_text and total_text.strip().isdigit() else None
    page = AtomPage(entries=[], total_results=total)
    for entry in entries:
        try:
            page.entries.append(parse_entry(entry))
        except UnmappableRecord as problem:
            page.skipped[problem.reason] += 1
            logger.warning("%s: skipping entry: %s", url, problem)
    return page


def load_arxiv_api_month(
    categories: list[str], start: date, end: date, *,
    base_url: str = "https://export.arxiv.org/api/query",
    request_interval_s: float = 3.0, max_retries: int = 4, page_size: int = 200,
) -> pd.DataFrame:
    """Papers in ``categories`` submitted in ``[start, end)`` (by their v1 ``<published>`` date, GMT).

    Pages through the results politely (``request_interval_s`` between requests, retries with backoff
    on connection errors, 429 and 5xx, honouring ``Retry-After``). Entries that cannot be parsed,
    fall outside the month, or repeat an id are dropped and counted by reason in ``result.attrs["dropped"]``.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be in 1..{MAX_PAGE_SIZE}, got {page_size}")
    if max_retries < 0 or request_interval_s < 0:
        raise ValueError("max_retries and request_interval_s must be >= 0")
    query = build_search_query(categories, start, end)
    limiter = RateLimiter(request_interval_s)
    in_range: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    offset = 0
    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        while True:
            params = {
                "search_query": query, "start": offset, "max_results": page_size,
                "sortBy": "submittedDate", "sortOrder": "ascending",
            }
            text, url = _get_with_retries(session, base_url, params, limiter, request_interval_s, max_retries)
            page = parse_feed(text, url)
            dropped.update(page.skipped)
            # submittedDate and <published> are both v1 times, but a shifted time zone could stray a day.
            for row in page.entries:
                if start.isoformat() <= row["published"] < end.isoformat():
                    in_range.append(row)
                else:
                    dropped["outside_range"] += 1
            logger.info("%s: %d entries at start=%d (total %s)",
                        base_url, len(page.entries), offset, page.total_results)
            if page.total_results is not None and page.total_results > MAX_RESULTS_PER_QUERY and offset == 0:
                logger.warning("arXiv reports %d results; it serves at most %d per query, split the categories",
                               page.total_results, MAX_RESULTS_PER_QUERY)
            received = len(page.entries) + sum(page.skipped.values())
            if received == 0:
                if page.total_results is not None and offset < page.total_results:
                    logger.warning("%s: empty page at start=%d before totalResults=%d; stopping",
                                   base_url, offset, page.total_results)
                break
            offset += received
            if page.total_results is not None and offset >= page.total_results:
                break

    rows, repeated = drop_repeated_ids(in_range)
    if repeated:
        dropped[DUPLICATE_ID] += len(repeated)
    if dropped:
        logger.warning("arXiv API %s [%s, %s): dropped %s", categories, start, end, dict(dropped))
    papers = validate_papers(pd.DataFrame(rows) if rows else empty_papers(), source=f"arXiv API {base_url}")
    papers.attrs["dropped"] = dict(dropped)
    return papers


def _get_with_retries(
    session: requests.Session, base_url: str, params: dict[str, Any],
    limiter: RateLimiter, request_interval_s: float, max_retries: int,
) -> tuple[str, str]:
    """The body of a successful GET and its URL; raises ``ArxivApiError`` after the last retry."""
    url = requests.Request("GET", base_url, params=params).prepare().url or base_url
    problem = ""
    for attempt in range(max_retries + 1):
        limiter.wait()
        retry_after: float | None = None
        try:
            response = session.get(base_url, params=params, timeout=REQUEST_TIMEOUT_S)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            problem = f"{type(error).__name__}: {error}"
        except requests.RequestException as error:  # a bad URL, redirect loop...: retrying cannot help
            raise ArxivApiError(f"arXiv API request failed: {url} -> {type(error).__name__}: {error}") from error
        else:
            throttled = response.status_code == 200 and response.text.lstrip().startswith("Rate exceeded")
            if response.status_code == 200 and not throttled:
                return response.text, url
            problem = f"HTTP {response.status_code}: {response.text[:200]!r}"
            if not throttled and response.status_code not in _RETRYABLE_STATUS:
                raise ArxivApiError(f"arXiv API request failed: {url} -> {problem}")
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
        if attempt < max_retries:
            # Exponential backoff from the politeness interval, or longer if the server asks for it.
            delay = max(request_interval_s * 2**attempt, retry_after or 0.0)
            logger.warning("%s failed (%s); retry %d/%d in %.1f s", url, problem, attempt + 1, max_retries, delay)
            time.sleep(delay)
    raise ArxivApiError(f"arXiv API request failed after {max_retries + 1} attempt(s): {url} -> {problem}")


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _parse_timestamp(text: str) -> date | None:
    """``2025-03-14T17:59:59Z`` (or with an offset, as older feeds write it) -> the GMT date."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


def _child_text(element: ET.Element, name: str) -> str:
    return (element.findtext(f"{ATOM}{name}") or "").strip()
