"""The lexical baseline every model has to beat."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

from arxiv_assets.ml.evaluation import evaluate_encoder
from arxiv_assets.ml.metrics import (
    ClassificationReport,
    RetrievalReport,
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
    """Fit on the train split only (no test vocabulary leaks in), score on the test split; the linear
    probe is fit on the whole train split (TF-IDF features cost nothing to compute)."""
    vectorizer = make_vectorizer().fit(paper_texts(train))
    result = evaluate_encoder(vectorizer.transform, train, test, seed=seed)
    return TfidfEvaluation(subject_retrieval=result.subject_retrieval, known_item=result.known_item,
                           classification=result.classification, vocabulary_size=len(vectorizer.vocabulary_))
