"""The quality gates on real models: a model trained to collapse onto its training subjects' names (the
recipe the gates used to promote) fails the unseen-subject, rare-subject and known-item gates; the untrained
base passes everything it is compared with itself on."""

import math
from pathlib import Path

import pandas as pd
import pytest

from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, load_model
from arxiv_assets.ml.evaluation import GATE_ASSETS, GateSettings, evaluate_model, quality_gates
from arxiv_assets.ml.pairs import PairSettings, make_pair_sets
from arxiv_assets.ml.splits import SplitSettings, make_splits, papers_in
from arxiv_assets.ml.tfidf import evaluate_tfidf
from arxiv_assets.ml.training import TrainSettings, train

SEQ = 64


@pytest.fixture(scope="module")
def splits(sample_papers: pd.DataFrame) -> pd.DataFrame:
    # Subjects of 40-149 papers are the rare slice: 12 of them, 30 papers each, enough to be gated.
    return make_splits(sample_papers, SplitSettings(
        min_papers_per_subject=150, min_papers_per_rare_subject=40, max_papers_per_subject=60, eval_fraction=0.1,
        test_fraction=0.3, probe_papers_per_subject=20, unseen_subject_fraction=1 / 3, unseen_papers_per_subject=30,
        new_months=0)).papers


@pytest.fixture(scope="module")
def headlines(splits: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    # The old default recipe, pushed harder so a few CPU seconds show its effect: every pair a paper and its
    # subject's name, subject-distinct batches (a softmax over the training subjects), a high learning rate.
    settings = TrainSettings(loss="mnrl_distinct_subjects", multi_dataset=False, learning_rate=1e-3, max_steps=40,
                             batch_size=16, max_seq_length_cap=SEQ, train_seq_length=32, warmup_ratio=0.0,
                             report_to_wandb=False, checkpoint_steps=10_000, eval_queries_per_subject=5,
                             interpolate_with_base=False, soup_loss=None)
    pairs = make_pair_sets(splits, PairSettings(train_pairs=640, eval_pairs=32, title_abstract_fraction=0.0,
                                                subject_fraction=1.0))
    collapsed = train(pairs["train"], pairs["eval"], papers_in(splits, "eval"), settings,
                      tmp_path_factory.mktemp("collapsed") / "model", tmp_path_factory.mktemp("work"),
                      data_fingerprint="collapse-test")
    return {"base": evaluate_model(load_model(BUNDLED_BASE_MODEL, max_seq_length=SEQ), splits).headline(),
            "collapsed": evaluate_model(load_model(Path(collapsed.model_dir)), splits).headline(),
            "tfidf": evaluate_tfidf(splits).evaluation.headline()}


def test_a_model_collapsed_onto_subject_names_fails_the_unseen_rare_and_known_item_gates(headlines):
    collapsed, base = headlines["collapsed"], headlines["base"]
    gates = {g.name: g for g in quality_gates(headlines, GateSettings(), candidate="collapsed")}
    assert set(gates) == set(GATE_ASSETS)
    assert not gates["known_item_mrr_not_below_base"].passed
    assert not gates["unseen_subjects_p10_not_below_base"].passed
    assert collapsed["rare/papers"] >= GateSettings().min_rare_papers  # the rare gate judged, not skipped
    assert not gates["rare_subjects_p10_not_below_base"].passed
    assert collapsed["unseen/P@10"] < base["unseen/P@10"] and collapsed["test/known-item MRR@10"] < base[
        "test/known-item MRR@10"]
    assert not all(g.passed for g in gates.values())  # so promoted_model would promote the base instead


def test_the_base_model_passes_every_gate_that_compares_it_with_itself(headlines):
    gates = {g.name: g for g in quality_gates(headlines, GateSettings(), candidate="base")}
    for name in ("known_item_mrr_not_below_base", "unseen_subjects_p10_not_below_base",
                 "unseen_subjects_lr_accuracy_not_below_base", "rare_subjects_p10_not_below_base",
                 "in_distribution_lr_accuracy_not_below_base"):
        assert gates[name].passed, name
    # ...but never the one that asks for an improvement: the base is not promoted as "fine-tuned".
    assert not gates["in_distribution_p10_beats_base_and_tfidf"].passed
    assert math.isnan(gates["new_months_p10_not_below_base"].value)  # no new months asked for: not applied
    assert gates["new_months_p10_not_below_base"].passed


def test_a_model_that_keeps_retrieval_and_loses_the_in_distribution_probe_is_refused(headlines):
    # What the AVX2 budget recipe measured: every retrieval figure at or above the base, the test probe 2.5 below.
    base, tfidf = headlines["base"], headlines["tfidf"]

    def failed_gates(probe_points_lost: float) -> list[str]:
        candidate = {**base, "test/P@10": max(base["test/P@10"], tfidf["test/P@10"]) + 0.01,
                     "test/LR macro-F1": max(base["test/LR macro-F1"], tfidf["test/LR macro-F1"]),
                     "test/LR accuracy": base["test/LR accuracy"] - probe_points_lost / 100}
        gates = quality_gates({**headlines, "candidate": candidate}, GateSettings(), candidate="candidate")
        return [g.name for g in gates if not g.passed]

    assert failed_gates(2.5) == ["in_distribution_lr_accuracy_not_below_base"]
    assert failed_gates(1.1) == ["in_distribution_lr_accuracy_not_below_base"]
    assert failed_gates(0.9) == []  # within the 1-point tolerance the unseen probe has too


def test_a_rare_slice_too_small_to_judge_is_reported_not_gated(headlines):
    small = {name: {**figures, "rare/papers": 150.0} for name, figures in headlines.items()}
    gates = {g.name: g for g in quality_gates(small, GateSettings(), candidate="collapsed")}
    rare = gates["rare_subjects_p10_not_below_base"]
    assert rare.passed and math.isnan(rare.value)
    assert "150 papers, fewer than the 200 gated" in rare.description
