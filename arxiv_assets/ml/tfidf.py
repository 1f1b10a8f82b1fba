"""The lexical baseline every model has to beat."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

from arxiv_assets.ml.metrics import (
    ClassificationReport,
    RetrievalReport,
    known_item_retrieval,
    linear_probe,
    subject_retrieval,
)
from arxiv_assets.ml.text import paper_texts


@dataclass(frozen=True)
class TfidfEvaluation:
    subject_retrieval: RetrievalReport
    known_item: RetrievalReport
    classification: ClassificationReport
    vocabulary_size: int


def make_vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(sublinear_tf=True, min_df=2, max_df=0.5, ngram_range=(1, 2), stop_words="english",
                           max_features=200_000)


def evaluate_tfidf(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0) -> TfidfEvaluation:
    """Fit on the train split only (no test vocabulary leaks in), score on the test split."""
    vectorizer = make_vectorizer().fit(paper_texts(train))
    test_vectors = vectorizer.transform(paper_texts(test))
    return TfidfEvaluation(
        subject_retrieval=subject_retrieval(test_vectors, test["primary_subject"].tolist()),
        known_item=known_item_retrieval(
            vectorizer.transform(test["title"].tolist()), vectorizer.transform(test["abstract"].tolist()),
            test["id"].tolist(), test["primary_subject"].tolist(),
        ),
        classification=linear_probe(
            vectorizer.transform(paper_texts(train)), train["primary_subject"], test_vectors,
            test["primary_subject"], seed=seed,
        ),
        vocabulary_size=len(vectorizer.vocabulary_),
    )
