"""Scoring an embedding model on the test split with the shared metric functions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from arxiv_assets.ml.embedding import Precision, encode
from arxiv_assets.ml.metrics import (
    ClassificationReport,
    RetrievalReport,
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
    test_vectors: np.ndarray  # for plots


def probe_train_sample(train: pd.DataFrame, per_subject: int, seed: int = 0) -> pd.DataFrame:
    """A per-subject sample of the train split to fit the linear probe on (encoding all of it costs minutes on CPU)."""
    return (train.sample(frac=1.0, random_state=seed).groupby("primary_subject", group_keys=False)
            .head(per_subject).reset_index(drop=True))


def evaluate_model(model, probe_train: pd.DataFrame, test: pd.DataFrame, batch_size: int = 64,
                   precision: Precision = "fp32", seed: int = 0) -> ModelEvaluation:
    test_vectors = encode(model, paper_texts(test), batch_size, precision)
    subjects = test["primary_subject"].tolist()
    return ModelEvaluation(
        subject_retrieval=subject_retrieval(test_vectors, subjects),
        known_item=known_item_retrieval(
            encode(model, test["title"].tolist(), batch_size, precision),
            encode(model, test["abstract"].tolist(), batch_size, precision),
            test["id"].tolist(), subjects,
        ),
        classification=linear_probe(
            encode(model, paper_texts(probe_train), batch_size, precision), probe_train["primary_subject"],
            test_vectors, subjects, seed=seed,
        ),
        test_vectors=test_vectors,
    )
