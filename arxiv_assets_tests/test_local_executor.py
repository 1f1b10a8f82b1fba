"""The local executor runs one step at a time, each in its own process: two independent steps of a real
multiprocess run never overlap (``arxiv_assets.deployments.LOCAL_EXECUTOR_CONFIG`` says why)."""

import time

import dagster as dg

from arxiv_assets.deployments import executor_for

STEP_SECONDS = 2.0  # long enough that two steps started together would overlap whatever the process start-up


@dg.asset
def left() -> int:
    time.sleep(STEP_SECONDS)
    return 1


@dg.asset
def right() -> int:
    time.sleep(STEP_SECONDS)
    return 2


def independent_steps_job() -> dg.JobDefinition:
    """Two assets with no edge between them: Dagster's default multiprocess executor starts both at once."""
    defs = dg.Definitions(assets=[left, right], jobs=[dg.define_asset_job("independent_steps")],
                          executor=executor_for("local"))  # the job takes the executor of the Definitions
    return defs.resolve_job_def("independent_steps")


def test_local_steps_run_one_at_a_time_each_in_its_own_process():
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(independent_steps_job), instance=instance)
        assert result.success
        step_events = instance.all_logs(
            result.run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS})
        windows: dict[str, dict[str, float]] = {}
        for event in step_events:
            windows.setdefault(event.step_key, {})[event.dagster_event.event_type_value] = event.timestamp
        assert set(windows) == {"left", "right"}
        (first, second) = sorted(windows.values(), key=lambda w: w["STEP_START"])
        assert second["STEP_START"] >= first["STEP_SUCCESS"], windows  # the second began after the first ended
        pids = {event.dagster_event.pid for event in step_events}
        assert len(pids) == 2  # a process per step, as with Dagster's default executor
