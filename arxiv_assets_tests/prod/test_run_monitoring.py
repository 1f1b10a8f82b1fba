"""Run monitoring in production: what deploy/dagster-prod.yaml asks of the daemon, and that the Helm values
render the same thing.

The run launcher is the real K8sRunLauncher built from the prod instance file's own config (with a
kubeconfig that points nowhere: building it contacts no cluster); Dagster refuses an instance whose
``max_resume_run_attempts`` is above 0 with a launcher that cannot resume runs, and run monitoring can
only fail a STARTED run whose worker died when the launcher checks worker health.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import class_from_code_pointer

from arxiv_assets_tests.conftest import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
# deploy/dagster-prod.yaml key -> the Helm chart's dagsterDaemon.runMonitoring value that renders it
# (chart `dagster`, templates/configmap-instance.yaml).
HELM_RUN_MONITORING = {
    "enabled": "enabled",
    "start_timeout_seconds": "startTimeoutSeconds",
    "cancel_timeout_seconds": "cancelTimeoutSeconds",
    "max_resume_run_attempts": "maxResumeRunAttempts",
    "poll_interval_seconds": "pollIntervalSeconds",
}
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: nobody, user: {token: not-a-token}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
"""


@pytest.fixture
def prod_instance(monkeypatch: pytest.MonkeyPatch) -> dict:
    for name, value in {"DAGSTER_PG_HOST": "10.0.0.5", "DAGSTER_PG_USERNAME": "dagster",
                        "DAGSTER_PG_PASSWORD": "from-a-secret", "DAGSTER_PG_DB": "dagster",
                        "ARXIV_GCS_BUCKET": "arxiv-bucket", "DAGSTER_K8S_NAMESPACE": "dagster"}.items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(DEPLOY), "dagster-prod.yaml")  # validated by Dagster's schema
    return dict(config)


def test_prod_run_monitoring_fails_or_resumes_runs_whose_worker_died(prod_instance: dict, tmp_path: Path) -> None:
    monitoring = prod_instance["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["max_resume_run_attempts"] >= 1  # a preempted run worker is replaced, not the run lost
    assert 0 < monitoring["poll_interval_seconds"] <= 120
    assert monitoring["start_timeout_seconds"] >= 300  # a run worker may wait for a node and an image pull

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    entry = prod_instance["run_launcher"]
    launcher_class = class_from_code_pointer(entry["module"], entry["class"])
    checked = process_config(launcher_class.config_type(), entry["config"])
    assert checked.success, checked.errors
    launcher = launcher_class.from_config_value(
        None, {**checked.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)})
    assert launcher.supports_check_run_worker_health  # what lets the daemon see a dead run worker
    assert launcher.supports_resume_run  # what max_resume_run_attempts > 0 needs


def test_helm_values_render_the_prod_run_monitoring(prod_instance: dict) -> None:
    helm = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    daemon = helm["dagsterDaemon"]
    assert daemon["enabled"] is True  # run monitoring runs in the daemon
    rendered = {key: daemon["runMonitoring"][helm_key] for key, helm_key in HELM_RUN_MONITORING.items()
                if helm_key in daemon["runMonitoring"]}
    assert rendered == prod_instance["run_monitoring"]
