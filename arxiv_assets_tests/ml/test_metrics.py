"""Every metric on tiny examples whose values are worked out by hand below."""

from math import log2

import numpy as np
import pytest
from scipy import sparse

from arxiv_assets.ml.metrics import (
    classification_metrics,
    cross_validated_probe,
    known_item_retrieval,
    linear_probe,
    paired_bootstrap,
    retrieval_metrics,
    subject_retrieval,
    top_k_neighbours,
)

METRICS = ["P@1", "P@5", "P@10", "R@1", "R@10", "MRR@10", "NDCG@10", "MAP@100"]

# Corpus of 12 items: 0-3 are "x", 4-5 "y", 6-11 "z".
CORPUS_KEYS = ["x"] * 4 + ["y"] * 2 + ["z"] * 6
RANKINGS = np.array([
    [0, 6, 1, 7, 8, 2, 9, 10, 11, 4, 5, 3],  # query "x": relevant at ranks 1, 3, 6 and 12
    [6, 4, 7, 8, 9, 10, 11, 0, 1, 2, 3, 5],  # query "y": relevant at ranks 2 and 12
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],  # query "z": relevant at ranks 7 to 12
])
QUERY_KEYS = ["x", "y", "z"]
N_RELEVANT = np.array([4, 2, 6])


def dcg(ranks):
    return sum(1 / log2(r + 1) for r in ranks)


# Worked by hand from the definitions: P@k = hits in top k / k; R@k = hits in top k / relevant;
# MRR@10 = 1 / first hit rank (0 if none in 10); NDCG@10 = DCG(hit ranks <= 10) / DCG(1..min(relevant, 10));
# MAP@100 = sum of precision at each hit rank / min(relevant, 100).
EXPECTED = {
    "x": {"P@1": 1, "P@5": 2 / 5, "P@10": 3 / 10, "R@1": 1 / 4, "R@10": 3 / 4, "MRR@10": 1,
          "NDCG@10": dcg([1, 3, 6]) / dcg([1, 2, 3, 4]),
          "MAP@100": (1 / 1 + 2 / 3 + 3 / 6 + 4 / 12) / 4},
    "y": {"P@1": 0, "P@5": 1 / 5, "P@10": 1 / 10, "R@1": 0, "R@10": 1 / 2, "MRR@10": 1 / 2,
          "NDCG@10": dcg([2]) / dcg([1, 2]),
          "MAP@100": (1 / 2 + 2 / 12) / 2},
    "z": {"P@1": 0, "P@5": 0, "P@10": 4 / 10, "R@1": 0, "R@10": 4 / 6, "MRR@10": 1 / 7,
          "NDCG@10": dcg([7, 8, 9, 10]) / dcg([1, 2, 3, 4, 5, 6]),
          "MAP@100": (1 / 7 + 2 / 8 + 3 / 9 + 4 / 10 + 5 / 11 + 6 / 12) / 6},
}


def test_every_metric_matches_the_hand_computation():
    report = retrieval_metrics(RANKINGS, QUERY_KEYS, CORPUS_KEYS, N_RELEVANT, groups=["g1", "g1", "g2"])
    assert list(report.per_query.columns) == ["group", *METRICS]
    for i, key in enumerate(QUERY_KEYS):
        for metric in METRICS:
            assert report.per_query.loc[i, metric] == pytest.approx(EXPECTED[key][metric]), (key, metric)
    for metric in METRICS:
        x, y, z = (EXPECTED[k][metric] for k in QUERY_KEYS)
        assert report.micro[metric] == pytest.approx((x + y + z) / 3), metric
        assert report.macro[metric] == pytest.approx(((x + y) / 2 + z) / 2), metric
    assert report.per_group["queries"].to_dict() == {"g1": 2, "g2": 1}
    assert report.summary() == {"micro": report.micro, "macro": report.macro}


def test_micro_and_macro_differ_on_imbalanced_groups():
    # Three "big" queries each find their item first; the one "small" query finds it third.
    corpus_keys = ["a", "b", "c", "d"]
    neighbours = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [0, 1, 3]])
    report = retrieval_metrics(neighbours, ["a", "b", "c", "d"], corpus_keys, np.ones(4),
                               groups=["big", "big", "big", "small"])
    assert report.micro["P@1"] == pytest.approx(3 / 4)
    assert report.macro["P@1"] == pytest.approx((1 + 0) / 2)
    assert report.micro["MRR@10"] == pytest.approx((1 + 1 + 1 + 1 / 3) / 4)
    assert report.macro["MRR@10"] == pytest.approx((1 + 1 / 3) / 2)
    assert report.micro["R@1"] != report.macro["R@1"]


