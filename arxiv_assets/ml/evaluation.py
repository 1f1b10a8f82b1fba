"""Scoring an embedding model on the test split with the shared metric functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from arxiv_assets.ml.embedding import Precision, encode
from arxiv_assets.ml.metrics import (
    PROBE_CS,
    ClassificationReport,
    RetrievalReport,
    Vectors,
    known_item_retrieval,
    linear_probe,
    subject_retrieval,
)
from arxiv_assets.ml.text import paper_texts


@dataclass(frozen=True)
class ModelEvaluation:
    subject_retrieval: RetrievalReport
    known_item: RetrievalReport
    classification: ClassificationReport
    test_vectors: Vectors  # for plots


def per_subject_sample(papers: pd.DataFrame, per_subject: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``per_subject`` random papers of each subject (benchmarks score on such a sample to save CPU time)."""
    return (papers.sample(frac=1.0, random_state=seed).groupby("primary_subject", group_keys=False)
            .head(per_subject).reset_index(drop=True))


def evaluate_encoder(encode_texts: Callable[[list[str]], Vectors], probe_train: pd.DataFrame, test: pd.DataFrame,
                     seed: int = 0, probe_cs: Sequence[float] = PROBE_CS) -> ModelEvaluation:
    """The evaluation every system gets, whatever turns texts into vectors (a model, TF-IDF, an export):
    subject retrieval over the test papers, title -> own-abstract known-item retrieval, and a linear
    probe fit on ``probe_train`` (the splits' ``probe`` papers) and scored on the test papers."""
    test_vectors = encode_texts(paper_texts(test))
    subjects = test["primary_subject"].tolist()
    return ModelEvaluation(
        subject_retrieval=subject_retrieval(test_vectors, subjects),
        known_item=known_item_retrieval(encode_texts(test["title"].tolist()), encode_texts(test["abstract"].tolist()),
                                        test["id"].tolist(), subjects),
        classification=linear_probe(encode_texts(paper_texts(probe_train)), probe_train["primary_subject"],
                                    test_vectors, subjects, seed=seed, cs=probe_cs),
        test_vectors=test_vectors,
    )


def evaluate_model(model, probe_train: pd.DataFrame, test: pd.DataFrame, batch_size: int = 64,
                   precision: Precision = "fp32", seed: int = 0) -> ModelEvaluation:
    return evaluate_encoder(lambda texts: encode(model, texts, batch_size, precision), probe_train, test, seed)
