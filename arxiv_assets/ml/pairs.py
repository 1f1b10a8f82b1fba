"""Contrastive pairs in the column layout SentenceTransformerTrainer consumes directly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from datasets import Dataset
from sklearn.feature_extraction.text import TfidfVectorizer

from arxiv_assets.ml.taxonomy import subject_description
from arxiv_assets.ml.text import paper_text, paper_texts

# Columns the trainer reads, in order. "subject" rides along for label-aware batching and reports;
# the training code selects the text columns before handing the set to a loss.
TEXT_COLUMNS: tuple[str, ...] = ("anchor", "positive")
NEGATIVE_COLUMN = "negative"
SUBJECT_COLUMN = "subject"


@dataclass(frozen=True)
class PairOptions:
    n_pairs: int
    title_abstract_fraction: float = 0.0  # share of pairs that are (title, own abstract)
    subject_fraction: float = 0.0  # share of pairs that are (paper, its subject's name): see make_pairs
    hard_negatives: bool = False  # add a lexically close paper of another subject
    seed: int = 0


def make_pairs(papers: pd.DataFrame, options: PairOptions) -> Dataset:
    """Sample ``n_pairs`` (anchor, positive[, negative], subject) rows, balanced over subjects.

    A subject is drawn uniformly, then two different papers of it; or, for the title/abstract
    share, one paper's title and its own abstract; or, for the subject share, one paper and its
    subject in words ("Astrophysics of Galaxies (astro-ph.GA)"). Uniform subjects is what keeps
    cs.CV (39% of arXiv here) from drowning the small subjects.

    Subject pairs cost one paper per pair instead of two, and in a subject-distinct batch (the
    ``mnrl_distinct_subjects`` loss) every other positive is another subject's name, so MNRL becomes
    a softmax over the subjects with the names as class prototypes: the model learns to separate
    subjects directly rather than through one random paper standing in for each.
    """
    if options.n_pairs <= 0:
        raise ValueError(f"n_pairs must be positive, got {options.n_pairs}")
    if not 0 <= options.title_abstract_fraction + options.subject_fraction <= 1:
        raise ValueError("title_abstract_fraction + subject_fraction must lie in [0, 1], got "
                         f"{options.title_abstract_fraction} + {options.subject_fraction}")
    rng = np.random.default_rng(options.seed)
    by_subject = {s: rows.index.to_numpy() for s, rows in papers.groupby("primary_subject") if len(rows) >= 2}
    if not by_subject:
        raise ValueError("no subject has two papers to pair")
    subjects = sorted(by_subject)
    drawn_subjects = rng.choice(len(subjects), size=options.n_pairs)
    kind = rng.random(options.n_pairs)
    title_abstract = kind < options.title_abstract_fraction
    subject_named = ~title_abstract & (kind < options.title_abstract_fraction + options.subject_fraction)
    titles, abstracts = papers["title"], papers["abstract"]
    anchors, positives, anchor_rows, subject_names = [], [], [], []
    for s, own, named in zip(drawn_subjects, title_abstract, subject_named, strict=True):
        rows = by_subject[subjects[s]]
        a, p = rng.choice(rows, size=2, replace=False)
        if own:
            anchors.append(titles[a])
            positives.append(abstracts[a])
        else:
            anchors.append(paper_text(titles[a], abstracts[a]))
            positives.append(subject_description(subjects[s]) if named else paper_text(titles[p], abstracts[p]))
        anchor_rows.append(a)
        subject_names.append(subjects[s])
    columns: dict[str, list[str]] = {"anchor": anchors, "positive": positives}
    if options.hard_negatives:
        columns[NEGATIVE_COLUMN] = _hard_negatives(papers, np.asarray(anchor_rows), rng)
    columns[SUBJECT_COLUMN] = subject_names
    return Dataset.from_dict(columns)


def _hard_negatives(papers: pd.DataFrame, anchor_rows: np.ndarray, rng: np.random.Generator) -> list[str]:
    """For each anchor, one of the 5 TF-IDF-nearest papers of *another* subject."""
    texts = paper_texts(papers)
    vectors = TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english").fit_transform(texts)
    subjects = papers["primary_subject"].to_numpy()
    position = {row: i for i, row in enumerate(papers.index)}
    unique_rows = np.unique(anchor_rows)
    nearest: dict[int, np.ndarray] = {}
    for start in range(0, len(unique_rows), 512):
        chunk = unique_rows[start : start + 512]
        positions = np.array([position[r] for r in chunk])
        scores = (vectors[positions] @ vectors.T).toarray()
        scores[subjects[positions][:, None] == subjects[None, :]] = -1.0
        top = np.argpartition(-scores, 5, axis=1)[:, :5]
        nearest.update(zip(chunk.tolist(), top, strict=True))
    return [texts[rng.choice(nearest[int(r)])] for r in anchor_rows]