def test_a_query_with_nothing_to_find_is_refused():
    with pytest.raises(ValueError, match="at least one relevant"):
        retrieval_metrics(RANKINGS, QUERY_KEYS, CORPUS_KEYS, np.array([4, 0, 6]), ["g"] * 3)


def test_top_k_neighbours_excludes_self_and_orders_by_score():
    # Unit vectors with no tied scores, so the order is fully determined.
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-0.8, -0.6]], dtype=np.float32)
    neighbours = top_k_neighbours(vectors, vectors, k=3, exclude=np.arange(5))
    assert neighbours.tolist() == [[1, 2, 3], [2, 0, 3], [1, 3, 0], [2, 1, 0], [3, 0, 2]]
    with_self = top_k_neighbours(vectors, vectors, k=2)
    assert with_self[:, 0].tolist() == [0, 1, 2, 3, 4]
    # k larger than the corpus is clipped; -1 means "exclude nothing" for that query; small chunks agree.
    clipped = top_k_neighbours(vectors, vectors, k=50, exclude=np.array([0, -1, 2, 3, 4]), chunk_size=2)
    assert clipped.shape == (5, 4)
    assert clipped[1].tolist() == [1, 2, 0, 3]
    assert 0 not in clipped[0]


def test_top_k_neighbours_on_sparse_vectors_matches_dense():
    dense = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8], [0.28, 0.0, 0.96]])
    from_sparse = top_k_neighbours(sparse.csr_matrix(dense), sparse.csr_matrix(dense), k=2, exclude=np.arange(4))
    assert from_sparse.tolist() == [[1, 3], [0, 2], [3, 1], [2, 0]]
    assert (from_sparse == top_k_neighbours(dense, dense, k=2, exclude=np.arange(4))).all()
    with pytest.raises(ValueError, match="no neighbours"):
        top_k_neighbours(dense[:1], dense[:1], k=3, exclude=np.array([0]))


def test_subject_retrieval_on_tiny_vectors():
    # Three "a" papers near (1, 0), two "b" near (0, 1), and a lone "c" that no query can be scored on.
    vectors = np.array([[1.0, 0.0], [0.99, 0.14], [0.95, 0.31], [0.14, 0.99], [0.0, 1.0], [0.71, 0.71]])
    subjects = ["a", "a", "a", "b", "b", "c"]
    report = subject_retrieval(vectors, subjects)
    assert report.per_query["group"].tolist() == ["a", "a", "a", "b", "b"]
    # 5 neighbours per query; "a" queries have 2 relevant (both ranked first), "b" queries 1.
    assert report.per_query["P@1"].tolist() == [1, 1, 1, 1, 1]
    assert report.per_query["P@5"].tolist() == pytest.approx([2 / 5] * 3 + [1 / 5] * 2)
    assert report.per_query["P@10"].tolist() == pytest.approx([2 / 10] * 3 + [1 / 10] * 2)
    assert report.per_query["R@1"].tolist() == pytest.approx([1 / 2] * 3 + [1] * 2)
    assert report.micro["MAP@100"] == pytest.approx(1.0)
    assert report.micro["NDCG@10"] == pytest.approx(1.0)
    assert report.micro["P@5"] == pytest.approx((3 * 2 / 5 + 2 * 1 / 5) / 5)
    assert report.macro["P@5"] == pytest.approx((2 / 5 + 1 / 5) / 2)


def test_known_item_retrieval_on_tiny_vectors():
    titles = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # Title 2 is closer to abstract 1 (0.8) than to its own abstract (0.68): it finds its own second.
    abstracts = np.array([[1.0, 0.0], [0.0, 1.0], [0.995, 0.0995]])
    report = known_item_retrieval(titles, abstracts, ids=["p0", "p1", "p2"], subjects=["s", "s", "t"])
    assert report.per_query["P@1"].tolist() == [1, 1, 0]
    assert report.per_query["MRR@10"].tolist() == pytest.approx([1, 1, 1 / 2])
    assert report.per_query["R@10"].tolist() == [1, 1, 1]
    assert report.micro["P@1"] == pytest.approx(2 / 3)
    assert report.macro["P@1"] == pytest.approx((1 + 0) / 2)


