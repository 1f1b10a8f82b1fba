"""How a setting is declared: a field of a frozen dataclass next to the function it steers, with its default.

``SplitSettings`` (splits.py), ``PairSettings`` (pairs.py), ``TrainSettings`` (training.py) and
``EvalSettings`` (evaluation.py) are the only place a setting and its default are written. Profiles
override fields; the Dagster run config is derived from these classes (``arxiv_assets/assets/config.py``)
and shows a field's ``described`` text beside it::

    new_months: int = field(default=2, metadata=described("newest months held out of training"))
"""

from __future__ import annotations

DESCRIPTION = "description"  # the field metadata key the run config reads a setting's description from


def described(text: str) -> dict[str, str]:
    """A settings field's metadata: what the setting does, for whoever edits it in run config."""
    return {DESCRIPTION: text}
