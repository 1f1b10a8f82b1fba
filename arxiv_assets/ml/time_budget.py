"""A time budget for the training loop: on a CPU that trains several times slower than the one the recipe
was sized on (fp32 on AVX2 against bf16 on AMX: benchmarks/RESULTS.md), the run is re-planned, once and
early, for the steps that fit, and its learning-rate schedule decays to zero at the new end.

The rate is timed on the run's own steps (a quarter of the way in, leaving out the first ones, which
build kernels for new shapes and cost about twice as much), so it needs no separate probe and reflects
the mix of batches the run really trains on. The plan is saved with every checkpoint, so a resumed run
keeps it. Opt-in (``TrainSettings.train_budget_seconds``): a cut run trades quality for time, measured
in benchmarks/RESULTS.md "Training time by CPU class".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

WARM_FRACTION = 0.05  # steps left out of the timing: the first ones build kernels for new shapes
CHECK_FRACTION = 0.25  # where the rate is measured and the run re-planned, if it must be


def replanned(original: Callable[[int], float], from_step: int, end_step: int) -> Callable[[int], float]:
    """The learning-rate factor of ``original`` up to ``from_step``, then falling linearly from its value there
    to zero at ``end_step``."""
    start = original(from_step)

    def factor(step: int) -> float:
        if step <= from_step:
            return original(step)
        return start * max(0.0, (end_step - step) / (end_step - from_step))

    return factor


def steps_within_budget(step: int, elapsed: float, seconds_per_step: float, planned: int, budget: float) -> int:
    """The step to end at: ``planned`` if the rest fits ``budget`` at ``seconds_per_step``, else the last step that
    does (at least one more than ``step``)."""
    fits = int((budget - elapsed) // seconds_per_step)
    return min(planned, step + max(1, fits))


@dataclass(frozen=True)
class BudgetReport:
    planned_steps: int  # what the epochs asked for
    end_step: int  # where the run ended (planned_steps when the budget held)
    seconds_per_step: float | None  # timed between WARM_FRACTION and CHECK_FRACTION; None: not timed

    @property
    def cut(self) -> bool:
        return self.end_step < self.planned_steps


class TimeBudget(TrainerCallback, ExportableState):
    """Ends training within ``budget_seconds`` of its start, re-planning the schedule for the steps that fit."""

    def __init__(self, budget_seconds: float, end_step: int | None = None) -> None:
        self.budget_seconds = budget_seconds
        self.end_step = end_step  # set when the run was re-planned (and restored with a checkpoint)
        self.seconds_per_step: float | None = None
        self.planned_steps = 0
        self._started = self._warm_at = 0.0
        self._warm_step = 0

    def state(self) -> dict:
        return {"args": {"budget_seconds": self.budget_seconds, "end_step": self.end_step},
                "attributes": {"seconds_per_step": self.seconds_per_step}}

    def report(self) -> BudgetReport:
        # end_step is only ever set below planned_steps (steps_within_budget caps it)
        return BudgetReport(self.planned_steps, self.end_step or self.planned_steps, self.seconds_per_step)

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self.planned_steps = state.max_steps
        self._started = time.perf_counter()
        self._warm_step = max(1, round(WARM_FRACTION * state.max_steps))
        if self.end_step is not None and lr_scheduler is not None:  # resumed: the saved plan goes on
            self._replan(lr_scheduler, self._check_step(state), self.end_step)

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        step = state.global_step
        if step == self._warm_step:
            self._warm_at = time.perf_counter()
        elif step == self._check_step(state) and self.end_step is None and self._warm_at:
            now = time.perf_counter()
            self.seconds_per_step = (now - self._warm_at) / (step - self._warm_step)
            end = steps_within_budget(step, now - self._started, self.seconds_per_step, state.max_steps,
                                      self.budget_seconds)
            if end < state.max_steps:
                self.end_step = end
                if lr_scheduler is not None:
                    self._replan(lr_scheduler, step, end)
        if self.end_step is not None and step >= self.end_step:
            control.should_training_stop = True
        return control

    def _check_step(self, state) -> int:
        return max(self._warm_step + 1, round(CHECK_FRACTION * state.max_steps))

    @staticmethod
    def _replan(lr_scheduler, from_step: int, end_step: int) -> None:
        # The trainer's schedules are LambdaLR: one factor function per parameter group.
        lr_scheduler.lr_lambdas = [replanned(f, from_step, end_step) for f in lr_scheduler.lr_lambdas]
