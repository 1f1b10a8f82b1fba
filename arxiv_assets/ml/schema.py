"""The paper table every source produces and every asset consumes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any

import pandas as pd

PAPER_COLUMNS: tuple[str, ...] = ("id", "title", "abstract", "categories", "primary_subject", "published")

# arXiv category codes: archive (e.g. "cs", "astro-ph", "hep-ph", "gr-qc") with an optional
# ".SUBJECT" part ("cs.CV", "math.AG", "q-bio.NC", "physics.optics").
ARXIV_CATEGORY = re.compile(r"^[a-z][a-z-]*(\.[A-Za-z][A-Za-z-]*)?$")
_VERSION_SUFFIX = re.compile(r"v\d+$")
_WHITESPACE = re.compile(r"\s+")


# Why an online source dropped a record; each dropped record is counted once, under the first reason found.
NO_ID = "no_id"
EMPTY_TITLE = "empty_title"
EMPTY_ABSTRACT = "empty_abstract"
NO_CATEGORY_CODE = "no_category_code"
NO_DATE = "no_date"
DUPLICATE_ID = "duplicate_id"


class PaperSchemaError(ValueError):
    """A paper table that breaks the schema; the message names the problem and the source."""


class UnmappableRecord(ValueError):
    """A source record that cannot become a paper row; ``reason`` is one of the reason codes above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def collapse_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def strip_version(arxiv_id: str) -> str:
    """``2503.11731v2`` -> ``2503.11731`` (old-style ids such as ``hep-th/9901001v1`` too)."""
    return _VERSION_SUFFIX.sub("", arxiv_id.strip())


def is_arxiv_category(code: str) -> bool:
    return bool(ARXIV_CATEGORY.match(code))


def paper_row(paper_id: str, title: str, abstract: str, categories: Iterable[str], published: date | None
              ) -> dict[str, Any]:
    """One source record as a row of the schema, or ``UnmappableRecord`` naming its first problem.

    The id loses its version suffix, title and abstract their runs of white space; of ``categories`` the
    arXiv codes are kept (sources also list ACM or MSC classes), each once, in order: the first is the
    primary subject.
    """
    paper_id = strip_version(paper_id)
    if not paper_id:
        raise UnmappableRecord(NO_ID, "a record without a paper id")
    title, abstract = collapse_whitespace(title), collapse_whitespace(abstract)
    if not title:
        raise UnmappableRecord(EMPTY_TITLE, paper_id)
    if not abstract:
        raise UnmappableRecord(EMPTY_ABSTRACT, paper_id)
    candidates = [c.strip() for c in categories]
    codes = list(dict.fromkeys(c for c in candidates if is_arxiv_category(c)))
    if not codes:
        raise UnmappableRecord(NO_CATEGORY_CODE, f"{paper_id}: no arXiv category code in {candidates}")
    if published is None:
        raise UnmappableRecord(NO_DATE, f"{paper_id}: no readable date")
    return {"id": paper_id, "title": title, "abstract": abstract, "categories": codes, "primary_subject": codes[0],
            "published": published.isoformat()}


def drop_repeated_ids(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The first row of each paper id, in order, and the ids of the later rows, which are dropped (a source
    can list a paper twice: two revisions, or results shifting between pages while arXiv updates its index)."""
    kept: dict[str, dict[str, Any]] = {}
    repeated: list[str] = []
    for row in rows:
        if row["id"] in kept:
            repeated.append(row["id"])
        else:
            kept[row["id"]] = row
    return list(kept.values()), repeated


def find_problems(papers: pd.DataFrame) -> dict[str, pd.Series]:
    """Row masks of every way a table with the schema's columns can be wrong, by problem name.

    The same masks drive ``validate_papers`` (which refuses bad input) and the ``raw_papers``
    asset checks (which show the stored data's health in the UI).
    """
    problems = {
        f"empty {column}": papers[column].isna() | (papers[column].astype(str).str.strip() == "")
        for column in ("id", "title", "abstract", "primary_subject", "published")
    }
    problems["duplicate id"] = papers["id"].duplicated(keep=False)
    problems["categories not arXiv codes"] = ~papers["categories"].map(_categories_ok)
    problems["primary_subject not the first category"] = (
        papers["primary_subject"].astype(str) != papers["categories"].map(_first_or_none)
    )
    # Zero-padded ISO dates only: sources compare ``published`` as strings against month bounds, and
    # pandas' "%Y-%m-%d" alone would also accept "2025-6-1" (which sorts after "2025-12-01").
    published = papers["published"].astype(str)
    problems["published not YYYY-MM-DD"] = ~published.str.fullmatch(r"\d{4}-\d{2}-\d{2}") | pd.to_datetime(
        published, format="%Y-%m-%d", errors="coerce"
    ).isna()
    return problems


def validate_papers(papers: pd.DataFrame, source: str) -> pd.DataFrame:
    """Return ``papers`` restricted to the schema's columns, or raise naming every problem.

    Strict on purpose: a source with empty abstracts or duplicate ids is broken upstream, and
    silently dropping rows would hide that. Online loaders clean what they legitimately can
    (and report it) before calling this.
    """
    missing = [c for c in PAPER_COLUMNS if c not in papers.columns]
    if missing:
        raise PaperSchemaError(f"{source}: missing column(s) {missing}; expected {list(PAPER_COLUMNS)}")
    found = [f"{int(mask.sum())} row(s) with {name} (first ids: {_first_ids(papers, mask)})"
             for name, mask in find_problems(papers).items() if mask.any()]
    if found:
        raise PaperSchemaError(f"{source}: " + "; ".join(found))
    table = papers.loc[:, list(PAPER_COLUMNS)].reset_index(drop=True)
    table["categories"] = table["categories"].map(list)
    return table


def empty_papers() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PAPER_COLUMNS})


def _categories_ok(categories: object) -> bool:
    try:
        codes = list(categories)  # type: ignore[call-overload]
    except TypeError:
        return False
    return len(codes) > 0 and all(isinstance(c, str) and is_arxiv_category(c) for c in codes)


def _first_or_none(categories: object) -> str | None:
    try:
        return str(next(iter(categories)))  # type: ignore[call-overload]
    except (TypeError, StopIteration):
        return None


def _first_ids(papers: pd.DataFrame, mask: pd.Series) -> list[str]:
    return papers.loc[mask, "id"].astype(str).head(3).tolist()
