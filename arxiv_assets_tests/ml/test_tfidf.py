"""The TF-IDF baseline on a small real subset: every slice scored, sane ranges, clearly better than chance."""

import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from arxiv_assets.ml.splits import papers_in
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.tfidf import evaluate_tfidf
from arxiv_assets_tests.ml.conftest import EVERY_SLICE_SUBJECTS


@pytest.fixture(scope="module")
def splits(every_slice_splits: pd.DataFrame) -> pd.DataFrame:
    return every_slice_splits


@pytest.fixture(scope="module")
def evaluation(splits):
    return evaluate_tfidf(splits)


def test_every_slice_is_scored_with_figures_in_range(splits, evaluation):
    slices = evaluation.evaluation.slices
    assert set(slices) == {"test", "unseen", "mixed", "new", "rare"}
    assert set(papers_in(splits, "rare")["primary_subject"]) == set(EVERY_SLICE_SUBJECTS[-4:])
    for name, scored in slices.items():
        assert scored.papers == splits["split"].isin(["test", "unseen"] if name == "mixed" else [name]).sum()
        for summary in scored.subject_retrieval.summary().values():
            assert set(summary) == {"P@1", "P@5", "P@10", "R@1", "R@10", "MRR@10", "NDCG@10", "MAP@100"}
            assert all(0.0 <= value <= 1.0 for value in summary.values()), summary
    headline = evaluation.evaluation.headline()
    assert {"test/P@10", "unseen/P@10", "unseen/LR accuracy", "mixed/P@10", "new/known-item R@1", "rare/P@10",
            "rare/LR accuracy", "rare/known-item MRR@10"} <= set(headline)
    assert "mixed/LR accuracy" not in headline  # the mixed slice is retrieval only
    assert set(slices["test"].subject_retrieval.per_group.index) == set(papers_in(splits, "test")["primary_subject"])
    assert evaluation.vocabulary_size > 1000


def test_beats_chance_by_a_margin(splits, evaluation):
    for name in ("test", "unseen", "rare"):
        papers = papers_in(splits, name)
        # Chance P@10 for a query is the share of the *other* papers that share its subject.
        sizes = papers["primary_subject"].map(papers["primary_subject"].value_counts())
        chance = ((sizes - 1) / (len(papers) - 1)).mean()
        scored = evaluation.evaluation.slices[name]
        assert scored.subject_retrieval.micro["P@10"] > chance + 0.2
        assert scored.classification.accuracy > 1 / papers["primary_subject"].nunique() + 0.3
        # A title finds its own abstract almost always with a lexical match.
        assert scored.known_item.micro["MRR@10"] > 0.7


def test_the_vectorizer_is_fit_on_the_train_papers_alone(splits, monkeypatch: pytest.MonkeyPatch):
    """What the baseline's TF-IDF is fit on, seen by the vectorizer itself: every train paper and nothing else
    (an eval, test, new or unseen paper's words in the vocabulary would flatter TF-IDF on the slices)."""
    fitted: list[list[str]] = []
    fit = TfidfVectorizer.fit

    def recording_fit(vectorizer: TfidfVectorizer, raw_documents, y=None) -> TfidfVectorizer:
        fitted.append(list(raw_documents))
        return fit(vectorizer, raw_documents, y)

    monkeypatch.setattr(TfidfVectorizer, "fit", recording_fit)
    evaluate_tfidf(splits)
    assert len(fitted) == 1
    assert sorted(fitted[0]) == sorted(paper_texts(papers_in(splits, "train")))


def test_probe_on_the_probe_papers_and_on_all_train(splits, evaluation):
    train, test = papers_in(splits, "train"), papers_in(splits, "test")
    seen = train["primary_subject"].nunique()
    assert train["probe"].sum() == 20 * seen < len(train)
    classification = evaluation.evaluation.slices["test"].classification
    assert classification.per_class["support"].sum() == len(test)
    # Several times the labelled papers: the all-train probe is at least as good, and both beat chance.
    assert evaluation.classification_all_train.accuracy >= classification.accuracy - 0.02
    assert classification.accuracy > 1 / seen + 0.3