def test_classification_metrics_by_hand():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "b", "a"]
    report = classification_metrics(y_true, y_pred)
    assert report.accuracy == pytest.approx(4 / 6)
    # a: precision 2/3, recall 2/3 -> F1 2/3; b: precision 2/3, recall 1 -> F1 0.8; c: never predicted -> 0.
    assert report.per_class.loc["a", "f1-score"] == pytest.approx(2 / 3)
    assert report.per_class.loc["b", "precision"] == pytest.approx(2 / 3)
    assert report.per_class.loc["b", "recall"] == pytest.approx(1.0)
    assert report.per_class.loc["b", "f1-score"] == pytest.approx(0.8)
    assert report.per_class.loc["c", "f1-score"] == 0
    assert report.macro_f1 == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert report.confusion.loc["a"].tolist() == [2, 1, 0]
    assert report.confusion.loc["c"].tolist() == [1, 0, 0]
    assert report.summary() == {"accuracy": report.accuracy, "macro_f1": report.macro_f1}
    assert report.correct.tolist() == [True, True, False, True, True, False]


def test_paired_bootstrap_tells_a_shift_from_noise():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 2, size=2000).astype(float)  # per-query hits of one system
    # the same queries, 60 of them now missed: 3 points lower, on every resample
    worse = reference.copy()
    worse[np.flatnonzero(reference)[:60]] = 0.0
    paired = paired_bootstrap(worse, reference)
    assert paired.difference == pytest.approx(-0.03)
    assert paired.low <= paired.difference <= paired.high < 0 and paired.verdict == "below"
    # 10 queries gained and 10 others lost: no difference the sample can vouch for
    swapped = reference.copy()
    swapped[np.flatnonzero(reference == 0)[:10]] = 1.0
    swapped[np.flatnonzero(reference == 1)[:10]] = 0.0
    even = paired_bootstrap(swapped, reference)
    assert even.difference == 0 and even.low < 0 < even.high and even.verdict == "within noise"
    assert paired_bootstrap(reference, reference).verdict == "within noise"  # identical: an interval of 0
    assert paired_bootstrap(reference, worse).verdict == "above"
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap(reference, reference[:-1])


def test_linear_probe_chooses_c_on_its_training_papers_alone():
    # Two separable classes, the second one smaller: at C=1e-4 the weights shrink to ~0 and the
    # intercept predicts the larger class everywhere (macro-F1 ~0.4 in every fold), at C=100 the
    # folds are classified almost perfectly. Test labels flipped or not, C=100 must be chosen.
    rng = np.random.default_rng(0)
    centers = np.array([[1.0, 0.0], [0.0, 1.0]])
    labels = np.array(["a"] * 60 + ["b"] * 20)
    features = centers[(labels == "b").astype(int)] + rng.normal(0, 0.2, size=(80, 2))
    test_features = centers[[0, 1] * 10] + rng.normal(0, 0.2, size=(20, 2))
    flipped = ["b", "a"] * 10
    report = linear_probe(features, labels, test_features, flipped, cs=(1e-4, 100.0))
    again = linear_probe(features, labels, test_features, ["a", "b"] * 10, cs=(1e-4, 100.0))
    assert report.regularization_c == again.regularization_c == 100.0
    assert report.summary()["C"] == 100.0
    fixed = linear_probe(features, labels, test_features, flipped, cs=(3.0,))
    assert fixed.regularization_c == 3.0
    assert again.accuracy > 0.8 and report.accuracy < 0.2


def test_cross_validated_probe_predicts_each_paper_with_a_probe_that_never_saw_it():
    # Each paper has a feature of its own and a random label: a probe that saw a paper predicts it
    # perfectly, one that did not can only guess. Pooled out-of-fold predictions must look like guessing.
    rng = np.random.default_rng(1)
    labels = np.array(["a", "b"] * 40)
    rng.shuffle(labels)
    features = np.eye(80) * 5.0
    memorized = linear_probe(features, labels, features, labels, cs=(100.0,))
    assert memorized.accuracy == 1.0
    report = cross_validated_probe(features, labels, cs=(100.0,))
    assert report.per_class["support"].sum() == 80  # every paper predicted exactly once
    assert report.accuracy < 0.7
    with pytest.raises(ValueError, match="at least two papers of every subject"):
        cross_validated_probe(features[:3], ["a", "a", "b"])
