"""Contrastive pairs in the column layout SentenceTransformerTrainer consumes directly."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict

from arxiv_assets.ml.metrics import top_k_neighbours
from arxiv_assets.ml.settings import described
from arxiv_assets.ml.splits import papers_in
from arxiv_assets.ml.taxonomy import subject_description
from arxiv_assets.ml.text import paper_text, paper_texts
from arxiv_assets.ml.tfidf import fit_tfidf

# Columns, in order: "anchor", "positive" and the optional "negative" are the texts the trainer reads;
# "primary_subject" (the anchor's) rides along for label-aware batching and reports, "kind" says which
# objective a pair serves (title_abstract, subject or paper: multi-dataset training gives each kind its own
# batches). The training code selects the text columns before handing the set to a loss.
NEGATIVE_COLUMN = "negative"
SUBJECT_COLUMN = "primary_subject"
KIND_COLUMN = "kind"
HARD_NEGATIVE_POOL = 5  # a hard negative is drawn from this many lexically nearest papers of other subjects


@dataclass(frozen=True)
class PairSettings:
    """How many pairs ``make_pair_sets`` draws and of which kinds; the defaults are the default profile's."""

    # 6,000 gained 1.7 P@10 in distribution over 3,000 on 2 CPU cores at twice the training time, and the
    # soup's second run on 3,000 of them lost the test probe's gain (benchmarks/RESULTS.md, "Recipes on every
    # slice", "A soup of two runs").
    train_pairs: int = 6000
    eval_pairs: int = 200
    # Three objectives in one run (benchmarks/RESULTS.md, "Recipes on every slice"): a title finds its own
    # abstract (what /search does), a paper finds a paper listed in its subject (the rest of the pairs),
    # and a small share of papers find their subject's name.
    title_abstract_fraction: float = field(
        default=0.4, metadata=described("share of pairs that are a title and its own abstract"))
    subject_fraction: float = field(
        default=0.2, metadata=described("share of pairs that pair a paper with its subject's name"))
    # Off in every profile: in the default soup they put unseen- and rare-subject P@10 below the base at 1.5-1.6x the
    # training (benchmarks/RESULTS.md "Hard negatives in the soup").
    hard_negatives: bool = field(
        default=False, metadata=described("add a lexically close paper of another subject to every pair"))
    seed: int = 0


def make_pair_sets(splits: pd.DataFrame, settings: PairSettings) -> DatasetDict:
    """``train`` pairs from the train split and ``eval`` pairs from the eval split, never from the test,
    new or unseen papers that judge the model."""
    return DatasetDict({split: make_pairs(papers_in(splits, split), n_pairs, settings)
                        for split, n_pairs in (("train", settings.train_pairs), ("eval", settings.eval_pairs))})


