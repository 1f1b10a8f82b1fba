"""Training helpers that need no model: the batch sampler, sequence length, checkpoint resumption."""

from pathlib import Path

import numpy as np
from datasets import Dataset

from arxiv_assets.ml.training import SubjectDistinctBatchSampler, choose_max_seq_length, last_complete_checkpoint


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
