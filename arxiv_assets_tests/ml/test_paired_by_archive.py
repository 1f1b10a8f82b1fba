"""Paired comparisons per group of papers (``paired_differences(group_of=...)``, ``paired_models --by-archive``): each
paper's score is counted under its own subject's group, the groups partition the slice, and the whole slice is
compared as before."""

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from arxiv_assets.ml.evaluation import (
    TRAINED_ARCHIVES,
    UNTRAINED_ARCHIVES,
    ModelEvaluation,
    archive_trained_on,
    evaluate_encoder,
    paired_differences,
    trained_archives,
)
from arxiv_assets.ml.splits import JUDGING_SPLITS, papers_in
from arxiv_assets.ml.taxonomy import archive_of
from arxiv_assets.ml.text import paper_texts
from benchmarks.paired_models import OFF_TRAINING_SLICES, archive_tables


def evaluation(splits: pd.DataFrame, **vectorizer) -> ModelEvaluation:
    """A real encoder (TF-IDF, settings varied to make two different systems) scored by the pipeline's evaluation
    (the probe at one C: its choice is not what is tested here)."""
    texts = [*paper_texts(splits), *splits["title"], *splits["abstract"]]
    return evaluate_encoder(TfidfVectorizer(**vectorizer).fit(texts).transform, splits, probe_cs=(1.0,))


@pytest.fixture(scope="module")
def two_systems(every_slice_splits: pd.DataFrame) -> tuple[ModelEvaluation, ModelEvaluation]:
    return (evaluation(every_slice_splits, sublinear_tf=True),
            evaluation(every_slice_splits, binary=True))


def test_archive_of_a_subject() -> None:
    assert [archive_of(s) for s in ("astro-ph.GA", "cs.CV", "hep-th", "physics.plasm-ph")] == [
        "astro-ph", "cs", "hep-th", "physics"]


def test_each_score_is_paired_with_its_papers_subject(every_slice_splits, two_systems) -> None:
    judged = every_slice_splits[every_slice_splits["split"].isin(JUDGING_SPLITS)].reset_index(drop=True)
    for name in ("test", "unseen", "rare"):
        in_slice = judged.loc[judged["split"] == name, "primary_subject"].tolist()
        evaluated = two_systems[0].slices[name]
        subjects, scores = evaluated.per_query_subjects(), evaluated.per_query()
        assert set(subjects) == set(scores)
        assert all(len(subjects[figure]) == len(scores[figure]) for figure in scores)
        assert subjects["LR accuracy"].tolist() == in_slice  # the probe's papers, in the slice's order
        assert subjects["known-item R@1"].tolist() == in_slice
        assert sorted(subjects["P@10"]) == sorted(in_slice)  # every paper here has a subject-mate to find
    assert set(two_systems[0].slices["mixed"].per_query_subjects()) == {"P@10"}


def test_groups_partition_each_slice_and_pair_scores_within_them(two_systems) -> None:
    candidate, reference = two_systems
    whole = paired_differences(candidate, reference)
    grouped = paired_differences(candidate, reference, group_of=archive_of)
    assert list(whole.columns) == ["slice", "figure", "points", "low", "high", "verdict"]
    overall = grouped[grouped["group"] == "all"].drop(columns=["group", "papers"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(overall, whole)  # the whole slice, as without groups
    for (name, figure), rows in grouped.groupby(["slice", "figure"]):
        groups = rows[rows["group"] != "all"]
        assert groups["papers"].sum() == rows.loc[rows["group"] == "all", "papers"].item()
        subjects = np.array([archive_of(s) for s in candidate.slices[name].per_query_subjects()[figure]])
        difference = candidate.slices[name].per_query()[figure] - reference.slices[name].per_query()[figure]
        for group, points in zip(groups["group"], groups["points"], strict=True):
            assert points == pytest.approx(100 * difference[subjects == group].mean())
    unseen_archives = set(grouped.loc[(grouped["slice"] == "unseen") & (grouped["group"] != "all"), "group"])
    assert unseen_archives == {"cs", "astro-ph", "hep-ph"}  # cs.CL, astro-ph.HE, hep-ph (conftest)


def test_archive_tables_pool_the_archives_the_training_never_read(every_slice_splits, two_systems) -> None:
    candidate, reference = ({"splits": system} for system in two_systems)
    trained = trained_archives(every_slice_splits)
    assert trained == {archive_of(s) for s in papers_in(every_slice_splits, "train")["primary_subject"]}
    assert "hep-ph" not in trained and {"cs", "astro-ph"} <= trained
    group_of = archive_trained_on(every_slice_splits)
    assert [group_of(s) for s in ("cs.HC", "astro-ph.SR", "hep-ph")] == [TRAINED_ARCHIVES] * 2 + [UNTRAINED_ARCHIVES]
    table = archive_tables(candidate, reference, every_slice_splits)
    assert set(table["slice"]) <= set(OFF_TRAINING_SLICES) and {"unseen", "rare"} <= set(table["slice"])
    unseen = table[table["slice"] == "unseen"].set_index("group")
    assert unseen.loc[UNTRAINED_ARCHIVES, "papers"] == unseen.loc["hep-ph", "papers"]
    assert unseen.loc[TRAINED_ARCHIVES, "papers"] == unseen.loc["cs", "papers"] + unseen.loc["astro-ph", "papers"]
    assert unseen.loc["all", "papers"] == unseen.loc[TRAINED_ARCHIVES, "papers"] + unseen.loc[UNTRAINED_ARCHIVES,
                                                                                              "papers"]
    assert unseen.loc["hep-ph", "P@10"].count("[") == 1  # one interval cell per figure