def make_pairs(papers: pd.DataFrame, n_pairs: int, settings: PairSettings) -> Dataset:
    """Sample ``n_pairs`` (anchor, positive[, negative], primary_subject, kind) rows, balanced over subjects.

    A subject is drawn uniformly, then two different papers of it; or, for the title/abstract
    share, one paper's title and its own abstract; or, for the subject share, one paper and its
    subject in words ("Astrophysics of Galaxies (astro-ph.GA)"); the rest pair a paper with another
    paper listed in its subject (as primary or cross-list). Uniform subjects is what keeps cs.CV
    (39% of arXiv here) from drowning the small subjects. Anchors are drawn without replacement
    within a subject until it runs out, so a small subject's papers are used evenly.

    Subject pairs cost one paper per pair instead of two, and in a subject-distinct batch (the
    ``mnrl_distinct_subjects`` loss) every other positive is another subject's name, so MNRL becomes
    a softmax over the subjects with the names as class prototypes: the model learns to separate
    subjects directly rather than through one random paper standing in for each.
    """
    if n_pairs <= 0:
        raise ValueError(f"n_pairs must be positive, got {n_pairs}")
    if not 0 <= settings.title_abstract_fraction + settings.subject_fraction <= 1:
        raise ValueError("title_abstract_fraction + subject_fraction must lie in [0, 1], got "
                         f"{settings.title_abstract_fraction} + {settings.subject_fraction}")
    rng = np.random.default_rng(settings.seed)
    by_subject = {s: rows.index.to_numpy() for s, rows in papers.groupby("primary_subject") if len(rows) >= 2}
    if not by_subject:
        raise ValueError("no subject has two papers to pair")
    subjects = sorted(by_subject)
    drawn_subjects = rng.choice(len(subjects), size=n_pairs)
    kind = rng.random(n_pairs)
    title_abstract = kind < settings.title_abstract_fraction
    subject_named = ~title_abstract & (kind < settings.title_abstract_fraction + settings.subject_fraction)
    titles, abstracts = papers["title"], papers["abstract"]
    listed_in = _papers_listed_in(papers)
    queues: dict[str, list[int]] = {s: [] for s in subjects}
    anchors, positives, anchor_rows, subject_names, kinds = [], [], [], [], []
    for s, own, named in zip(drawn_subjects, title_abstract, subject_named, strict=True):
        subject = subjects[s]
        if not queues[subject]:  # every paper of the subject once before any paper twice
            queues[subject].extend(rng.permutation(by_subject[subject]).tolist())
        a = queues[subject].pop()
        if own:
            anchors.append(titles[a])
            positives.append(abstracts[a])
        else:
            anchors.append(paper_text(titles[a], abstracts[a]))
            if named:
                positives.append(subject_description(subject))
            else:
                p = rng.choice(listed_in[subject][listed_in[subject] != a])
                positives.append(paper_text(titles[p], abstracts[p]))
        anchor_rows.append(a)
        subject_names.append(subject)
        kinds.append("title_abstract" if own else "subject" if named else "paper")
    columns: dict[str, list[str]] = {"anchor": anchors, "positive": positives}
    if settings.hard_negatives:
        columns[NEGATIVE_COLUMN] = _hard_negatives(papers, np.asarray(anchor_rows), rng)
    columns[SUBJECT_COLUMN] = subject_names
    columns[KIND_COLUMN] = kinds
    return Dataset.from_dict(columns)


def _papers_listed_in(papers: pd.DataFrame) -> dict[str, np.ndarray]:
    """Subject -> the rows of every paper listing it, as primary subject or as a cross-list."""
    listed: dict[str, list[int]] = {}
    for row, categories, primary in zip(papers.index, papers["categories"], papers["primary_subject"], strict=True):
        for category in {primary, *categories}:
            listed.setdefault(category, []).append(row)
    return {category: np.asarray(rows) for category, rows in listed.items()}


def _hard_negatives(papers: pd.DataFrame, anchor_rows: np.ndarray, rng: np.random.Generator) -> list[str]:
    """For each anchor, one of the ``HARD_NEGATIVE_POOL`` TF-IDF-nearest papers of *another* subject."""
    texts = paper_texts(papers)
    vectors = fit_tfidf(papers).transform(texts)
    subjects = papers["primary_subject"].to_numpy()
    position = {row: i for i, row in enumerate(papers.index)}
    anchors = np.unique(anchor_rows)
    anchor_positions = np.array([position[r] for r in anchors])
    nearest: dict[int, np.ndarray] = {}
    for subject in np.unique(subjects[anchor_positions]):  # each subject's anchors against every other subject
        of_subject = subjects[anchor_positions] == subject
        others = np.flatnonzero(subjects != subject)
        top = top_k_neighbours(vectors[anchor_positions[of_subject]], vectors[others], HARD_NEGATIVE_POOL)
        nearest.update(zip(anchors[of_subject].tolist(), others[top], strict=True))
    return [texts[rng.choice(nearest[int(r)])] for r in anchor_rows]
