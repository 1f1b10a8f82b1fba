"""make_splits on real papers: splits never move as months are added; drops, caps and fractions."""

import pandas as pd
import pytest

from arxiv_assets.ml.splits import SPLITS, id_fraction, make_splits, split_counts, split_of

SETTINGS = {"min_papers_per_subject": 40, "max_papers_per_subject": 120, "eval_fraction": 0.1,
            "test_fraction": 0.15}


def months(papers: pd.DataFrame, first: str, last: str) -> pd.DataFrame:
    """Papers published in the months ``first..last`` (YYYY-MM, inclusive)."""
    month = papers["published"].str[:7]
    return papers[(month >= first) & (month <= last)].reset_index(drop=True)


def test_adding_months_never_moves_a_paper_between_splits(sample_papers):
    before = make_splits(months(sample_papers, "2025-03", "2025-08"), **SETTINGS).papers
    after = make_splits(months(sample_papers, "2025-03", "2026-02"), **SETTINGS).papers
    both = before.merge(after, on="id", suffixes=("_before", "_after"))
    assert len(both) > 500  # the comparison covers many papers...
    assert (both["split_before"] == both["split_after"]).all()  # ...and none changed split
    was_test = set(before.loc[before["split"] == "test", "id"])
    assert was_test.isdisjoint(after.loc[after["split"] == "train", "id"])
    assert was_test.isdisjoint(after.loc[after["split"] == "eval", "id"])


def test_a_papers_split_depends_only_on_its_id(sample_papers):
    papers = months(sample_papers, "2025-06", "2025-06")
    full = make_splits(papers, **SETTINGS).papers.set_index("id")["split"]
    shuffled = make_splits(papers.sample(frac=1.0, random_state=3), **SETTINGS).papers.set_index("id")["split"]
    assert full.sort_index().equals(shuffled.sort_index())
    for arxiv_id in full.index[:50]:
        assert full[arxiv_id] == split_of(arxiv_id, 0.1, 0.15, "arxiv-embeddings")


def test_small_subjects_are_dropped_and_reported(sample_papers):
    papers = months(sample_papers, "2025-03", "2025-12")
    counts = papers["primary_subject"].value_counts()
    result = make_splits(papers, **SETTINGS)
    expected_dropped = {s: int(n) for s, n in counts[counts < 40].items()}
    assert result.dropped_subjects == expected_dropped
    assert len(expected_dropped) > 10
    kept_subjects = set(result.papers["primary_subject"])
    assert kept_subjects == set(counts[counts >= 40].index)
    assert kept_subjects.isdisjoint(expected_dropped)


def test_cap_is_respected_and_reported(sample_papers):
    papers = months(sample_papers, "2025-03", "2025-12")
    counts = papers["primary_subject"].value_counts()
    result = make_splits(papers, **SETTINGS)
    per_subject = result.papers["primary_subject"].value_counts()
    assert per_subject.max() == 120
    assert result.capped_subjects == {s: int(n) for s, n in counts[counts > 120].items()}
    for subject, n in per_subject.items():
        assert n == min(120, counts[subject])
    # The cap keeps the same papers whatever order the rows arrive in.
    again = make_splits(papers.iloc[::-1].reset_index(drop=True), **SETTINGS)
    assert set(again.papers["id"]) == set(result.papers["id"])


def test_fractions_are_roughly_right_on_the_whole_sample(sample_papers):
    result = make_splits(sample_papers, min_papers_per_subject=400, max_papers_per_subject=None,
                         eval_fraction=0.1, test_fraction=0.15)
    shares = result.papers["split"].value_counts(normalize=True)
    assert len(result.papers) > 15_000
    assert shares["test"] == pytest.approx(0.15, abs=0.015)
    assert shares["eval"] == pytest.approx(0.10, abs=0.015)
    assert shares["train"] == pytest.approx(0.75, abs=0.015)
    table = split_counts(result.papers)
    assert list(table.columns) == [*SPLITS, "total"]
    assert table["total"].sum() == len(result.papers)
    assert (table["test"] > 0).all() and (table["eval"] > 0).all()  # every subject can be evaluated


def test_columns_and_order(sample_papers):
    papers = months(sample_papers, "2025-06", "2025-06")
    result = make_splits(papers, **SETTINGS)
    assert list(result.papers.columns) == [*papers.columns, "split", "probe"]
    assert set(result.papers["split"]) == set(SPLITS)
    assert result.papers["id"].is_unique
    assert result.papers.index.tolist() == list(range(len(result.papers)))


def test_id_fraction_is_uniform_and_salted(sample_papers):
    ids = sample_papers["id"].head(5000)
    u = ids.map(lambda i: id_fraction(i, "salt"))
    assert u.between(0, 1, inclusive="left").all()
    assert u.mean() == pytest.approx(0.5, abs=0.02)
    assert (u != ids.map(lambda i: id_fraction(i, "other salt"))).all()


@pytest.mark.parametrize(("eval_fraction", "test_fraction"), [(0.5, 0.5), (0.0, 0.0), (0.7, 0.4)])
def test_impossible_fractions_are_refused(sample_papers, eval_fraction, test_fraction):
    with pytest.raises(ValueError, match="eval_fraction \\+ test_fraction must be in"):
        make_splits(sample_papers.head(50), min_papers_per_subject=1, max_papers_per_subject=None,
                    eval_fraction=eval_fraction, test_fraction=test_fraction)


def test_probe_papers_are_a_stable_per_subject_sample_of_train(sample_papers):
    papers = months(sample_papers, "2025-03", "2025-12")
    result = make_splits(papers, **SETTINGS, probe_papers_per_subject=10).papers
    probe = result[result["probe"]]
    assert (probe["split"] == "train").all()
    train_per_subject = result[result["split"] == "train"]["primary_subject"].value_counts()
    expected = train_per_subject.clip(upper=10).sort_index()
    assert probe["primary_subject"].value_counts().sort_index().equals(expected)
    # Chosen by id hash: the same papers whatever order the rows arrive in.
    again = make_splits(papers.sample(frac=1.0, random_state=5), **SETTINGS, probe_papers_per_subject=10).papers
    assert set(again.loc[again["probe"], "id"]) == set(probe["id"])
    # None: every train paper is a probe paper.
    everything = make_splits(papers, **SETTINGS).papers
    assert everything["probe"].equals(everything["split"] == "train")
