"""Distillation from a bigger teacher on unlabelled papers: the student learns which papers the teacher finds alike.

all-mpnet-base-v2 untrained beats all-MiniLM-L6-v2 on subjects neither saw (benchmarks/RESULTS.md) at three
times the cost of every embedding. Its embeddings (768-d) cannot be matched by the student's (384-d)
directly, but its *similarities* can: in a batch of random train papers, the student's softmax over
each paper's cosine similarities to the others is pulled towards the teacher's (a row-wise KL divergence,
the in-batch form of ``DistillKLDivLoss``). No label is used, so the structure learnt is the teacher's,
not the seen subjects'. (Imports torch: the training code imports this module only when it trains.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch
from datasets import Dataset
from torch import nn

from arxiv_assets.ml.embedding import Precision, encode, load_model
from arxiv_assets.ml.text import paper_texts

TEACHER_KIND = "teacher"  # the name of the teacher's dataset (and loss) in a multi-dataset run


@dataclass(frozen=True)
class TeacherSet:
    """Train papers' texts with the teacher's embeddings of them (the ``label`` column), and what it cost."""

    dataset: Dataset  # columns: "text", "label" (the teacher's normalized embedding)
    teacher: str
    seconds: float


def teacher_set(papers: pd.DataFrame, n_papers: int, teacher: str, device: str, precision: Precision,
                max_seq_length: int, seed: int) -> TeacherSet:
    """``n_papers`` papers drawn at random from ``papers`` (train papers only: never one that judges the model),
    encoded by ``teacher`` at ``max_seq_length`` tokens, the length the student trains at."""
    if n_papers <= 0:
        raise ValueError(f"teacher papers must be positive, got {n_papers}")
    sample = papers.sample(n=min(n_papers, len(papers)), random_state=seed)
    texts = paper_texts(sample)
    started = time.perf_counter()
    model = load_model(teacher, device=device, max_seq_length=max_seq_length)
    vectors = encode(model, texts, precision=precision)
    return TeacherSet(Dataset.from_dict({"text": texts, "label": vectors.tolist()}), teacher,
                      time.perf_counter() - started)


class InBatchSimilarityDistillLoss(nn.Module):
    """KL(teacher || student) over each paper's softmax of ``scale`` x cosine similarity to the rest of its batch.

    The labels are the teacher's embeddings of the batch's texts. ``scale`` is MNRL's (20): the same sharpness
    of the in-batch softmax, and gradients of the same size, as the contrastive losses it is trained beside."""

    def __init__(self, model, scale: float = 20.0) -> None:
        super().__init__()
        self.model = model
        self.scale = scale

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        (features,) = sentence_features
        student = nn.functional.normalize(self.model(features)["sentence_embedding"].float(), dim=-1)
        teacher = nn.functional.normalize(labels.to(student.device, torch.float32), dim=-1)
        # a paper against itself says nothing: a large negative, not -inf (KL's 0 * inf would be a NaN)
        self_mask = torch.eye(len(student), device=student.device) * 1e4
        student_log_p = torch.log_softmax(self.scale * student @ student.T - self_mask, dim=1)
        teacher_log_p = torch.log_softmax(self.scale * teacher @ teacher.T - self_mask, dim=1)
        return nn.functional.kl_div(student_log_p, teacher_log_p, log_target=True, reduction="batchmean")

    def get_config_dict(self) -> dict[str, float]:
        return {"scale": self.scale}
