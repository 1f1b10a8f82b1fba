"""The deployment files: the prod instance, the Helm values, the Dockerfile.

The instance file is validated by Dagster's own loader and each configured class's own schema
(K8sRunLauncher, GCSComputeLogManager, QueuedRunCoordinator); the Helm values are checked against
the instance they must render and against the code (module, env vars); the Dockerfile is linted
by hadolint and checked against the project's pins.
"""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import class_from_code_pointer

from arxiv_assets.deployments import GCS_BUCKET_ENV_VAR, GCS_PREFIX_ENV_VAR
from arxiv_assets_tests.conftest import PROJECT_ROOT, VENV_BIN

DEPLOY = PROJECT_ROOT / "deploy"
PROD_ENV = {
    "DAGSTER_PG_HOST": "10.0.0.5", "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "from-a-secret",
    "DAGSTER_PG_DB": "dagster", GCS_BUCKET_ENV_VAR: "arxiv-bucket", "DAGSTER_K8S_NAMESPACE": "dagster",
}


@pytest.fixture
def instance_config(monkeypatch: pytest.MonkeyPatch) -> dict:
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    config, custom_class = dagster_instance_config(str(DEPLOY), "dagster-prod.yaml")
    assert custom_class is None
    return dict(config)


@pytest.fixture(scope="module")
def helm_values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def _env_refs(node) -> set[str]:
    """Every ``{env: NAME}`` in a parsed YAML tree."""
    if isinstance(node, dict):
        refs = {node["env"]} if set(node) == {"env"} else set()
        return refs.union(*(_env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node))
    return set()


def test_prod_instance_is_valid_for_dagster(instance_config):
    assert set(instance_config["storage"]) == {"postgres"}
    for section, expected in [("run_launcher", "K8sRunLauncher"), ("compute_logs", "GCSComputeLogManager"),
                              ("run_coordinator", "QueuedRunCoordinator")]:
        entry = instance_config[section]
        cls = class_from_code_pointer(entry["module"], entry["class"])
        assert cls.__name__ == expected
        checked = process_config(cls.config_type(), entry["config"])
        assert checked.success, (section, checked.errors)
    compute_logs = process_config(
        class_from_code_pointer("dagster_gcp.gcs.compute_log_manager", "GCSComputeLogManager").config_type(),
        instance_config["compute_logs"]["config"]).value
    assert compute_logs["bucket"] == PROD_ENV[GCS_BUCKET_ENV_VAR]  # the artifact bucket, read from the env


def test_prod_instance_holds_no_secret():
    raw = yaml.safe_load((DEPLOY / "dagster-prod.yaml").read_text())
    assert raw["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert _env_refs(raw) == set(PROD_ENV)


def test_helm_values_render_the_same_instance(helm_values, instance_config):
    raw = yaml.safe_load((DEPLOY / "dagster-prod.yaml").read_text())
    launcher = helm_values["runLauncher"]
    assert launcher["type"] == raw["run_launcher"]["class"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    assert k8s["runK8sConfig"]["containerConfig"] == raw["run_launcher"]["config"]["run_k8s_config"]["container_config"]
    assert [c["name"] for c in k8s["envConfigMaps"]] == raw["run_launcher"]["config"]["env_config_maps"]

    logs = helm_values["computeLogManager"]
    assert logs["type"] == raw["compute_logs"]["class"] == "GCSComputeLogManager"
    gcs = logs["config"]["gcsComputeLogManager"]
    assert gcs["bucket"] == raw["compute_logs"]["config"]["bucket"] == {"env": GCS_BUCKET_ENV_VAR}
    assert gcs["prefix"] == raw["compute_logs"]["config"]["prefix"]

    queued = helm_values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == raw["run_coordinator"]["config"]["max_concurrent_runs"]
    assert helm_values["global"]["postgresqlSecretName"] == raw["run_launcher"]["config"]["postgres_password_secret"]
    assert helm_values["serviceAccount"]["name"] == raw["run_launcher"]["config"]["service_account_name"]
    assert helm_values["postgresql"]["enabled"] is False
    assert "postgresqlPassword" not in helm_values["postgresql"]
    assert helm_values["generatePostgresqlPasswordSecret"] is False


def test_helm_code_location_runs_this_project_in_prod(helm_values):
    user = helm_values["dagster-user-deployments"]
    (deployment,) = user["deployments"]
    module = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    args = deployment["codeServerArgs"]
    assert args[args.index("--module-name") + 1] == module
    assert "dagsterApiGrpcArgs" not in deployment  # `dagster code-server start`, not `dagster api grpc`
    (config_map,) = [m for m in user["extraManifests"] if m["kind"] == "ConfigMap"]
    env = config_map["data"]
    assert env["DAGSTER_DEPLOYMENT"] == "prod"
    assert {GCS_BUCKET_ENV_VAR, GCS_PREFIX_ENV_VAR} <= set(env)
    # Every env var the instance reads is set: the ConfigMap, or the chart itself (Postgres settings).
    raw = yaml.safe_load((DEPLOY / "dagster-prod.yaml").read_text())
    assert _env_refs(raw) - set(env) == {"DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD",
                                         "DAGSTER_PG_DB"}
    for consumer in (deployment, helm_values["dagsterWebserver"], helm_values["dagsterDaemon"]):
        assert {"name": config_map["metadata"]["name"]} in consumer["envConfigMaps"]


def test_dockerfile_is_hadolint_clean():
    hadolint = VENV_BIN / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(PROJECT_ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_pins_torch_and_runs_both_programs_as_non_root():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    makefile_pin = re.search(r"pip install --quiet torch==([\w.]+)", (PROJECT_ROOT / "Makefile").read_text()).group(1)
    constraints_pin = re.search(r"^torch==([\w.]+)$", (PROJECT_ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert re.search(r"^ARG TORCH_VERSION=(.+)$", dockerfile, re.M).group(1) == makefile_pin == constraints_pin
    torch_line = dockerfile.index('"torch==${TORCH_VERSION}"')
    assert torch_line < dockerfile.index("-c constraints.txt")  # torch first, the rest after
    stages = {name: base for base, name in re.findall(r"^FROM (\S+) AS (\w+)$", dockerfile, re.M)}
    assert stages["dagster"] == stages["serving"] == "runtime"
    runtime = dockerfile[dockerfile.index("AS runtime"):dockerfile.index("AS dagster")]
    assert re.search(r"^USER 10001", runtime, re.M)
    assert '"dagster", "code-server", "start"' in dockerfile and '"arxiv_assets.definitions"' in dockerfile
    assert 'CMD ["python", "-m", "serving"]' in dockerfile


def test_dockerignore_lets_in_only_what_the_build_copies():
    lines = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(line.split()[1:-1])
    assert copied == allowed
