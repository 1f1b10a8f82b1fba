"""Stale runs: real runs in a temporary DAGSTER_HOME (the project's dagster.yaml), killed with SIGKILL.

Each run is ``dagster asset materialize`` of a one-asset project whose step sleeps; the run worker is the
CLI process and the step runs in a subprocess of it (Dagster's default multiprocess executor), as
``make run`` does. A run killed with its whole process group stays STARTED; ``fail-stale`` marks it
FAILED. A run whose processes live is never touched, nor one whose run worker died while its step
worker still runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from arxiv_assets.runs import fail_stale_runs, process_alive, recorded_processes

from .conftest import PROJECT_ROOT, VENV_BIN

DAGSTER = VENV_BIN / "dagster"

SLOW_PROJECT = '''
import os
import time
from pathlib import Path

import dagster as dg


@dg.asset
def slow() -> int:
    Path(os.environ["STEP_STARTED_MARKER"]).write_text(str(os.getpid()))
    time.sleep(900)
    return 1


defs = dg.Definitions(assets=[slow])
'''


@pytest.fixture(autouse=True)
def slow_project(dagster_home: Path) -> None:
    (dagster_home.parent / "slow_project.py").write_text(SLOW_PROJECT)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """The runs' process groups; whatever a test leaves running is killed at the end."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(home), **extra}


def _start_run(home: Path, name: str, started: list[subprocess.Popen]) -> tuple[subprocess.Popen, Path]:
    marker = home.parent / f"{name}.step-started"
    log = (home.parent / f"{name}.log").open("w")
    process = subprocess.Popen(
        [str(DAGSTER), "asset", "materialize", "-f", str(home.parent / "slow_project.py"), "--select", "slow"],
        cwd=home.parent, env=_env(home, STEP_STARTED_MARKER=str(marker)), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: run worker, step worker and their helpers
    )
    started.append(process)
    return process, marker


def _wait_for(marker: Path, process: subprocess.Popen, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while not marker.exists() or not marker.read_text():
        assert process.poll() is None, (marker.parent / marker.name.replace("step-started", "log")).read_text()
        assert time.monotonic() < deadline, f"the step did not start in {timeout} s"
        time.sleep(0.5)
    return int(marker.read_text())


def _wait_dead(pid: int, since: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while process_alive(pid, since):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.2)


def _fail_stale(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "arxiv_assets.runs", "fail-stale", *args], cwd=PROJECT_ROOT,
                          env=_env(home), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _runs_by_worker_pid(home: Path) -> dict[int, dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = {}
        for run in instance.get_runs():
            workers = [p.pid for p in recorded_processes(instance, run.run_id) if p.step_key is None]
            runs.update({pid: run for pid in workers})
        return runs


def _status(home: Path, run_id: str) -> dg.DagsterRunStatus:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.get_run_by_id(run_id).status


def _failure_message(home: Path, run_id: str) -> str:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (entry,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.PIPELINE_FAILURE)
        return entry.dagster_event.message


def test_a_killed_run_is_marked_failed_and_live_ones_are_left_alone(dagster_home: Path, started) -> None:
    killed, killed_marker = _start_run(dagster_home, "killed", started)
    orphan, orphan_marker = _start_run(dagster_home, "orphaned-step", started)
    killed_step_pid = _wait_for(killed_marker, killed)
    orphan_step_pid = _wait_for(orphan_marker, orphan)
    runs = _runs_by_worker_pid(dagster_home)
    killed_run, orphan_run = runs[killed.pid], runs[orphan.pid]
    assert killed_run.run_id != orphan_run.run_id

    # Both runs live: nothing is touched.
    out = _fail_stale(dagster_home)
    assert out.count("left alone: still running") == 2, out
    assert _status(dagster_home, killed_run.run_id) == _status(dagster_home, orphan_run.run_id) == (
        dg.DagsterRunStatus.STARTED)

    # SIGKILL mid-step: the whole process group of one run; only the run worker of the other.
    kill_time = time.time()
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    _wait_dead(killed_step_pid, kill_time)
    os.kill(orphan.pid, signal.SIGKILL)
    orphan.wait(timeout=30)
    assert process_alive(orphan_step_pid, kill_time)  # the step worker carries on without its parent

    # Nothing recorded an end: the instance (and the UI) still shows both running.
    assert _status(dagster_home, killed_run.run_id) == dg.DagsterRunStatus.STARTED
    assert _status(dagster_home, orphan_run.run_id) == dg.DagsterRunStatus.STARTED

    out = _fail_stale(dagster_home, "--dry-run")
    assert f"{killed_run.run_id} __ASSET_JOB STARTED: would mark FAILED" in out, out
    assert _status(dagster_home, killed_run.run_id) == dg.DagsterRunStatus.STARTED  # a dry run changes nothing

    out = _fail_stale(dagster_home)
    assert f"{killed_run.run_id} __ASSET_JOB STARTED: marked FAILED: none of its processes is alive" in out, out
    assert f"{orphan_run.run_id} __ASSET_JOB STARTED: left alone: still running: pid {orphan_step_pid} (step slow)" \
        in out, out
    assert _status(dagster_home, killed_run.run_id) == dg.DagsterRunStatus.FAILURE
    assert _status(dagster_home, orphan_run.run_id) == dg.DagsterRunStatus.STARTED
    message = _failure_message(dagster_home, killed_run.run_id)
    assert "fail-stale" in message and f"pid {killed.pid} (run worker)" in message
    assert f"pid {killed_step_pid} (step slow)" in message

    # Once the orphaned step worker is gone too, that run is stale as well.
    os.killpg(orphan.pid, signal.SIGKILL)
    _wait_dead(orphan_step_pid, kill_time)
    out = _fail_stale(dagster_home)
    assert f"{orphan_run.run_id} __ASSET_JOB STARTED: marked FAILED" in out, out
    assert _status(dagster_home, orphan_run.run_id) == dg.DagsterRunStatus.FAILURE
    assert "no STARTING or STARTED runs" in _fail_stale(dagster_home)


def test_a_run_without_a_recorded_process_is_failed_only_by_age() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        run = instance.add_run(dg.DagsterRun(job_name="never_reported", status=dg.DagsterRunStatus.STARTED))
        (verdict,) = fail_stale_runs(instance)
        assert not verdict.stale and "--older-than" in verdict.reason
        (verdict,) = fail_stale_runs(instance, older_than_hours=1000)
        assert not verdict.stale
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        (verdict,) = fail_stale_runs(instance, older_than_hours=0)
        assert verdict.stale
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="start times are read from /proc (Linux)")
def test_a_reused_pid_does_not_count_as_the_recorded_process() -> None:
    now = time.time()
    assert process_alive(os.getpid(), now)  # this process, recorded while it runs
    assert not process_alive(os.getpid(), now - 10 * 24 * 3600)  # "recorded" before this process existed
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid, now)  # exited and reaped


def test_the_local_instance_monitors_runs_but_its_launcher_cannot_check_workers(dagster_home: Path) -> None:
    """Why fail-stale exists: enabled run monitoring fails runs stuck STARTING or CANCELING, but the
    DefaultRunLauncher has no run worker health check, so a dead worker's STARTED run stays STARTED."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.run_monitoring_enabled
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert not instance.run_launcher.supports_check_run_worker_health
