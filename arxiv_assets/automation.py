"""When things run by themselves: a new month of papers in, one release attempt out, lazily.

- ``raw_papers_monthly``: a schedule built from the partitioned ``raw_papers`` job. A monthly
  partition opens when its month ends; on the 1st at 06:00 UTC the schedule materializes the month
  that just closed (and only that month).
- A new month of ``raw_papers`` leads to one release attempt in three steps, because Dagster requests
  an asset in the same tick as its parent only when both can run in one run (same partitioning):
  the monthly ``paper_embeddings`` sits between unpartitioned assets.

  1. ``EXPORT_ON_NEW_DATA`` on ``onnx_model``: ``AutomationCondition.eager()`` with two changes (a
     month of ``raw_papers`` that was never loaded does not block it: ``splits`` reads the months
     that exist, while plain ``eager()`` waits for *every* partition since 2025-03; an upstream
     blocking check that failed holds it back across runs too). Every asset before it is lazy
     (``any_downstream_conditions()``): the tick that sees the new month requests ``splits`` ->
     ``pairs`` -> ``model`` -> ``score_models`` -> ``promoted_model`` -> ``onnx_model`` once.
  2. ``EMBED_AFTER_EXPORT`` on ``paper_embeddings``: once the export is newly updated, every month
     (the index needs every month embedded by the model it indexes; a month whose vectors are still
     valid for that model is reused, not encoded, so this costs little when the champion stayed).
     It is one backfill; in prod its runs go to parallel pods.
  3. ``INDEX_AFTER_EMBEDDING`` on ``faiss_index``: once embeddings were updated and no month is still
     in progress or missing; ``RELEASE_AFTER_INDEX`` on ``release``: with the index, in its run.

  Later ticks request nothing, and nothing in between runs on its own.
- ``retrain_on_new_data``: the automation sensor that evaluates those conditions.

definitions.py wires them in one place: ``with_automation_conditions(ALL_ASSETS)``,
``schedules()``, ``sensors()`` (plus ``raw_papers_job``).
"""

from collections.abc import Sequence

import dagster as dg

from arxiv_assets.assets.data import raw_papers
from arxiv_assets.deployments import automation_on_by_default

RAW_PAPERS = dg.AssetSelection.assets(raw_papers)
DOWNSTREAM_OF_RAW_PAPERS = RAW_PAPERS.downstream(include_self=False)

EXPORT = dg.AssetKey("onnx_model")
EMBEDDINGS = dg.AssetKey("paper_embeddings")
INDEX = dg.AssetKey("faiss_index")
RELEASE = dg.AssetKey("release")

EXPORT_ON_NEW_DATA = (
    dg.AutomationCondition.eager().replace(
        "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(RAW_PAPERS)
    )
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("export_on_new_data")
WHEN_EXPORT_NEEDS_IT = dg.AutomationCondition.any_downstream_conditions()


def _after(parent: dg.AssetKey, label: str) -> dg.AutomationCondition:
    """Requested once ``parent`` was newly updated (remembered until nothing upstream is missing or running)."""
    updated = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated()
                                                    | dg.AutomationCondition.will_be_requested())
    return (
        updated.allow(dg.AssetSelection.assets(parent)).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing().ignore(RAW_PAPERS)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label(label)


EMBED_AFTER_EXPORT = _after(EXPORT, "embed_after_export")
INDEX_AFTER_EMBEDDING = _after(EMBEDDINGS, "index_after_embedding")
RELEASE_AFTER_INDEX = _after(INDEX, "release_after_index")
OWN_CONDITIONS = {EXPORT: EXPORT_ON_NEW_DATA, EMBEDDINGS: EMBED_AFTER_EXPORT, INDEX: INDEX_AFTER_EMBEDDING,
                  RELEASE: RELEASE_AFTER_INDEX}

raw_papers_job = dg.define_asset_job(
    "raw_papers_job",
    selection=RAW_PAPERS,
    description="One month (or a range of months, in one run) of raw_papers.",
)


def schedules(running: bool | None = None) -> list[dg.ScheduleDefinition]:
    """The monthly raw_papers schedule; switched on by default only where ``automation_on_by_default()``."""
    running = automation_on_by_default() if running is None else running
    return [
        dg.build_schedule_from_partitioned_job(
            raw_papers_job,
            name="raw_papers_monthly",
            description="Materializes the month that just closed, on the 1st at 06:00 UTC.",
            day_of_month=1,
            hour_of_day=6,
            minute_of_hour=0,
            default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        )
    ]


def sensors(running: bool | None = None) -> list[dg.AutomationConditionSensorDefinition]:
    """The sensor that evaluates every asset's automation condition."""
    running = automation_on_by_default() if running is None else running
    return [
        dg.AutomationConditionSensorDefinition(
            "retrain_on_new_data",
            target=dg.AssetSelection.all(),
            default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
            minimum_interval_seconds=300,
            description="Evaluates every asset's automation condition (one release attempt per new month).",
        )
    ]


def with_automation_conditions(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """``assets`` with the conditions of ``OWN_CONDITIONS`` and ``WHEN_EXPORT_NEEDS_IT`` on every other asset
    downstream of raw_papers that has no condition of its own (new assets are covered without touching
    this module)."""
    downstream = DOWNSTREAM_OF_RAW_PAPERS.resolve(assets)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in downstream or spec.automation_condition is not None:
            return spec
        return spec.replace_attributes(automation_condition=OWN_CONDITIONS.get(spec.key, WHEN_EXPORT_NEEDS_IT))

    return list(dg.map_asset_specs(apply, assets))
