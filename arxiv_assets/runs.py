"""Runs the local instance shows as running although nothing runs them any more: find them, mark them failed.

Dagster's run monitoring (``run_monitoring`` in ``dagster.yaml``) fails a STARTED run whose run worker
died only where the run launcher can check a worker's health: the K8sRunLauncher in production does,
the local instance's DefaultRunLauncher does not (``supports_check_run_worker_health`` is False), and a
run started by ``dagster asset materialize`` executes inside that CLI process, outside any launcher.
``dagster dev``'s code server fails a run whose process died while the code server is still up; a run
killed together with it, or killed under the CLI (SIGKILL, the OOM killer, a closed laptop), stays
STARTED forever and the UI shows it running.

Every run records the processes that run it in its event log: the run worker ("Started process for
run (pid: N)", "Executing steps using multiprocess executor: parent process (pid: N)") and each step
worker ("Executing step ... in subprocess", with its pid). A run is stale when it is STARTING or
STARTED and none of those processes is alive on this machine. A pid whose process started after the
event that recorded it belongs to another program now (pids are reused) and counts as gone; a zombie
counts as gone. A run that recorded no pid yet is left alone unless ``--older-than`` says how old such
a run must be to count as stale. A run worker killed while its step worker carries on (a SIGKILL to the
parent process alone) is not stale: the step still writes its results, and the run is reported, not
failed, until that process ends too.

    python -m arxiv_assets.runs fail-stale --dry-run      # list what would be marked failed
    python -m arxiv_assets.runs fail-stale                # mark stale runs FAILED, with the reason
    python -m arxiv_assets.runs fail-stale --older-than 6 # also runs with no recorded pid, started > 6 h ago

It reads ``$DAGSTER_HOME`` (``make`` sets the project's ``.dagster_home``) and refuses instances whose run
launcher checks run workers itself: there run monitoring does this job, and pids from other machines
would mean nothing here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
# Events whose metadata names a process that runs the run (run worker) or one of its steps (step worker).
PID_EVENTS = {dg.DagsterEventType.ENGINE_EVENT, dg.DagsterEventType.STEP_WORKER_STARTED}
# /proc's boot time has a resolution of one second: a process may look up to that much younger than it is.
START_TIME_TOLERANCE_S = 2.0


@dataclass(frozen=True)
class RecordedProcess:
    pid: int
    recorded_at: float  # the event's timestamp: the process existed then
    step_key: str | None  # None: the run worker

    def describe(self) -> str:
        return f"pid {self.pid} ({'step ' + self.step_key if self.step_key else 'run worker'})"


@dataclass(frozen=True)
class RunVerdict:
    run_id: str
    job_name: str
    status: str
    started_at: float | None
    stale: bool
    reason: str
    alive: list[RecordedProcess] = field(default_factory=list)


def recorded_processes(instance: dg.DagsterInstance, run_id: str) -> list[RecordedProcess]:
    """Every process the run's event log says ran it, once per pid (the first event that names it)."""
    seen: dict[int, RecordedProcess] = {}
    for entry in instance.all_logs(run_id, of_type=PID_EVENTS):
        event = entry.dagster_event
        metadata = getattr(event.event_specific_data, "metadata", None) if event else None
        if not metadata or "pid" not in metadata:
            continue
        try:
            pid = int(metadata["pid"].value)
        except (TypeError, ValueError):
            continue
        seen.setdefault(pid, RecordedProcess(pid=pid, recorded_at=entry.timestamp, step_key=event.step_key))
    return list(seen.values())


def process_alive(pid: int, recorded_at: float) -> bool:
    """Whether the process that had ``pid`` at ``recorded_at`` still runs on this machine.

    On Linux, /proc tells the process's state (a zombie has exited) and its start time (a process that
    started after ``recorded_at`` only reuses the pid). Elsewhere only existence can be checked.
    """
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime 22
        state, start_ticks = fields[0], int(fields[19])
        if state in {"Z", "X", "x"}:
            return False
        started_at = _boot_time() + start_ticks / os.sysconf("SC_CLK_TCK")
        return started_at <= recorded_at + START_TIME_TOLERANCE_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("/proc/stat has no btime line")


def judge(instance: dg.DagsterInstance, record: dg.RunRecord, older_than_hours: float | None,
          now: float | None = None) -> RunVerdict:
    run = record.dagster_run
    started_at = record.start_time or record.create_timestamp.timestamp()
    now = time.time() if now is None else now
    base = {"run_id": run.run_id, "job_name": run.job_name, "status": run.status.value, "started_at": started_at}
    processes = recorded_processes(instance, run.run_id)
    if not processes:
        age_hours = (now - started_at) / 3600
        if older_than_hours is not None and age_hours >= older_than_hours:
            return RunVerdict(**base, stale=True, reason=(
                f"no process recorded for it and {run.status.value} for {age_hours:.1f} h (--older-than "
                f"{older_than_hours:g})"))
        return RunVerdict(**base, stale=False, reason=(
            "no process recorded for it yet; pass --older-than HOURS to fail such runs by age"))
    alive = [process for process in processes if process_alive(process.pid, process.recorded_at)]
    if alive:
        return RunVerdict(**base, stale=False, alive=alive,
                          reason="still running: " + ", ".join(process.describe() for process in alive))
    return RunVerdict(**base, stale=True, reason=(
        "none of its processes is alive any more (" + ", ".join(process.describe() for process in processes)
        + "): it was killed before it could record its end (SIGKILL, the OOM killer, a machine that slept "
        "or rebooted)"))


def find_stale_runs(instance: dg.DagsterInstance, older_than_hours: float | None = None) -> list[RunVerdict]:
    """A verdict for every STARTING or STARTED run of ``instance``."""
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=IN_FLIGHT))
    return [judge(instance, record, older_than_hours) for record in records]


def fail_stale_runs(instance: dg.DagsterInstance, older_than_hours: float | None = None,
                    dry_run: bool = False) -> list[RunVerdict]:
    """Mark every stale run FAILED (with the reason in its event log); returns every verdict."""
    if instance.run_launcher.supports_check_run_worker_health:
        raise SystemExit(
            f"{type(instance.run_launcher).__name__} checks its run workers itself: enable run_monitoring in "
            "this instance's dagster.yaml instead (the daemon then fails runs whose worker died)")
    verdicts = find_stale_runs(instance, older_than_hours)
    for verdict in verdicts:
        if not verdict.stale or dry_run:
            continue
        run = instance.get_run_by_id(verdict.run_id)
        if run is None or run.is_finished:  # it ended while we looked
            continue
        instance.report_run_failed(run, f"Marked failed by `python -m arxiv_assets.runs fail-stale`: {verdict.reason}.")
    return verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arxiv_assets.runs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fail = commands.add_parser("fail-stale", help="mark runs whose processes are all gone as FAILED")
    fail.add_argument("--dry-run", action="store_true", help="only list what would be marked failed")
    fail.add_argument("--older-than", type=float, default=None, metavar="HOURS",
                      help="also fail runs that recorded no process, once they are this old")
    args = parser.parse_args(argv)

    with dg.DagsterInstance.get() as instance:
        verdicts = fail_stale_runs(instance, older_than_hours=args.older_than, dry_run=args.dry_run)
    if not verdicts:
        print("no STARTING or STARTED runs")
    for verdict in verdicts:
        action = ("would mark FAILED" if args.dry_run else "marked FAILED") if verdict.stale else "left alone"
        print(f"{verdict.run_id} {verdict.job_name} {verdict.status}: {action}: {verdict.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
