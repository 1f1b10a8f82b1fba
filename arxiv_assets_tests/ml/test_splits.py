"""make_splits on real papers: splits never move as months are added; drops, caps and fractions;
unseen subjects and new months that training never touches."""

from dataclasses import replace

import pandas as pd
import pytest

from arxiv_assets.ml.splits import (
    SPLITS,
    TRAINING_SPLITS,
    SplitSettings,
    id_fraction,
    is_unseen_subject,
    make_splits,
    papers_in,
    split_counts,
    split_of,
)

# Plain id-hash splits: no probe sample, no unseen subjects, no new months unless a test asks for them.
SETTINGS = SplitSettings(min_papers_per_subject=40, max_papers_per_subject=120, eval_fraction=0.1, test_fraction=0.15,
                         probe_papers_per_subject=None, unseen_subject_fraction=0.0, unseen_papers_per_subject=None,
                         new_months=0)


def months(papers: pd.DataFrame, first: str, last: str) -> pd.DataFrame:
    """Papers published in the months ``first..last`` (YYYY-MM, inclusive)."""
    month = papers["published"].str[:7]
    return papers[(month >= first) & (month <= last)].reset_index(drop=True)


def test_adding_months_never_moves_a_paper_between_splits(sample_papers):
    before = make_splits(months(sample_papers, "2025-03", "2025-08"), SETTINGS).papers
    after = make_splits(months(sample_papers, "2025-03", "2026-02"), SETTINGS).papers
    both = before.merge(after, on="id", suffixes=("_before", "_after"))
    assert len(both) > 500  # the comparison covers many papers...
    # ...and none changed split, but for the papers of a rare subject that reached the minimum: they take their
    # id-hash split (the only move, as for a new month's papers)
    grew = (both["split_before"] == "rare") & (both["split_after"] != "rare")
    assert grew.any()
    assert (both.loc[grew, "split_after"] == both.loc[grew, "id"].map(
        lambda i: split_of(i, 0.1, 0.15, "arxiv-embeddings"))).all()
    assert (both.loc[~grew, "split_before"] == both.loc[~grew, "split_after"]).all()
    was_test = set(before.loc[before["split"] == "test", "id"])
    assert was_test.isdisjoint(after.loc[after["split"] == "train", "id"])
    assert was_test.isdisjoint(after.loc[after["split"] == "eval", "id"])


def test_a_papers_split_depends_only_on_its_id(sample_papers):
    papers = months(sample_papers, "2025-06", "2025-06")
    full = make_splits(papers, SETTINGS).papers.set_index("id")["split"]
    shuffled = make_splits(papers.sample(frac=1.0, random_state=3), SETTINGS).papers.set_index("id")["split"]
    assert full.sort_index().equals(shuffled.sort_index())
    for arxiv_id in full.index[:50]:
        assert full[arxiv_id] == split_of(arxiv_id, 0.1, 0.15, "arxiv-embeddings")


def test_small_subjects_are_the_rare_slice_never_trained_on_and_the_smallest_dropped(sample_papers):
    papers = months(sample_papers, "2025-03", "2025-12")
    counts = papers["primary_subject"].value_counts()
    result = make_splits(papers, replace(SETTINGS, unseen_subject_fraction=1 / 3, new_months=1))
    expected_rare = {s: int(n) for s, n in counts[(counts < 40) & (counts >= 10)].items()}
    assert result.rare_subjects == expected_rare and len(expected_rare) > 10
    assert result.dropped_subjects == {s: int(n) for s, n in counts[counts < 10].items()}
    rare = papers_in(result.papers, "rare")
    assert rare["primary_subject"].value_counts().to_dict() == expected_rare  # every paper of them (under the cap)
    assert not result.papers.loc[result.papers["split"] == "rare", "probe"].any()
    others = papers_in(result.papers, *(s for s in SPLITS if s != "rare"))
    assert set(others["primary_subject"]) == set(counts[counts >= 40].index)
    assert set(result.unseen_subjects).isdisjoint(expected_rare)  # unseen subjects are chosen among the larger
    assert (rare["published"].str[:7] == "2025-12").any()  # the held-out month's rare papers are rare, not new
    capped = make_splits(papers, replace(SETTINGS, unseen_papers_per_subject=12)).papers
    assert capped.loc[capped["split"] == "rare", "primary_subject"].value_counts().max() == 12
    with pytest.raises(ValueError, match="min_papers_per_rare_subject must be at least 2"):
        make_splits(papers, replace(SETTINGS, min_papers_per_rare_subject=1))


