"""benchmarks.train_floor's count of the training's arithmetic: batch shapes as the trainer pads them, and FLOPs
that match the transformer's own arithmetic (so the floor it prints is the recipe's, not the counter's)."""

from collections import Counter

import pytest
from datasets import Dataset

from arxiv_assets.ml.training import TrainSettings, freeze_lower_layers, load_for_training
from benchmarks.train_floor import flops_per_text, padded_lengths

TOKENS = {"t1": 10, "t2": 14, "t3": 9, "t4": 12, "abstract": 128, "paper": 128, "other": 100}


def _pairs() -> Dataset:
    titles = [("t1", "abstract"), ("t2", "abstract"), ("t3", "abstract"), ("t4", "abstract")]
    papers = [("paper", "other")] * 6
    return Dataset.from_dict({
        "anchor": [a for a, _ in titles + papers], "positive": [p for _, p in titles + papers],
        "primary_subject": ["x"] * 4 + ["a", "a", "b", "b", "c", "c"],
        "kind": ["title_abstract"] * 4 + ["paper"] * 6})


def test_batches_are_padded_to_their_longest_text_and_sized_as_each_run_batches() -> None:
    # the main run: title -> abstract 4 to a batch here, paper -> paper one per subject (3 subjects: 2 batches)
    assert padded_lengths(_pairs(), TOKENS, batch_size=4, distinct_subjects=True, seed=0) == Counter(
        {(4, 14): 1, (4, 128): 1, (3, 128): 2, (3, 100): 2})
    # the second run: every kind 4 to a batch; a last partial batch left out
    assert padded_lengths(_pairs(), TOKENS, batch_size=4, distinct_subjects=False, seed=0) == Counter(
        {(4, 14): 1, (4, 128): 2, (4, 100): 1})


@pytest.fixture(scope="module")
def minilm():
    model, _ = load_for_training(TrainSettings(), "cpu")
    return model


def test_flops_are_the_transformers_forward_and_backward_and_frozen_layers_skip_theirs(minilm) -> None:
    config = minilm[0].auto_model.config
    hidden, inner, layers, length = config.hidden_size, config.intermediate_size, config.num_hidden_layers, 128
    # per layer and token: Q, K, V, output (4 h x h) and the feed-forward (2 h x 4h) products, and attention's two
    # (scores, weighted values: 2 x length x h); a product is 2 FLOP per multiply-add; backward does twice forward
    forward = 2 * layers * length * (4 * hidden * hidden + 2 * hidden * inner + 2 * length * hidden)
    counted = flops_per_text(minilm, length)
    assert 3 * forward * 0.98 <= counted <= 3 * forward * 1.05  # pooling and the loss are small
    assert flops_per_text(minilm, 64) < 0.495 * counted  # the layers linear in the length, attention faster

    frozen, _ = load_for_training(TrainSettings(), "cpu")
    freeze_lower_layers(frozen, 3)
    # forward through all six layers, backward through the top three only
    assert flops_per_text(frozen, length) == pytest.approx(forward + 2 * forward / 2, rel=0.05)
