"""Distillation from a teacher's in-batch similarities: the loss, its batches, and a real run with a teacher."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

from arxiv_assets.ml.distillation import InBatchSimilarityDistillLoss, teacher_set
from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, load_model
from arxiv_assets.ml.pairs import PairSettings, make_pair_sets
from arxiv_assets.ml.sampling import SubjectDistinctBatchSampler, distinct_subjects_where_labelled
from arxiv_assets.ml.splits import SplitSettings, make_splits, papers_in
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.training import TrainSettings, train


@pytest.fixture(scope="module")
def student():
    return load_model(BUNDLED_BASE_MODEL, device="cpu", max_seq_length=64)


@pytest.fixture(scope="module")
def tiny_splits(sample_papers: pd.DataFrame) -> pd.DataFrame:
    return make_splits(sample_papers, SplitSettings(min_papers_per_subject=150, max_papers_per_subject=20,
                                                    probe_papers_per_subject=5, unseen_papers_per_subject=5)).papers


def distill_loss(student, texts: list[str], teacher: torch.Tensor) -> torch.Tensor:
    loss = InBatchSimilarityDistillLoss(student)
    return loss([student.preprocess(texts)], teacher)


def test_the_loss_is_zero_when_the_student_already_agrees_with_the_teacher_and_falls_as_it_learns(
        student, tiny_splits: pd.DataFrame) -> None:
    texts = paper_texts(papers_in(tiny_splits, "train").head(16))
    with torch.no_grad():
        own = student.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    # the same similarities in another space (a rotation, more dimensions) are full agreement
    width = own.shape[1] * 2
    rotation = torch.linalg.qr(torch.randn(width, width, generator=torch.Generator().manual_seed(0)))[0]
    agreeing_teacher = torch.cat([own, torch.zeros_like(own)], dim=1) @ rotation
    with torch.no_grad():
        assert distill_loss(student, texts, agreeing_teacher).item() == pytest.approx(0.0, abs=1e-4)

    # a teacher that pairs the papers differently: the loss is positive and gradient steps reduce it
    other_teacher = own[torch.randperm(len(own), generator=torch.Generator().manual_seed(1))]
    trained = load_model(BUNDLED_BASE_MODEL, device="cpu", max_seq_length=64)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = distill_loss(trained, texts, other_teacher)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.1
    assert losses[-1] < losses[0]


def test_teacher_papers_go_in_plain_batches_and_subject_labelled_pairs_in_subject_distinct_ones() -> None:
    teacher_rows = Dataset.from_dict({"text": [f"paper {i}" for i in range(8)],
                                      "label": np.eye(8, 4, dtype=np.float32).tolist()})
    subject_pairs = Dataset.from_dict({"anchor": ["a", "b", "c"], "positive": ["d", "e", "f"], "label": [0, 1, 2]})
    title_pairs = Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"]})
    choose = distinct_subjects_where_labelled
    assert type(choose(teacher_rows, 4, False, valid_label_columns=["label"])) is NoDuplicatesBatchSampler
    assert type(choose(subject_pairs, 4, False, valid_label_columns=["label"])) is SubjectDistinctBatchSampler
    assert type(choose(title_pairs, 4, False, valid_label_columns=["label"])) is NoDuplicatesBatchSampler


def test_a_run_with_a_teacher_trains_on_its_papers_too(tiny_splits: pd.DataFrame, tmp_path: Path) -> None:
    pairs = make_pair_sets(tiny_splits, PairSettings(train_pairs=64, eval_pairs=16))
    train_papers = papers_in(tiny_splits, "train")
    # the bundled model stands in for a bigger teacher: only its embeddings' similarities are used
    settings = TrainSettings(batch_size=16, max_seq_length_cap=32, train_seq_length=32, report_to_wandb=False,
                             checkpoint_steps=10_000, eval_queries_per_subject=2, interpolate_with_base=False,
                             soup_loss=None, device="cpu", teacher_model=BUNDLED_BASE_MODEL, teacher_papers=48)
    with_teacher = train(pairs["train"], pairs["eval"], papers_in(tiny_splits, "eval"), settings, tmp_path / "t",
                         tmp_path / "work", data_fingerprint="teacher", train_papers=train_papers)
    without = train(pairs["train"], pairs["eval"], papers_in(tiny_splits, "eval"),
                    replace(settings, teacher_model=None), tmp_path / "n", tmp_path / "work",
                    data_fingerprint="no-teacher")
    assert with_teacher.teacher_seconds is not None and with_teacher.teacher_seconds > 0
    assert without.teacher_seconds is None
    assert with_teacher.steps == without.steps + 48 // 16  # the teacher's papers add their own batches

    with pytest.raises(ValueError, match="train papers"):
        train(pairs["train"], pairs["eval"], papers_in(tiny_splits, "eval"), settings, tmp_path / "x",
              tmp_path / "work", data_fingerprint="missing")


def test_the_teacher_encodes_only_the_papers_it_is_given(tiny_splits: pd.DataFrame) -> None:
    train_papers = papers_in(tiny_splits, "train")
    teacher = teacher_set(train_papers, 10, BUNDLED_BASE_MODEL, "cpu", "fp32", 32, seed=0)
    assert len(teacher.dataset) == 10
    assert set(teacher.dataset["text"]) <= set(paper_texts(train_papers))
    vectors = np.asarray(teacher.dataset["label"])
    assert vectors.shape == (10, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        teacher_set(train_papers, 0, BUNDLED_BASE_MODEL, "cpu", "fp32", 32, seed=0)
