"""The Hugging Face loader on files in the ``nick007x/arxiv-papers`` format, built from real papers.

The records are made from the real papers of the bundled sample, written as JSONL and parquet in
``tmp_path`` and loaded through ``datasets.load_dataset`` from a local path and from an http URL
served on 127.0.0.1. Nothing reaches the internet.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from datetime import date, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arxiv_assets.ml.schema import (
    DUPLICATE_ID,
    EMPTY_ABSTRACT,
    EMPTY_TITLE,
    NO_CATEGORY_CODE,
    NO_DATE,
    NO_ID,
    PaperSchemaError,
    UnmappableRecord,
)
from arxiv_assets.sources.huggingface import (
    data_files_format,
    load_huggingface_month,
    map_record,
    parse_published,
    subject_codes,
)
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE

APRIL = (date(2025, 4, 1), date(2025, 5, 1))
# Display names as arXiv writes them; anything else gets a generic one (only the code matters).
DISPLAY_NAMES = {
    "cs.AI": "Artificial Intelligence", "cs.CL": "Computation and Language",
    "cs.CV": "Computer Vision and Pattern Recognition", "cs.LG": "Machine Learning",
    "astro-ph.GA": "Astrophysics of Galaxies", "astro-ph.CO": "Cosmology and Nongalactic Astrophysics",
}
EXPECTED_DROPS = {EMPTY_ABSTRACT: 1, NO_CATEGORY_CODE: 1, NO_DATE: 1, DUPLICATE_ID: 1}


@pytest.fixture(autouse=True)
def isolated_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep datasets' cache in tmp_path and forbid the Hub (local files need neither)."""
    import datasets

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "downloads" / "extracted")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def real_papers() -> pd.DataFrame:
    """Six real papers from the bundled sample: four listed in April 2025, two in May."""
    sample = pd.read_parquet(BUNDLED_SAMPLE)
    april = sample[sample["published"].str.startswith("2025-04")].sort_values("id").head(4)
    may = sample[sample["published"].str.startswith("2025-05")].sort_values("id").head(2)
    return pd.concat([april, may], ignore_index=True)


def as_nick007x(paper: pd.Series, version: int = 1) -> dict[str, Any]:
    """A paper of our schema written the way nick007x/arxiv-papers records it."""
    day = date.fromisoformat(paper["published"])
    codes = list(paper["categories"])
    names = [f"{DISPLAY_NAMES.get(code, 'Some Subject')} ({code})" for code in codes]
    return {
        "arxiv_id": f"{paper['id']}v{version}",
        "title": paper["title"].replace(" ", "\n  ", 1),  # wrapped, as in the source
        "authors": ["Author One", "Author Two"],
        "submission_date": f"{day.day} {day:%b %Y}",
        "comments": "12 pages, 4 figures",
        "primary_subject": names[0],
        "subjects": "; ".join(names),
        "doi": None,
        "abstract": f"  {paper['abstract']}\n",
        "subject": codes[0].split(".")[0],
        "year": f"{day.year}",
        "month": f"{day.month:02d}",
        "publication_date": paper["published"],
    }


@pytest.fixture
def records(real_papers: pd.DataFrame) -> list[dict[str, Any]]:
    """Real papers plus the kinds of record the loader must drop (all dated in April)."""
    good = [as_nick007x(paper) for _, paper in real_papers.iterrows()]
    template = good[0]
    no_abstract = {**template, "arxiv_id": "2504.90001v1", "abstract": "   "}
    no_code = {**template, "arxiv_id": "2504.90002v1", "primary_subject": "Machine Learning",
               "subjects": "Machine Learning; Artificial Intelligence"}
    no_date = {**template, "arxiv_id": "2504.90003v1", "publication_date": None, "submission_date": "unknown"}
    duplicate = {**template, "arxiv_id": template["arxiv_id"].replace("v1", "v2"), "title": "A later revision"}
    # No publication_date: the date comes from the first date in submission_date.
    fallback = {**good[1], "publication_date": None, "submission_date": "3 Apr 2025, last revised 4 Feb 2026"}
    return [good[0], no_abstract, fallback, no_code, good[2], no_date, duplicate, good[3], good[4], good[5]]


