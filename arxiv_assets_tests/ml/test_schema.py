"""validate_papers: real rows pass; every kind of broken table is refused with a message naming it. paper_row and
drop_repeated_ids: what both online sources do to a record."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from arxiv_assets.ml.schema import (
    NO_CATEGORY_CODE,
    PAPER_COLUMNS,
    PaperSchemaError,
    UnmappableRecord,
    drop_repeated_ids,
    find_problems,
    is_arxiv_category,
    paper_row,
    strip_version,
    validate_papers,
)

SOURCE = "test source, month 2025-06-01"


@pytest.fixture
def rows(sample_papers: pd.DataFrame) -> pd.DataFrame:
    return sample_papers.head(40).copy().reset_index(drop=True)


def test_real_rows_pass_and_keep_only_schema_columns(rows):
    table = validate_papers(rows.assign(extra="dropped"), source=SOURCE)
    assert list(table.columns) == list(PAPER_COLUMNS)
    assert len(table) == 40
    assert table["id"].tolist() == rows["id"].tolist()
    assert all(isinstance(c, list) and c[0] == s for c, s in zip(table["categories"], table["primary_subject"],
                                                                   strict=True))
    assert not any(mask.any() for mask in find_problems(table).values())


def test_missing_column_names_the_column_and_the_source(rows):
    with pytest.raises(PaperSchemaError) as error:
        validate_papers(rows.drop(columns=["abstract"]), source=SOURCE)
    message = str(error.value)
    assert message.startswith(SOURCE)
    assert "missing column(s) ['abstract']" in message


def test_empty_abstracts_are_counted_with_their_ids(rows):
    broken = rows.copy()
    broken.loc[[3, 7], "abstract"] = ["", "   "]
    broken.loc[11, "abstract"] = None
    with pytest.raises(PaperSchemaError) as error:
        validate_papers(broken, source=SOURCE)
    message = str(error.value)
    assert message.startswith(f"{SOURCE}: ")
    assert "3 row(s) with empty abstract" in message
    assert str(rows.loc[3, "id"]) in message


def test_duplicate_ids_are_refused(rows):
    broken = pd.concat([rows, rows.iloc[[5]]], ignore_index=True)
    with pytest.raises(PaperSchemaError, match=r"2 row\(s\) with duplicate id") as error:
        validate_papers(broken, source=SOURCE)
    assert str(rows.loc[5, "id"]) in str(error.value)


@pytest.mark.parametrize("categories", [["Computer Vision"], [], ["cs.CV", "not a code!"], None])
def test_non_arxiv_categories_are_refused(rows, categories):
    broken = rows.copy()
    broken["categories"] = broken["categories"].astype(object)
    broken.at[2, "categories"] = categories
    with pytest.raises(PaperSchemaError, match="1 row\\(s\\) with categories not arXiv codes") as error:
        validate_papers(broken, source=SOURCE)
    assert SOURCE in str(error.value)


def test_primary_subject_must_be_the_first_category(rows):
    broken = rows.copy()
    broken.loc[0, "primary_subject"] = "math.AG"
    with pytest.raises(PaperSchemaError, match="primary_subject not the first category"):
        validate_papers(broken, source=SOURCE)


@pytest.mark.parametrize("published", ["2025/06/01", "06/01/2025", "2025-13-01", "2025-06-01T10:00:00",
                                       "2025-6-1", "2025-06-1", "yesterday", ""])
def test_bad_dates_are_refused(rows, published):
    broken = rows.copy()
    broken.loc[4, "published"] = published
    with pytest.raises(PaperSchemaError, match="published not YYYY-MM-DD") as error:
        validate_papers(broken, source=SOURCE)
    assert str(rows.loc[4, "id"]) in str(error.value)


def test_every_problem_is_named_in_one_message(rows):
    broken = rows.copy()
    broken.loc[0, "title"] = ""
    broken.loc[1, "id"] = broken.loc[2, "id"]
    broken.loc[3, "published"] = "March 2025"
    with pytest.raises(PaperSchemaError) as error:
        validate_papers(broken, source=SOURCE)
    message = str(error.value)
    for problem in ("empty title", "duplicate id", "published not YYYY-MM-DD"):
        assert problem in message
    assert "empty abstract" not in message


def test_numpy_categories_from_parquet_become_lists(rows):
    as_arrays = rows.assign(categories=[np.array(c) for c in rows["categories"]])
    table = validate_papers(as_arrays, source=SOURCE)
    assert all(type(c) is list for c in table["categories"])


def test_helpers():
    assert strip_version("2503.11731v2") == "2503.11731"
    assert strip_version("hep-th/9901001v1") == "hep-th/9901001"
    assert strip_version("2503.11731") == "2503.11731"
    for code in ("cs.CV", "astro-ph.GA", "gr-qc", "hep-ph", "q-bio.NC", "physics.optics", "math-ph"):
        assert is_arxiv_category(code), code
    for code in ("CS.CV", "cs CV", "", "cs.", "1cs.CV"):
        assert not is_arxiv_category(code), code


def test_paper_row_cleans_a_record_into_a_valid_row():
    row = paper_row(paper_id=" 2503.11731v2", title="A  title\n", abstract=" An\tabstract ",
                    categories=["cs.LG", "I.2.6", "stat.ML", "cs.LG", "68T05"], published=date(2025, 3, 14))
    assert row == {"id": "2503.11731", "title": "A title", "abstract": "An abstract",
                   "categories": ["cs.LG", "stat.ML"], "primary_subject": "cs.LG", "published": "2025-03-14"}
    validate_papers(pd.DataFrame([row]), source=SOURCE)
    with pytest.raises(UnmappableRecord) as raised:
        paper_row(paper_id="2503.11731", title="t", abstract="a", categories=["I.2.6"], published=date(2025, 3, 14))
    assert raised.value.reason == NO_CATEGORY_CODE and "I.2.6" in raised.value.detail


def test_drop_repeated_ids_keeps_the_first_of_each():
    rows = [{"id": "a", "title": "first"}, {"id": "b"}, {"id": "a", "title": "second"}, {"id": "a"}]
    kept, repeated = drop_repeated_ids(rows)
    assert kept == [{"id": "a", "title": "first"}, {"id": "b"}]
    assert repeated == ["a", "a"]
