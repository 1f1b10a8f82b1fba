"""A batch sampler for the trainer, in its own module: importing sentence-transformers costs seconds,
and only a training run should pay them (not every Dagster CLI call or pod that loads the code location)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from datasets import Dataset, Value
from sentence_transformers.base.sampler import DefaultBatchSampler, NoDuplicatesBatchSampler


class SubjectDistinctBatchSampler(DefaultBatchSampler):
    """Batches in which no two pairs share a primary subject (read from the integer ``label`` column).

    With MNRL every other pair in a batch is a negative. On arXiv, with ~18 subjects and cs.CV
    dominant, a random batch of 32 is mostly same-subject "negatives", which teaches the model to
    push apart exactly the papers it should pull together. Drawing each batch from distinct
    subjects makes every in-batch negative a true negative; the batch size is therefore at most
    the number of subjects. (A module-level class: the trainer pickles its arguments into checkpoints.)
    """

    def __init__(self, dataset: Dataset, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator: Any = None, seed: int = 0) -> None:
        labels = np.asarray(dataset["label"])
        self.by_subject = {int(s): np.flatnonzero(labels == s) for s in np.unique(labels)}
        super().__init__(dataset, min(batch_size, len(self.by_subject)), drop_last, valid_label_columns, generator,
                         seed)
        self.epoch = 0
        self._length = len(labels) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        subjects = list(self.by_subject)
        queues = {s: list(rng.permutation(rows)) for s, rows in self.by_subject.items()}
        for _ in range(self._length):
            batch = []
            for i in rng.choice(len(subjects), size=self.batch_size, replace=False):
                queue = queues[subjects[i]]
                if not queue:  # a small subject ran out: reshuffle it rather than end the epoch early
                    queue.extend(rng.permutation(self.by_subject[subjects[i]]))
                batch.append(int(queue.pop()))
            yield batch


def distinct_subjects_where_labelled(dataset: Dataset, batch_size: int, drop_last: bool,
                                     valid_label_columns: list[str] | None = None, generator: Any = None,
                                     seed: int = 0) -> DefaultBatchSampler:
    """Per dataset of a multi-dataset run: subject-distinct batches where pairs carry a subject ``label``
    (paper -> paper, paper -> subject name: a same-subject in-batch negative is a false one), plain
    no-duplicate batches where they do not (title -> own abstract: another paper of the same subject is
    a true and useful hard negative; a distillation set's papers, labelled with the teacher's embeddings)."""
    label = dataset.features.get("label")
    subject_labelled = isinstance(label, Value) and label.dtype.startswith("int")  # not a teacher's embedding
    sampler = SubjectDistinctBatchSampler if subject_labelled else NoDuplicatesBatchSampler
    return sampler(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
