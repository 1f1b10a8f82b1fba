"""Each asset's run config is derived from its ml settings dataclass: every setting, the active profile's
default, its description in the launchpad, and overrides that reach the ml code."""

import dataclasses

import pytest

from arxiv_assets.assets.config import run_config
from arxiv_assets.assets.data import PairsConfig, SplitsConfig
from arxiv_assets.assets.scoring import EvalConfig
from arxiv_assets.assets.training import TrainConfig, model
from arxiv_assets.profiles import ACTIVE

CONFIGS = {"splits": (SplitsConfig, ACTIVE.splits), "pairs": (PairsConfig, ACTIVE.pairs),
           "model": (TrainConfig, ACTIVE.train), "score_models": (EvalConfig, ACTIVE.evaluation)}


@pytest.mark.parametrize("op", list(CONFIGS))
def test_every_setting_is_in_run_config_with_the_profile_default(op: str):
    config_class, settings = CONFIGS[op]
    assert {f.name for f in dataclasses.fields(settings)} <= set(config_class.model_fields)
    assert config_class().settings() == settings


@pytest.mark.parametrize("op", list(CONFIGS))
def test_the_smoke_profile_run_config_reaches_the_settings(op: str):
    config_class, _ = CONFIGS[op]
    smoke = run_config("smoke").ops[op]["config"]
    assert dataclasses.asdict(config_class(**smoke).settings()) == smoke


def test_descriptions_and_choices_show_in_the_launchpad():
    fields = model.op.config_schema.as_field().config_type.fields
    assert "Hugging Face id" in fields["base_model"].description
    assert fields["loss"].config_type.kind.name == "ENUM"  # a typo is refused before the run starts
    assert "checkpoints" in fields["work_dir"].description  # config-only fields keep their own
