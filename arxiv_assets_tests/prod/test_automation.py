"""The monthly schedule and the automation conditions of ``defs``, evaluated by Dagster's own code.

Months are really materialized (bundled sample, temporary artifact directory); the conditions are
evaluated tick after tick with ``dg.evaluate_automation_conditions`` and its cursor, as the
automation sensor does. The retrain run itself (and the tick after it) is exercised against the GCS
emulator in ``test_gcs_deployment.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from arxiv_assets import automation
from arxiv_assets.assets.data import monthly_partitions
from arxiv_assets.definitions import ALL_ASSETS, defs
from arxiv_assets.deployments import DEPLOYMENT_ENV_VAR
from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets.resources.releases import Releases
from arxiv_assets_tests.conftest import partition_range_tags

RAW = dg.AssetKey("raw_papers")


def downstream_keys() -> set[dg.AssetKey]:
    return automation.DOWNSTREAM_OF_RAW_PAPERS.resolve(defs.resolve_asset_graph())


TAIL = {automation.EMBEDDINGS, automation.INDEX, automation.RELEASE}  # requested after the export, tick by tick


def up_to_the_export() -> dict[str, int]:
    """The first step of a release attempt: every asset from splits to onnx_model, once."""
    return {key.to_user_string(): 1 for key in downstream_keys() - TAIL}


def report_materialized(instance: dg.DagsterInstance, counts: dict[str, int]) -> None:
    """Record that the requested assets (every month of paper_embeddings) materialized and their blocking checks
    passed, as the runs would: the conditions read only these events."""
    for name in counts:
        key = dg.AssetKey(name)
        partitions = monthly_partitions.get_partition_keys() if key == automation.EMBEDDINGS else [None]
        for partition in partitions:
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
        for check in defs.resolve_asset_graph().get(key).check_keys:
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=key, check_name=check.name, passed=True))


def one_release_attempt(instance: dg.DagsterInstance, cursor) -> object:
    """Tick after tick from a new month: the export chain, then every month's embeddings, then index and
    release, each requested once (what runs in between is reported as materialized); the cursor after."""
    steps = [up_to_the_export(), {"paper_embeddings": len(monthly_partitions.get_partition_keys())},
             {"faiss_index": 1, "release": 1}]
    for expected in steps:
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert requested(tick) == expected
        report_materialized(instance, expected)
        cursor = tick.cursor
    return cursor


def requested(result) -> dict[str, int]:
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    return {key.to_user_string(): result.get_num_requested(key) for key in keys if result.get_num_requested(key)}


def schedule_run_request(when: datetime) -> dg.RunRequest:
    schedule = defs.resolve_schedule_def("raw_papers_monthly")
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as ctx:
        (run_request,) = schedule.evaluate_tick(ctx).run_requests
    return run_request


@pytest.fixture
def resources(tmp_path) -> dict:
    return {"io_manager": ArtifactIOManager(base_uri=str(tmp_path / "artifacts")), "paper_source": PaperSource(),
            "releases": Releases(base_uri=str(tmp_path / "artifacts" / "releases"))}


def test_the_export_carries_the_trigger_and_everything_before_it_is_lazy():
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert specs[RAW].automation_condition is None  # the schedule loads months, nothing else
    assert downstream_keys() == set(specs) - {RAW}
    assert {key: specs[key].automation_condition.get_label() for key in automation.OWN_CONDITIONS} == {
        automation.EXPORT: "export_on_new_data", automation.EMBEDDINGS: "embed_after_export",
        automation.INDEX: "index_after_embedding", automation.RELEASE: "release_after_index"}
    for key in downstream_keys() - set(automation.OWN_CONDITIONS):
        assert specs[key].automation_condition == dg.AutomationCondition.any_downstream_conditions(), key


def test_schedule_materializes_the_month_that_just_closed():
    run_request = schedule_run_request(datetime(2025, 7, 1, 6, 0, tzinfo=UTC))
    assert run_request.partition_key == "2025-06-01"
    assert defs.resolve_schedule_def("raw_papers_monthly").cron_schedule == "0 6 1 * *"
    assert defs.resolve_schedule_def("raw_papers_monthly").job_name == automation.raw_papers_job.name


@pytest.mark.parametrize(("deployment", "schedule_status", "sensor_status"), [
    ("local", dg.DefaultScheduleStatus.STOPPED, dg.DefaultSensorStatus.STOPPED),
    ("prod", dg.DefaultScheduleStatus.RUNNING, dg.DefaultSensorStatus.RUNNING),
])
def test_automation_is_off_locally_and_on_in_prod(monkeypatch, deployment, schedule_status, sensor_status):
    monkeypatch.setenv(DEPLOYMENT_ENV_VAR, deployment)  # what the code location reads when it loads
    assert {s.default_status for s in automation.schedules()} == {schedule_status}
    assert {s.default_status for s in automation.sensors()} == {sensor_status}


def test_a_new_month_requests_one_retrain_then_nothing(resources):
    instance = dg.DagsterInstance.ephemeral()
    history = dg.materialize(ALL_ASSETS, selection=[RAW], resources=resources, instance=instance,
                             tags=partition_range_tags("2025-04-01", "2025-05-01"))
    assert history.success

    # The sensor is switched on with history already loaded: no new data since, nothing to do.
    # (Months that were never loaded, 2025-03 and 2025-07 onwards, block nothing.)
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert requested(tick) == {}

    # The schedule's run for the month that closed...
    run_request = schedule_run_request(datetime(2025, 7, 1, 6, 0, tzinfo=UTC))
    month = dg.materialize(ALL_ASSETS, selection=[RAW], resources=resources, instance=instance,
                           partition_key=run_request.partition_key, tags=run_request.tags)
    assert month.success

    # ...makes the next ticks request one release attempt, each asset once (every month of paper_embeddings)...
    cursor = one_release_attempt(instance, tick.cursor)

    # ...and the ticks after it request nothing: no retrain on every tick, no lazy asset on its own.
    for _ in range(2):
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert requested(tick) == {}
        cursor = tick.cursor

    # Reloading a month that is already there (a manual re-run) is new data too: one more attempt.
    again = dg.materialize(ALL_ASSETS, selection=[RAW], resources=resources, instance=instance,
                           partition_key="2025-04-01")
    assert again.success
    one_release_attempt(instance, cursor)


SERVED = {dg.AssetKey("onnx_model"), dg.AssetKey("faiss_index")}  # what the service loads


def test_the_served_artifacts_are_made_from_the_promoted_model_alone():
    """Nothing the service loads is made from ``model`` directly: only ``promoted_model`` feeds the export and
    the index, and it is chosen from the evaluation's reports (the fine-tuned model, or the base model)."""
    graph = defs.resolve_asset_graph()
    for key in SERVED:
        parents = graph.get(key).parent_keys
        assert dg.AssetKey("promoted_model") in parents and dg.AssetKey("model") not in parents, key
    assert graph.get(dg.AssetKey("promoted_model")).parent_keys == {
        dg.AssetKey("model"), dg.AssetKey("ir_metrics"), dg.AssetKey("classifier_metrics")}
