"""When things run by themselves: a new month of papers in, one release attempt out, lazily.

- ``raw_papers_monthly``: a schedule built from the partitioned ``raw_papers`` job. A monthly
  partition opens when its month ends; on the 1st at 06:00 UTC the schedule materializes the month
  that just closed (and only that month).
- ``RELEASE_ON_NEW_DATA``: the condition of ``release``, the asset the graph exists to produce. It is
  ``AutomationCondition.eager()`` with two changes:

  * a month of ``raw_papers`` that was never loaded does not block it (``splits`` reads the months
    that exist; plain ``eager()`` waits for *every* partition since 2025-03);
  * an upstream blocking check that failed holds it back across runs too, not only inside the run.

- Every asset between ``raw_papers`` and ``release`` is lazy: ``any_downstream_conditions()``, so
  it runs only when ``release``'s condition needs it. A new month therefore requests the whole chain
  (``splits`` -> ``pairs`` -> ``model`` ... -> ``release``) once, in the tick that sees it; later
  ticks request nothing, and nothing in between runs on its own.
- ``retrain_on_new_data``: the automation sensor that evaluates those conditions.

definitions.py wires all three in one place: ``with_automation_conditions(ALL_ASSETS)``,
``schedules()``, ``sensors()`` (plus ``raw_papers_job``).
"""

from collections.abc import Sequence

import dagster as dg

from arxiv_assets.assets.data import raw_papers
from arxiv_assets.deployments import automation_on_by_default

RAW_PAPERS = dg.AssetSelection.assets(raw_papers)
DOWNSTREAM_OF_RAW_PAPERS = RAW_PAPERS.downstream(include_self=False)

RELEASE = dg.AssetKey("release")

RELEASE_ON_NEW_DATA = (
    dg.AutomationCondition.eager().replace(
        "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(RAW_PAPERS)
    )
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("release_on_new_data")
WHEN_RELEASE_NEEDS_IT = dg.AutomationCondition.any_downstream_conditions()

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
    """``assets`` with ``RELEASE_ON_NEW_DATA`` on ``release`` and ``WHEN_RELEASE_NEEDS_IT`` on every other
    asset downstream of raw_papers that has no condition of its own (new assets are covered without
    touching this module)."""
    downstream = DOWNSTREAM_OF_RAW_PAPERS.resolve(assets)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in downstream or spec.automation_condition is not None:
            return spec
        condition = RELEASE_ON_NEW_DATA if spec.key == RELEASE else WHEN_RELEASE_NEEDS_IT
        return spec.replace_attributes(automation_condition=condition)

    return list(dg.map_asset_specs(apply, assets))
