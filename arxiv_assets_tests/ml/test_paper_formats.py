"""benchmarks.paper_formats: the evaluation embeds the papers in the format asked for (retrieval and the probe alike),
title search stays titles against abstracts, and a comparison reports title search once."""

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from arxiv_assets.ml.evaluation import evaluate_encoder
from arxiv_assets.ml.metrics import Vectors
from arxiv_assets.ml.splits import JUDGING_SPLITS
from arxiv_assets.ml.text import paper_texts
from benchmarks.paper_formats import PAPER_FORMATS, format_rows
from benchmarks.recipe_comparison import interval_cells


@pytest.fixture(scope="module")
def tfidf(every_slice_splits: pd.DataFrame) -> TfidfVectorizer:
    """A real encoder that knows every word of every format."""
    splits = every_slice_splits
    return TfidfVectorizer().fit([*paper_texts(splits), *splits["title"], *splits["abstract"]])


def recording(vectorizer: TfidfVectorizer, asked: list[list[str]]) -> Callable[[list[str]], Vectors]:
    """The vectorizer as an encoder that notes every list of texts it is asked for."""
    def encode(texts: list[str]) -> Vectors:
        asked.append(list(texts))
        return vectorizer.transform(texts)
    return encode


@pytest.mark.parametrize("paper_format", ["abstract", "title"])
def test_papers_and_probe_are_embedded_in_the_format_asked(every_slice_splits, tfidf, paper_format: str) -> None:
    splits = every_slice_splits
    texts_of = PAPER_FORMATS[paper_format]
    asked: list[list[str]] = []
    evaluate_encoder(recording(tfidf, asked), splits, texts_of=texts_of)
    judged = splits[splits["split"].isin(JUDGING_SPLITS)].reset_index(drop=True)
    probe = splits[splits["probe"]]
    assert asked[0] == texts_of(judged)  # the papers of subject retrieval and of the cross-validated probes
    assert texts_of(probe) in asked  # the probe is fit on the format it scores
    assert not any(text in paper_texts(judged) for texts in asked for text in texts)  # no "title. abstract"
    assert judged["title"].tolist() in asked and judged["abstract"].tolist() in asked  # title search as ever


def test_title_search_is_the_same_in_every_format_and_the_papers_figures_are_not(every_slice_splits, tfidf) -> None:
    scored = {fmt: evaluate_encoder(tfidf.transform, every_slice_splits, texts_of=texts_of).headline()
              for fmt, texts_of in PAPER_FORMATS.items()}
    for fmt in ("abstract", "title"):
        for figure, value in scored["title. abstract"].items():
            if "known-item" in figure:
                assert scored[fmt][figure] == value
        assert scored[fmt]["test/P@10"] != scored["title. abstract"]["test/P@10"]


def test_a_comparison_reports_title_search_for_the_first_format_only() -> None:
    table = pd.DataFrame({"slice": ["test"] * 3, "figure": ["P@10", "known-item R@1", "LR accuracy"],
                          "points": [1.0, 0.5, -0.2], "low": [0.4, 0.1, -1.0], "high": [1.6, 0.9, 0.6],
                          "verdict": ["above", "above", "within noise"]})
    first, later = format_rows(table, "title. abstract", first=True), format_rows(table, "title", first=False)
    assert first["figure"].tolist() == ["P@10", "known-item R@1", "LR accuracy"]
    assert later["figure"].tolist() == ["P@10", "LR accuracy"]
    assert set(later["format"]) == {"title"}
    assert np.allclose(later["points"], [1.0, -0.2])
    assert interval_cells(later) == ["+1.00 [+0.40, +1.60]", "-0.20 [-1.00, +0.60]"]
