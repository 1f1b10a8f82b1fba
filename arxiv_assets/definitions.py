"""The code location: every asset, check, schedule and the resources of the current deployment."""

from __future__ import annotations

import dagster as dg

from arxiv_assets import automation
from arxiv_assets.assets.baseline import tfidf_baseline
from arxiv_assets.assets.data import pairs, raw_papers, splits
from arxiv_assets.assets.export import faiss_index, onnx_model, paper_embeddings
from arxiv_assets.assets.promotion import promoted_model
from arxiv_assets.assets.release import release
from arxiv_assets.assets.scoring import score_models
from arxiv_assets.assets.training import model
from arxiv_assets.deployments import executor_for, resources_for

ALL_ASSETS = [raw_papers, splits, pairs, tfidf_baseline, model, score_models, promoted_model, onnx_model,
              paper_embeddings, faiss_index,
              release]

# Per deployment: resources and executor (deployments.py); schedule, sensor and automation conditions (automation.py).
defs = dg.Definitions(
    assets=automation.with_automation_conditions(ALL_ASSETS),
    jobs=[automation.raw_papers_job],
    schedules=automation.schedules(),
    sensors=automation.sensors(),
    resources=resources_for(),
    executor=executor_for(),
)
