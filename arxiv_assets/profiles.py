"""Named run sizes. The active profile (``ARXIV_PROFILE``: smoke | default | gpu) supplies the
defaults of every asset's ``Config``; run config can still override any single field, and
``run_config(name)`` gives the full run config of a profile (tests use ``smoke`` this way).
"""


import os
from dataclasses import asdict, dataclass, field

import dagster as dg

PROFILE_ENV_VAR = "ARXIV_PROFILE"


@dataclass(frozen=True)
class SplitSettings:
    min_papers_per_subject: int = 400
    max_papers_per_subject: int | None = 1200
    eval_fraction: float = 0.1
    test_fraction: float = 0.15


@dataclass(frozen=True)
class PairSettings:
    train_pairs: int = 6000
    eval_pairs: int = 600
    title_abstract_fraction: float = 0.2
    hard_negatives: bool = False
    seed: int = 0


@dataclass(frozen=True)
class Profile:
    name: str
    splits: SplitSettings = field(default_factory=SplitSettings)
    pairs: PairSettings = field(default_factory=PairSettings)

    def run_config(self) -> dg.RunConfig:
        return dg.RunConfig(ops={"splits": asdict(self.splits), "pairs": asdict(self.pairs)})


PROFILES: dict[str, Profile] = {
    # Seconds: a handful of subjects and pairs, for tests.
    "smoke": Profile(
        name="smoke",
        splits=SplitSettings(min_papers_per_subject=150, max_papers_per_subject=60, eval_fraction=0.2,
                             test_fraction=0.3),
        pairs=PairSettings(train_pairs=64, eval_pairs=32),
    ),
    # Minutes on a 2-core laptop CPU: every subject with enough papers to evaluate.
    "default": Profile(name="default"),
    # The seed project's size, for a GPU node: 100k train / 10k eval pairs, no per-subject cap.
    "gpu": Profile(
        name="gpu",
        splits=SplitSettings(max_papers_per_subject=None),
        pairs=PairSettings(train_pairs=100_000, eval_pairs=10_000, hard_negatives=True),
    ),
}


def get_profile(name: str | None = None) -> Profile:
    name = name or os.environ.get(PROFILE_ENV_VAR, "default")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (from {PROFILE_ENV_VAR}); choose one of {sorted(PROFILES)}")
    return PROFILES[name]


ACTIVE = get_profile()


def run_config(name: str) -> dg.RunConfig:
    return get_profile(name).run_config()
