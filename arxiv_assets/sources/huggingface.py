"""Papers from the Hugging Face dataset ``nick007x/arxiv-papers`` (or a file in its format).

Its records (per the dataset card) carry ``arxiv_id``, ``title``, ``authors``, ``submission_date``
(free text such as ``3 Jan 2016, last revised 4 Feb 2017``), ``comments``, ``primary_subject`` and
``subjects`` as display names with the code in parentheses (``Machine Learning (cs.LG)``,
``Machine Learning (cs.LG); Artificial Intelligence (cs.AI)``), ``doi``, ``abstract``,
``file_path``, ``filepath``, ``subject``, ``year``, ``month`` and ``publication_date`` (date32).
``map_record`` turns one such record into a row of our schema; ``load_huggingface_month`` loads,
filters to a month, drops what cannot be mapped (and says so), and validates.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from arxiv_assets.ml.schema import (
    DUPLICATE_ID,
    NO_DATE,
    PaperSchemaError,
    UnmappableRecord,
    drop_repeated_ids,
    empty_papers,
    is_arxiv_category,
    paper_row,
    validate_papers,
)

logger = logging.getLogger(__name__)

_REQUIRED_COLUMNS = ("arxiv_id", "title", "abstract")
_SUBJECT_COLUMNS = ("primary_subject", "subjects")
_DATE_COLUMNS = ("publication_date", "submission_date")
_PARENTHESISED = re.compile(r"\(([^()]*)\)")
# "3 Jan 2016", "03 January 2016", "3 Sept. 2016"; the first match is the v1 submission date.
_DAY_MONTH_YEAR = re.compile(r"\b(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?,?\s+(\d{4})\b")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_ARXIV_PREFIX = re.compile(r"^(?:arxiv:|https?://arxiv\.org/abs/)", re.IGNORECASE)
_EXAMPLES_PER_REASON = 3
_DATE_SCAN_BATCH = 50_000


def subject_codes(subjects: object) -> list[str]:
    """``"Machine Learning (cs.LG); Artificial Intelligence (cs.AI)"`` -> ``["cs.LG", "cs.AI"]``.

    Takes the last parenthesised part of each ``;``-separated item, so a display name that itself
    contains parentheses does not produce a bogus code; anything that is not an arXiv code is skipped.
    """
    if subjects is None:
        return []
    items = [str(s) for s in subjects] if isinstance(subjects, list | tuple) else str(subjects).split(";")
    codes: list[str] = []
    for item in items:
        found = _PARENTHESISED.findall(item)
        code = found[-1].strip() if found else ""
        if is_arxiv_category(code) and code not in codes:
            codes.append(code)
    return codes


def parse_published(publication_date: object, submission_date: object) -> date | None:
    """The paper's date: ``publication_date`` when usable, else the first date in ``submission_date``."""
    return _as_date(publication_date) or _first_date_in_text(submission_date)