def test_cap_is_respected_and_reported(sample_papers):
    papers = months(sample_papers, "2025-03", "2025-12")
    counts = papers["primary_subject"].value_counts()
    result = make_splits(papers, SETTINGS)
    per_subject = result.papers["primary_subject"].value_counts()
    assert per_subject.max() == 120
    assert result.capped_subjects == {s: int(n) for s, n in counts[counts > 120].items()}
    for subject, n in per_subject.items():
        assert n == min(120, counts[subject])
    # The cap keeps the same papers whatever order the rows arrive in.
    again = make_splits(papers.iloc[::-1].reset_index(drop=True), SETTINGS)
    assert set(again.papers["id"]) == set(result.papers["id"])


def test_fractions_are_roughly_right_on_the_whole_sample(sample_papers):
    result = make_splits(sample_papers, replace(SETTINGS, min_papers_per_subject=400, max_papers_per_subject=None))
    split = papers_in(result.papers, *TRAINING_SPLITS, "test")
    shares = split["split"].value_counts(normalize=True)
    assert len(split) > 15_000
    assert shares["test"] == pytest.approx(0.15, abs=0.015)
    assert shares["eval"] == pytest.approx(0.10, abs=0.015)
    assert shares["train"] == pytest.approx(0.75, abs=0.015)
    table = split_counts(result.papers)
    assert list(table.columns) == [*SPLITS, "total"]
    assert table["total"].sum() == len(result.papers)
    split_subjects = table["rare"] == 0
    assert (table.loc[split_subjects, ["test", "eval"]] > 0).all().all()  # every split subject can be evaluated
    assert (table.loc[~split_subjects, "rare"] == table.loc[~split_subjects, "total"]).all()  # a rare one is all rare


def test_columns_and_order(sample_papers):
    papers = months(sample_papers, "2025-06", "2025-06")
    result = make_splits(papers, SETTINGS)
    assert list(result.papers.columns) == [*papers.columns, "split", "probe"]
    # no unseen subjects, no new months asked for; one month leaves many subjects rare
    assert set(result.papers["split"]) == {"train", "eval", "test", "rare"}
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
        make_splits(sample_papers.head(50), replace(SETTINGS, min_papers_per_subject=1, eval_fraction=eval_fraction,
                                                    test_fraction=test_fraction))


def test_probe_papers_are_a_stable_per_subject_sample_of_train(sample_papers):
    papers = months(sample_papers, "2025-03", "2025-12")
    result = make_splits(papers, replace(SETTINGS, probe_papers_per_subject=10)).papers
    probe = result[result["probe"]]
    assert (probe["split"] == "train").all()
    train_per_subject = result[result["split"] == "train"]["primary_subject"].value_counts()
    expected = train_per_subject.clip(upper=10).sort_index()
    assert probe["primary_subject"].value_counts().sort_index().equals(expected)
    # Chosen by id hash: the same papers whatever order the rows arrive in.
    again = make_splits(papers.sample(frac=1.0, random_state=5), replace(SETTINGS, probe_papers_per_subject=10)).papers
    assert set(again.loc[again["probe"], "id"]) == set(probe["id"])
    # None: every train paper is a probe paper.
    everything = make_splits(papers, SETTINGS).papers
    assert everything["probe"].equals(everything["split"] == "train")


SLICE_SETTINGS = replace(SETTINGS, unseen_subject_fraction=1 / 3, new_months=1)