def expected_april(real_papers: pd.DataFrame) -> pd.DataFrame:
    april = real_papers.head(4).reset_index(drop=True).copy()
    april.loc[1, "published"] = "2025-04-03"  # the record that only had submission_date
    april["categories"] = april["categories"].map(list)
    return april


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    table = pa.Table.from_pylist(rows)
    # The Hub files store publication_date as date32; mirror that rather than strings.
    dates = pa.array([date.fromisoformat(d) if d else None for d in table["publication_date"].to_pylist()],
                     type=pa.date32())
    table = table.set_column(table.schema.get_field_index("publication_date"), "publication_date", dates)
    pq.write_table(table, path)
    return path


def assert_loaded_april(papers: pd.DataFrame, real_papers: pd.DataFrame) -> None:
    expected = expected_april(real_papers)
    pd.testing.assert_frame_equal(papers, expected[list(papers.columns)])
    assert papers.attrs["dropped"] == EXPECTED_DROPS


def test_loads_local_jsonl_filters_month_and_reports_drops(
    tmp_path: Path, records: list[dict[str, Any]], real_papers: pd.DataFrame, caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_jsonl(tmp_path / "papers.jsonl", records)

    with caplog.at_level(logging.WARNING, logger="arxiv_assets.sources.huggingface"):
        papers = load_huggingface_month("nick007x/arxiv-papers", *APRIL, data_files=str(path))

    assert_loaded_april(papers, real_papers)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "dropped 4 record(s)" in warning
    for reason in EXPECTED_DROPS:
        assert f"{reason}=1" in warning
    assert "2504.90002" in warning  # names an example of what it dropped


def test_loads_local_parquet_with_date32_dates(
    tmp_path: Path, records: list[dict[str, Any]], real_papers: pd.DataFrame,
) -> None:
    path = write_parquet(tmp_path / "train-00000-of-00001.parquet", records)

    papers = load_huggingface_month("nick007x/arxiv-papers", *APRIL, data_files=str(path))

    assert_loaded_april(papers, real_papers)


def test_loads_jsonl_over_http_from_localhost(
    tmp_path: Path, records: list[dict[str, Any]], real_papers: pd.DataFrame, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets

    # datasets' offline mode refuses every http(s) data file, 127.0.0.1 included (it raises
    # OfflineModeIsEnabled), so this one test has to run with it off. The URL is local and the
    # "json" builder is packaged, so the Hub is still never contacted.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    served = tmp_path / "served"
    served.mkdir()
    write_jsonl(served / "papers.jsonl", records)
    handler = functools.partial(_QuietHandler, directory=str(served))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/papers.jsonl"
            papers = load_huggingface_month("nick007x/arxiv-papers", *APRIL, data_files=url)
        finally:
            server.shutdown()

    assert_loaded_april(papers, real_papers)


def test_month_without_papers_gives_empty_valid_table(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    path = write_jsonl(tmp_path / "papers.jsonl", records)

    papers = load_huggingface_month("nick007x/arxiv-papers", date(2024, 1, 1), date(2024, 2, 1), data_files=str(path))

    assert papers.empty
    assert list(papers.columns) == ["id", "title", "abstract", "categories", "primary_subject", "published"]
    assert papers.attrs["dropped"] == {NO_DATE: 1}  # undated records belong to no month: reported every time


def test_file_in_another_format_is_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "other.jsonl", [{"id": "2504.00001", "text": "hello"}])

    with pytest.raises(PaperSchemaError, match="missing column"):
        load_huggingface_month("nick007x/arxiv-papers", *APRIL, data_files=str(path))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


# --- the pure record -> row mapping ---------------------------------------------------------------

RECORD = {
    "arxiv_id": "1601.00123v3",
    "title": "Deep   Learning\n for Things",
    "authors": ["A. Author"],
    "submission_date": "3 Jan 2016, last revised 4 Feb 2017",
    "comments": None,
    "primary_subject": "Machine Learning (cs.LG)",
    "subjects": "Machine Learning (cs.LG); Artificial Intelligence (cs.AI); Machine Learning (stat.ML)",
    "doi": None,
    "abstract": " We study\tthings.\n",
    "subject": "cs",
    "year": "2016",
    "month": "01",
    "publication_date": date(2016, 1, 3),
}


def test_map_record_maps_a_typical_record() -> None:
    assert map_record(RECORD) == {
        "id": "1601.00123",
        "title": "Deep Learning for Things",
        "abstract": "We study things.",
        "categories": ["cs.LG", "cs.AI", "stat.ML"],
        "primary_subject": "cs.LG",
        "published": "2016-01-03",
    }


def test_map_record_primary_first_and_old_style_ids() -> None:
    record = {**RECORD, "arxiv_id": "hep-th/9901001v2", "primary_subject": "High Energy Physics - Theory (hep-th)",
              "subjects": ["General Relativity and Quantum Cosmology (gr-qc)", "High Energy Physics - Theory (hep-th)"],
              "publication_date": None, "submission_date": "1 Jan 1999"}
    row = map_record(record)
    assert (row["id"], row["categories"], row["published"]) == ("hep-th/9901001", ["hep-th", "gr-qc"], "1999-01-01")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"arxiv_id": None}, NO_ID),
        ({"title": " \n"}, EMPTY_TITLE),
        ({"abstract": None}, EMPTY_ABSTRACT),
        ({"primary_subject": "Machine Learning", "subjects": "Machine Learning; Other (not a code!)"},
         NO_CATEGORY_CODE),
        ({"publication_date": None, "submission_date": "sometime in 2016"}, NO_DATE),
    ],
)
def test_map_record_names_why_it_cannot_map(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(UnmappableRecord) as raised:
        map_record({**RECORD, **change})
    assert raised.value.reason == reason


def test_subject_codes_takes_the_code_in_parentheses() -> None:
    optics = "Optics (physics.optics); Image and Video Processing (eess.IV)"
    assert subject_codes(optics) == ["physics.optics", "eess.IV"]
    assert subject_codes("Neurons and Cognition (q-bio.NC)") == ["q-bio.NC"]
    assert subject_codes("Machine Learning (ML) (cs.LG)") == ["cs.LG"]  # last group of the item
    assert subject_codes(None) == [] and subject_codes("Machine Learning") == []


@pytest.mark.parametrize(
    ("publication_date", "submission_date", "expected"),
    [
        (date(2025, 4, 2), "1 Jan 2020", date(2025, 4, 2)),
        (datetime(2025, 4, 2, 13, 5), None, date(2025, 4, 2)),
        (pd.Timestamp("2025-04-02"), None, date(2025, 4, 2)),
        ("2025-04-02", None, date(2025, 4, 2)),
        (None, "3 Jan 2016, last revised 4 Feb 2017", date(2016, 1, 3)),
        (float("nan"), "12 Sept. 2019", date(2019, 9, 12)),
        (pd.NaT, "31 Feb 2019", None),
        (None, None, None),
    ],
)
def test_parse_published(publication_date: object, submission_date: object, expected: date | None) -> None:
    assert parse_published(publication_date, submission_date) == expected


def test_data_files_format_from_suffix() -> None:
    assert data_files_format("/data/train-00000-of-00004.parquet") == "parquet"
    assert data_files_format("papers.jsonl.gz") == "json"
    assert data_files_format("http://127.0.0.1:8000/dump/papers.jsonl?download=1") == "json"
    with pytest.raises(ValueError, match=r"\.parquet or \.jsonl"):
        data_files_format("papers.csv")
