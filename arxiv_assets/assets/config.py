"""Each asset's typed run config, derived from the plain settings dataclass of ``arxiv_assets/ml`` it fills.

A setting is declared once, as a field of a frozen settings dataclass next to the code it steers
(``ml/settings.py``); the active profile chooses its value. ``settings_config`` turns the profile's
settings into a ``dg.Config`` base class with the same fields, types, defaults and descriptions, so the
launchpad shows, checks and edits every setting, and ``config.settings()`` hands the ml code its
dataclass back. An asset's Config subclasses it and declares only what is not an ml setting.
"""

import dataclasses
import typing
from typing import Any, ClassVar, Generic, TypeVar

import dagster as dg
import pydantic

from arxiv_assets.ml.settings import DESCRIPTION
from arxiv_assets.profiles import get_profile

Settings = TypeVar("Settings")


class SettingsConfig(dg.Config, Generic[Settings]):
    settings_type: ClassVar[type]

    def settings(self) -> Settings:
        """The ml settings these run config values fill (config-only fields stay behind)."""
        return self.settings_type(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self.settings_type)})


def settings_config(defaults: Settings) -> type[SettingsConfig[Settings]]:
    """A ``dg.Config`` class with one field per field of ``defaults``' dataclass, defaulting to its values."""
    settings_type = type(defaults)
    types = typing.get_type_hints(settings_type)  # the dataclasses' annotations are strings (__future__)
    fields: dict[str, Any] = {
        f.name: (types[f.name],
                 pydantic.Field(default=getattr(defaults, f.name), description=f.metadata.get(DESCRIPTION)))
        for f in dataclasses.fields(settings_type)
    }
    config = pydantic.create_model(f"{settings_type.__name__}Config", __base__=SettingsConfig, __module__=__name__,
                                   **fields)
    config.settings_type = settings_type
    return config


def run_config(profile_name: str) -> dg.RunConfig:
    """The full run config of a named profile: every setting of the ops that take the profile's settings."""
    profile = get_profile(profile_name)
    sections = {"splits": profile.splits, "pairs": profile.pairs, "model": profile.train,
                "score_models": profile.evaluation}
    return dg.RunConfig(ops={op: {"config": dataclasses.asdict(settings)} for op, settings in sections.items()})