def map_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One ``nick007x/arxiv-papers`` record -> one row of our schema; raises ``UnmappableRecord``."""
    return paper_row(
        paper_id=_ARXIV_PREFIX.sub("", _text(record.get("arxiv_id"))),
        title=_text(record.get("title")),
        abstract=_text(record.get("abstract")),
        # The primary subject first; `subjects` normally repeats it (paper_row keeps each code once).
        categories=subject_codes(record.get("primary_subject")) + subject_codes(record.get("subjects")),
        published=parse_published(record.get("publication_date"), record.get("submission_date")),
    )


def load_huggingface_month(dataset: str, start: date, end: date, data_files: str | None = None) -> pd.DataFrame:
    """Papers with ``start <= published < end`` from the Hub dataset, or from ``data_files`` in its format.

    ``data_files`` is a local path or http(s) URL of a parquet or JSONL file. Records that cannot be
    mapped are dropped, logged with counts per reason, and returned as ``result.attrs["dropped"]``
    (reason -> count); duplicate ids keep their first record.
    """
    if end <= start:
        raise ValueError(f"empty date range: start={start} end={end}")
    source = data_files or dataset
    table = _load_train_split(dataset, data_files)
    _check_columns(table.column_names, source)

    dropped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    # First pass reads only the two date columns, so the full abstracts of other months are never
    # materialised as Python strings (the Hub split holds about 2.55M records).
    in_month, undated = _indices_in_range(table, start, end)
    if undated:
        dropped[NO_DATE] += len(undated)
        examples[NO_DATE] = [_text(table[i]["arxiv_id"]) or f"row {i}" for i in undated[:_EXAMPLES_PER_REASON]]

    mapped: list[dict[str, Any]] = []
    month_records = table.select(in_month).to_list() if in_month else []
    for record in month_records:
        try:
            mapped.append(map_record(record))
        except UnmappableRecord as problem:
            _note(dropped, examples, problem.reason, problem.detail)
    rows, repeated = drop_repeated_ids(mapped)
    for paper_id in repeated:
        _note(dropped, examples, DUPLICATE_ID, paper_id)

    _report(source, start, end, kept=len(rows), considered=len(month_records), dropped=dropped, examples=examples)
    papers = validate_papers(pd.DataFrame(rows) if rows else empty_papers(), source=source)
    papers.attrs["dropped"] = dict(dropped)
    return papers


def data_files_format(data_files: str) -> str:
    """The ``datasets`` builder for a file: ``parquet`` or ``json`` (JSON Lines), chosen from the suffix."""
    name = PurePosixPath(urlparse(data_files).path if "://" in data_files else data_files).name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):  # datasets decompresses these transparently
        name = name.removesuffix(suffix)
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "json"
    raise ValueError(f"cannot tell the format of data_files={data_files!r}: expected a .parquet or .jsonl file")


def _load_train_split(dataset: str, data_files: str | None) -> Any:
    # Imported here: `datasets` is slow to import and only this source needs it.
    from datasets import load_dataset

    if data_files:
        return load_dataset(data_files_format(data_files), data_files=data_files, split="train")
    return load_dataset(dataset, split="train")


def _check_columns(columns: Iterable[str], source: str) -> None:
    present = set(columns)
    missing = [c for c in _REQUIRED_COLUMNS if c not in present]
    if not present.intersection(_SUBJECT_COLUMNS):
        missing.append(" or ".join(_SUBJECT_COLUMNS))
    if not present.intersection(_DATE_COLUMNS):
        missing.append(" or ".join(_DATE_COLUMNS))
    if missing:
        raise PaperSchemaError(f"{source}: not in the nick007x/arxiv-papers format, missing column(s) {missing}")


def _indices_in_range(table: Any, start: date, end: date) -> tuple[list[int], list[int]]:
    """Row indices whose date falls in ``[start, end)``, and those with no usable date at all."""
    date_columns = [c for c in _DATE_COLUMNS if c in table.column_names]
    in_range: list[int] = []
    undated: list[int] = []
    offset = 0
    for batch in table.select_columns(date_columns).iter(batch_size=_DATE_SCAN_BATCH):
        count = len(batch[date_columns[0]])
        publication = batch.get("publication_date", [None] * count)
        submission = batch.get("submission_date", [None] * count)
        for i, (published_on, submitted) in enumerate(zip(publication, submission, strict=True)):
            day = parse_published(published_on, submitted)
            if day is None:
                undated.append(offset + i)
            elif start <= day < end:
                in_range.append(offset + i)
        offset += count
    return in_range, undated


def _note(dropped: Counter[str], examples: dict[str, list[str]], reason: str, detail: str) -> None:
    dropped[reason] += 1
    shown = examples.setdefault(reason, [])
    if len(shown) < _EXAMPLES_PER_REASON:
        shown.append(detail)


def _report(
    source: str, start: date, end: date, *, kept: int, considered: int,
    dropped: Counter[str], examples: dict[str, list[str]],
) -> None:
    if dropped:
        reasons = "; ".join(
            f"{reason}={count} (e.g. {examples.get(reason, [])})" for reason, count in sorted(dropped.items())
        )
        logger.warning(
            "%s [%s, %s): dropped %d record(s) that cannot be mapped to the paper schema: %s",
            source, start, end, sum(dropped.values()), reasons,
        )
    logger.info("%s [%s, %s): kept %d of %d record(s) in range", source, start, end, kept, considered)


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return ""
    return str(value).strip()


def _as_date(value: object) -> date | None:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, datetime):  # also pd.Timestamp; check before date, its base class
        return value.date()
    if isinstance(value, date):
        return value
    return _first_date_in_text(value)


def _first_date_in_text(value: object) -> date | None:
    text = _text(value)
    if not text:
        return None
    iso = _ISO_DATE.search(text)
    dmy = _DAY_MONTH_YEAR.search(text)
    # Whichever date comes first in the text is the original submission.
    candidates = sorted((m for m in (iso, dmy) if m is not None), key=lambda m: m.start())
    for match in candidates:
        try:
            if match.re is _ISO_DATE:
                return date(int(match[1]), int(match[2]), int(match[3]))
            return datetime.strptime(f"{match[1]} {match[2].title()} {match[3]}", "%d %b %Y").date()
        except ValueError:
            continue
    return None
