"""make_pairs on real papers: layout, subject balance, same-subject positives, hard negatives, determinism."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset
from sklearn.feature_extraction.text import TfidfVectorizer

from arxiv_assets.ml.pairs import PairSettings, make_pairs
from arxiv_assets.ml.taxonomy import subject_description
from arxiv_assets.ml.text import paper_text

# Deliberately imbalanced: 150 / 60 / 25 / 8 papers, so uniform sampling over papers would not be balanced.
SUBJECT_SIZES = {"cs.CV": 150, "astro-ph.GA": 60, "cs.CL": 25, "gr-qc": 8}
# Only paper -> paper pairs unless a test asks for the other kinds.
PAPER_PAIRS = PairSettings(title_abstract_fraction=0.0, subject_fraction=0.0)


@pytest.fixture(scope="module")
def papers(sample_papers: pd.DataFrame) -> pd.DataFrame:
    parts = [sample_papers[sample_papers["primary_subject"] == s].head(n) for s, n in SUBJECT_SIZES.items()]
    # A non-default index, as a filtered frame has: make_pairs must use labels, not positions.
    return pd.concat(parts).sample(frac=1.0, random_state=0)


def subject_by_text(papers: pd.DataFrame) -> dict[str, str]:
    return dict(zip((paper_text(t, a) for t, a in zip(papers["title"], papers["abstract"], strict=True)),
                    papers["primary_subject"], strict=True))


def test_layout_and_subject_balance(papers):
    pairs = make_pairs(papers, 2000, replace(PAPER_PAIRS, seed=1))
    assert isinstance(pairs, Dataset)
    assert pairs.column_names == ["anchor", "positive", "primary_subject", "kind"]
    assert len(pairs) == 2000
    counts = pd.Series(pairs["primary_subject"]).value_counts()
    assert set(counts.index) == set(SUBJECT_SIZES)
    # 500 expected per subject; a binomial(2000, 1/4) stays within +-15% far beyond 3 sigma (~58).
    assert ((counts - 500).abs() < 75).all(), counts.to_dict()


def test_anchor_and_positive_are_two_papers_listed_in_the_pair_subject(papers):
    pairs = make_pairs(papers, 400, replace(PAPER_PAIRS, seed=2))
    subjects = subject_by_text(papers)
    categories = dict(zip(subject_by_text(papers), papers["categories"], strict=True))
    assert set(pairs["kind"]) == {"paper"}
    for row in pairs:
        assert subjects[row["anchor"]] == row["primary_subject"]
        # The positive lists the anchor's subject, as primary subject or as a cross-list.
        assert row["primary_subject"] in {subjects[row["positive"]], *categories[row["positive"]]}
        assert row["anchor"] != row["positive"]


def test_anchors_use_every_paper_of_a_subject_before_any_twice(papers):
    pairs = make_pairs(papers, 600, replace(PAPER_PAIRS, title_abstract_fraction=1.0, seed=9))
    titles = pd.Series(pairs["anchor"])
    per_subject = pd.Series(pairs["primary_subject"]).value_counts()
    for subject, size in SUBJECT_SIZES.items():  # ~150 draws per subject
        drawn = titles[pd.Series(pairs["primary_subject"]) == subject].value_counts()
        if per_subject[subject] <= size:
            assert drawn.max() == 1, subject
        else:
            assert drawn.max() - drawn.min() <= 1, subject


def test_title_abstract_fraction_is_honoured(papers):
    pairs = make_pairs(papers, 1000, replace(PAPER_PAIRS, title_abstract_fraction=0.3, seed=3))
    abstract_of_title = dict(zip(papers["title"], papers["abstract"], strict=True))
    subject_of_title = dict(zip(papers["title"], papers["primary_subject"], strict=True))
    own = [row for row in pairs if row["anchor"] in abstract_of_title]
    assert len(own) / len(pairs) == pytest.approx(0.3, abs=0.05)
    assert sum(k == "title_abstract" for k in pairs["kind"]) == len(own)
    for row in own:  # a title and its own abstract
        assert row["positive"] == abstract_of_title[row["anchor"]]
        assert row["primary_subject"] == subject_of_title[row["anchor"]]
    none = make_pairs(papers, 300, replace(PAPER_PAIRS, title_abstract_fraction=0.0, seed=3))
    assert not any(a in abstract_of_title for a in none["anchor"])
    every = make_pairs(papers, 300, replace(PAPER_PAIRS, title_abstract_fraction=1.0, seed=3))
    assert all(a in abstract_of_title for a in every["anchor"])


def test_subject_pairs_put_a_paper_beside_its_subject_in_words(papers):
    pairs = make_pairs(papers, 1000, replace(PAPER_PAIRS, title_abstract_fraction=0.2, subject_fraction=0.5, seed=6))
    subjects = subject_by_text(papers)
    named = [row for row in pairs if row["positive"] == subject_description(row["primary_subject"])]
    assert len(named) / len(pairs) == pytest.approx(0.5, abs=0.05)
    assert all(row["kind"] == "subject" for row in named)
    for row in named:  # the anchor is a whole paper of that subject
        assert subjects[row["anchor"]] == row["primary_subject"]
    assert {row["positive"] for row in named} == {
        "Computer Vision and Pattern Recognition (cs.CV)", "Astrophysics of Galaxies (astro-ph.GA)",
        "Computation and Language (cs.CL)", "General Relativity and Quantum Cosmology (gr-qc)"}
    titles = set(papers["title"])
    assert sum(row["anchor"] in titles for row in pairs) / len(pairs) == pytest.approx(0.2, abs=0.05)
    every = make_pairs(papers, 200, replace(PAPER_PAIRS, subject_fraction=1.0, seed=6))
    assert all(row["positive"] == subject_description(row["primary_subject"]) for row in every)


def test_unknown_subject_codes_are_described_by_the_code():
    assert subject_description("cs.XX") == "cs.XX"
    assert subject_description("hep-ph") == "High Energy Physics - Phenomenology (hep-ph)"


def test_hard_negatives_come_from_another_subject(papers):
    pairs = make_pairs(papers, 300, replace(PAPER_PAIRS, hard_negatives=True, seed=4))
    assert pairs.column_names == ["anchor", "positive", "negative", "primary_subject", "kind"]
    subjects = subject_by_text(papers)
    negative_subjects = [subjects[n] for n in pairs["negative"]]
    assert all(ns != s for ns, s in zip(negative_subjects, pairs["primary_subject"], strict=True))
    assert len(set(pairs["negative"])) > 50  # not one paper over and over
    # "Hard": lexically closer to the anchor than a random paper of another subject.
    texts = list(subject_by_text(papers))
    vectorizer = TfidfVectorizer(stop_words="english").fit(texts)
    anchors = vectorizer.transform(pairs["anchor"])
    rng = np.random.default_rng(0)
    random_others = [rng.choice([t for t in texts if subjects[t] != s]) for s in pairs["primary_subject"]]
    hard = anchors.multiply(vectorizer.transform(pairs["negative"])).sum(axis=1).mean()
    random = anchors.multiply(vectorizer.transform(random_others)).sum(axis=1).mean()
    assert hard > 2 * random


def test_same_seed_same_pairs_other_seed_other_pairs(papers):
    settings = replace(PAPER_PAIRS, title_abstract_fraction=0.2, hard_negatives=True, seed=7)
    first, second = make_pairs(papers, 200, settings), make_pairs(papers, 200, settings)
    assert first.to_dict() == second.to_dict()
    other = make_pairs(papers, 200, replace(settings, seed=8))
    assert other.to_dict() != first.to_dict()


def test_subjects_with_a_single_paper_are_never_paired(papers, sample_papers):
    lone = sample_papers[sample_papers["primary_subject"] == "math-ph"]
    assert len(lone) == 1
    pairs = make_pairs(pd.concat([papers, lone]), 500, replace(PAPER_PAIRS, seed=5))
    assert "math-ph" not in set(pairs["primary_subject"])


def test_bad_requests_are_refused(papers):
    with pytest.raises(ValueError, match="n_pairs must be positive"):
        make_pairs(papers, 0, PAPER_PAIRS)
    with pytest.raises(ValueError, match="no subject has two papers"):
        make_pairs(papers.drop_duplicates("primary_subject"), 10, PAPER_PAIRS)
    with pytest.raises(ValueError, match=r"title_abstract_fraction \+ subject_fraction"):
        make_pairs(papers, 10, replace(PAPER_PAIRS, title_abstract_fraction=0.5, subject_fraction=0.6))
