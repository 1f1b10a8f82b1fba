"""The code location: every asset, check, schedule and the resources of the current deployment."""

from __future__ import annotations

import dagster as dg

from arxiv_assets.assets.baseline import tfidf_baseline
from arxiv_assets.assets.data import pairs, raw_papers, splits
from arxiv_assets.deployments import resources_for

ALL_ASSETS = [raw_papers, splits, pairs, tfidf_baseline]

defs = dg.Definitions(assets=ALL_ASSETS, resources=resources_for())