def test_unseen_subjects_never_reach_training_and_are_chosen_by_name_alone(sample_papers):
    result = make_splits(sample_papers, SLICE_SETTINGS)
    papers = result.papers
    unseen = set(papers.loc[papers["split"] == "unseen", "primary_subject"])
    assert unseen == set(result.unseen_subjects) and len(unseen) >= 5
    assert unseen.isdisjoint(papers_in(papers, *TRAINING_SPLITS, "test", "new")["primary_subject"])
    assert not papers.loc[papers["split"] == "unseen", "probe"].any()  # nor the linear probe
    kept = papers.loc[papers["split"] != "rare", "primary_subject"].unique()  # the subjects large enough to split
    assert unseen == {s for s in kept if is_unseen_subject(s, 1 / 3, "arxiv-embeddings")}
    share = len(unseen) / len(kept)
    assert 0.15 < share < 0.55  # "about a third", as a hash of the names gives it


def test_adding_a_month_moves_no_paper_between_seen_and_unseen_and_nothing_into_training(sample_papers):
    before = make_splits(months(sample_papers, "2025-03", "2025-12"), SLICE_SETTINGS)
    after = make_splits(months(sample_papers, "2025-03", "2026-01"), SLICE_SETTINGS)
    both = before.papers.merge(after.papers, on="id", suffixes=("_before", "_after"))
    assert len(both) > 2000  # the cap (120 per subject) keeps most papers of both runs
    was_unseen = both["split_before"] == "unseen"
    assert was_unseen.any() and (both.loc[was_unseen, "split_after"] == "unseen").all()
    was_seen = both["split_before"].isin(["train", "eval", "test", "new"])  # (a rare subject may grow into unseen)
    assert (both.loc[was_seen, "split_after"] != "unseen").all()
    # Judging papers never become training papers; the held-out month takes its id-hash split next month.
    judged_before = both["split_before"].isin(["test", "unseen"])  # (rare: see the test above)
    assert not both.loc[judged_before, "split_after"].isin(TRAINING_SPLITS).any()
    assert before.new_months == ["2025-12"] and after.new_months == ["2026-01"]
    moved = both[both["split_before"] == "new"]
    assert len(moved) > 100
    assert (moved["split_after"] == moved["id"].map(lambda i: split_of(i, 0.1, 0.15, "arxiv-embeddings"))).all()


def test_new_months_hold_the_newest_papers_of_seen_subjects(sample_papers):
    papers = months(sample_papers, "2025-03", "2026-06")
    result = make_splits(papers, replace(SLICE_SETTINGS, new_months=2))
    new = papers_in(result.papers, "new")
    assert set(new["published"].str[:7]) == {"2026-05", "2026-06"} == set(result.new_months)
    rest = papers_in(result.papers, *TRAINING_SPLITS, "test")
    assert (rest["published"].str[:7] < "2026-05").all()
    assert set(new["primary_subject"]).isdisjoint(result.unseen_subjects)


def test_unseen_subjects_keep_a_bounded_stable_sample(sample_papers):
    settings = replace(SLICE_SETTINGS, unseen_papers_per_subject=25)
    result = make_splits(sample_papers, settings).papers
    per_subject = result[result["split"] == "unseen"]["primary_subject"].value_counts()
    assert (per_subject <= 25).all() and (per_subject == 25).any()
    again = make_splits(sample_papers.sample(frac=1.0, random_state=2), settings).papers
    assert set(again.loc[again["split"] == "unseen", "id"]) == set(result.loc[result["split"] == "unseen", "id"])


def test_papers_in_refuses_an_unknown_split(sample_papers):
    papers = make_splits(months(sample_papers, "2025-06", "2025-06"), SETTINGS).papers
    assert len(papers_in(papers, "train", "eval")) == papers["split"].isin(["train", "eval"]).sum()
    with pytest.raises(ValueError, match="unknown split"):
        papers_in(papers, "validation")
    assert SPLITS == ("train", "eval", "test", "new", "unseen", "rare")


def test_the_only_months_loaded_are_never_all_held_out(sample_papers):
    one = make_splits(months(sample_papers, "2025-06", "2025-06"), replace(SLICE_SETTINGS, new_months=2))
    assert one.new_months == [] and "new" not in set(one.papers["split"])
    two = make_splits(months(sample_papers, "2025-06", "2025-07"), replace(SLICE_SETTINGS, new_months=2))
    assert two.new_months == ["2025-07"]
