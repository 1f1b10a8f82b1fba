"""The TF-IDF baseline on a small real subset: sane metric ranges and clearly better than chance."""

import pandas as pd
import pytest

from arxiv_assets.ml.splits import make_splits
from arxiv_assets.ml.tfidf import evaluate_tfidf

SUBJECTS = ["cs.CV", "cs.CL", "astro-ph.GA", "astro-ph.CO", "gr-qc", "cs.RO"]


@pytest.fixture(scope="module")
def evaluation(sample_papers: pd.DataFrame):
    papers = sample_papers[sample_papers["primary_subject"].isin(SUBJECTS)]
    split = make_splits(papers, min_papers_per_subject=50, max_papers_per_subject=120, eval_fraction=0.1,
                        test_fraction=0.3, probe_papers_per_subject=20).papers
    train = split[split["split"] == "train"].reset_index(drop=True)
    test = split[split["split"] == "test"].reset_index(drop=True)
    return train, test, evaluate_tfidf(train, test)


def test_metrics_are_in_range(evaluation):
    _, test, result = evaluation
    for report in (result.subject_retrieval, result.known_item):
        for summary in report.summary().values():
            assert set(summary) == {"P@1", "P@5", "P@10", "R@1", "R@10", "MRR@10", "NDCG@10", "MAP@100"}
            assert all(0.0 <= value <= 1.0 for value in summary.values()), summary
    assert len(result.subject_retrieval.per_query) == len(test)
    assert set(result.subject_retrieval.per_group.index) == set(SUBJECTS)
    assert 0 <= result.classification.accuracy <= 1 and 0 <= result.classification.macro_f1 <= 1
    assert result.vocabulary_size > 1000


def test_beats_chance_by_a_margin(evaluation):
    _, test, result = evaluation
    # Chance P@10 for a query is the share of the *other* test papers that share its subject.
    sizes = test["primary_subject"].map(test["primary_subject"].value_counts())
    chance = ((sizes - 1) / (len(test) - 1)).mean()
    assert chance < 0.25
    assert result.subject_retrieval.micro["P@10"] > chance + 0.2
    assert result.subject_retrieval.macro["P@10"] > chance + 0.2
    assert result.classification.accuracy > 1 / len(SUBJECTS) + 0.3
    # A title finds its own abstract among ~200 almost always with a lexical match.
    assert result.known_item.micro["MRR@10"] > 0.7


def test_fit_on_train_only(evaluation):
    train, test, _ = evaluation
    assert set(train["id"]).isdisjoint(test["id"])


def test_probe_on_the_probe_papers_and_on_all_train(evaluation):
    train, test, result = evaluation
    assert train["probe"].sum() == 20 * len(SUBJECTS) < len(train)
    assert result.classification.per_class["support"].sum() == len(test)
    # Six times the labelled papers: the all-train probe is at least as good, and both beat chance.
    assert result.classification_all_train.accuracy >= result.classification.accuracy - 0.02
    assert result.classification.accuracy > 1 / len(SUBJECTS) + 0.3
