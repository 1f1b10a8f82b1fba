"""The training loop's time budget: the arithmetic, a real run cut short, and a plan that survives a resume."""

import itertools
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from arxiv_assets.ml.pairs import PairSettings, make_pair_sets
from arxiv_assets.ml.splits import SplitSettings, make_splits, papers_in
from arxiv_assets.ml.time_budget import TimeBudget, replanned, steps_within_budget
from arxiv_assets.ml.training import TrainSettings, train


def linear_with_warmup(step: int, warmup: int = 10, total: int = 100) -> float:
    return step / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))


def test_the_replanned_schedule_follows_the_original_then_decays_to_zero_at_the_new_end() -> None:
    factor = replanned(linear_with_warmup, from_step=25, end_step=60)
    assert [factor(s) for s in (0, 5, 25)] == [linear_with_warmup(s) for s in (0, 5, 25)]
    assert factor(60) == factor(80) == 0.0
    decay = [factor(s) for s in range(25, 61)]
    assert all(a > b for a, b in itertools.pairwise(decay))
    assert factor(42) == pytest.approx(linear_with_warmup(25) * (60 - 42) / (60 - 25))


def test_the_run_ends_at_the_last_step_that_fits() -> None:
    # 55 of 218 steps done in 150 s: the rest at 2.65 s/step would take 430 s more
    assert steps_within_budget(55, elapsed=150, seconds_per_step=2.65, planned=218, budget=540) == 55 + 147
    assert steps_within_budget(55, elapsed=75, seconds_per_step=1.3, planned=218, budget=540) == 218  # it fits
    assert steps_within_budget(55, elapsed=900, seconds_per_step=1.3, planned=218, budget=540) == 56  # one more


def test_a_restored_plan_is_applied_again_when_training_resumes() -> None:
    saved = TimeBudget(540.0)
    saved.end_step, saved.seconds_per_step = 60, 2.5
    restored = TimeBudget.from_state(saved.state())  # what the trainer does with a checkpoint's callback state
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_with_warmup)

    class State:
        max_steps = 100

    restored.on_train_begin(None, State(), None, lr_scheduler=scheduler)
    assert restored.end_step == 60 and restored.seconds_per_step == 2.5
    assert scheduler.lr_lambdas[0](60) == 0.0 and scheduler.lr_lambdas[0](25) == linear_with_warmup(25)


@pytest.fixture(scope="module")
def tiny_pairs(sample_papers: pd.DataFrame):
    splits = make_splits(sample_papers, SplitSettings(min_papers_per_subject=150, max_papers_per_subject=20,
                                                      probe_papers_per_subject=5, unseen_papers_per_subject=5)).papers
    return make_pair_sets(splits, PairSettings(train_pairs=128, eval_pairs=16)), papers_in(splits, "eval")


def test_a_run_whose_epoch_does_not_fit_its_budget_ends_early_with_its_schedule_run_down(tiny_pairs,
                                                                                        tmp_path: Path) -> None:
    pairs, eval_papers = tiny_pairs
    tiny = TrainSettings(batch_size=16, max_seq_length_cap=32, train_seq_length=32, report_to_wandb=False,
                         checkpoint_steps=10_000, eval_queries_per_subject=2, interpolate_with_base=False,
                         soup_loss=None, device="cpu")

    def run(budget: float | None, name: str):
        return train(pairs["train"], pairs["eval"], eval_papers, replace(tiny, train_budget_seconds=budget),
                     tmp_path / name, tmp_path / "work", data_fingerprint=name)

    whole = run(3600.0, "fits")
    assert whole.budget is not None and not whole.budget.cut and whole.steps == whole.budget.planned_steps > 4
    assert whole.budget.seconds_per_step > 0
    cut = run(1e-6, "cut")  # nothing fits: the run stops one step after it is timed
    assert cut.budget.cut and cut.budget.planned_steps == whole.steps
    assert cut.steps == cut.budget.end_step < whole.steps
    assert run(None, "unbounded").budget is None
