"""The embedding service's Kubernetes manifests (deploy/k8s/serving) and its slim install.

Every manifest is validated offline against the Kubernetes API schemas of a pinned version
(kubernetes-validate, strict: an unknown or misspelt field fails) and linted with checkov, which
runs from a venv of its own (`make tools`: its pins clash with the project's); a checkov finding
fails the test unless the manifest suppresses it with a `checkov.io/skipN: CHECK_ID=reason`
annotation. The rest checks what the service needs from them: probes on /health and /ready, a
non-root read-only container, the release pointer from the ConfigMap, and an image that installs
the service without the pipeline.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from arxiv_assets_tests.conftest import PROJECT_ROOT
from serving.settings import Settings

MANIFESTS = PROJECT_ROOT / "deploy" / "k8s" / "serving"
# The oldest Kubernetes minor the manifests must be valid for (GKE's release channels offer it and
# newer); kubernetes-validate checks against the newest schema it ships that is not newer than this.
KUBERNETES_VERSION = "1.33.0"
CHECKOV = PROJECT_ROOT / ".venv-tools" / "bin" / "checkov"
# What the pipeline needs and the service must not install (issue 12: no Dagster, wandb or trainer).
PIPELINE_ONLY = {"dagster", "dagster-webserver", "dagster-gcp", "dagster-k8s", "dagster-postgres", "wandb",
                 "datasets", "accelerate", "matplotlib"}


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization() -> dict[str, Any]:
    (kustomization,) = _load(MANIFESTS / "kustomization.yaml")
    return kustomization


def _resources() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every resource of every file the kustomization lists."""
    return [(name, doc) for name in _kustomization()["resources"] for doc in _load(MANIFESTS / name)]


def _one(kind: str) -> dict[str, Any]:
    (resource,) = [doc for _, doc in _resources() if doc["kind"] == kind]
    return resource


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _dockerfile() -> str:
    return (PROJECT_ROOT / "Dockerfile").read_text()


def _dockerfile_stages() -> dict[str, str]:
    """Stage name -> its text, from its FROM line to the next."""
    text = _dockerfile()
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"^FROM \S+ AS (\w+)$", text, re.M)]
    ends = [start for start, _ in starts[1:]] + [len(text)]
    return {name: text[start:end] for (start, name), end in zip(starts, ends, strict=True)}


# -- the files -----------------------------------------------------------------------------------

def test_kustomization_lists_every_manifest_in_one_namespace():
    kustomization = _kustomization()
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    namespace = kustomization["namespace"]
    for name, resource in _resources():
        if resource["kind"] == "Namespace":
            assert resource["metadata"]["name"] == namespace
        else:
            assert resource["metadata"]["namespace"] == namespace, name  # checkov reads the raw files
    kinds = sorted(doc["kind"] for _, doc in _resources())
    assert kinds == sorted(["Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service",
                            "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"])


@pytest.mark.parametrize(("name", "resource"), _resources(),
                         ids=[f"{name}:{doc['kind']}" for name, doc in _resources()])
def test_manifest_is_valid_for_the_kubernetes_api(name: str, resource: dict[str, Any]):
    validated = kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    assert validated == KUBERNETES_VERSION.rsplit(".", 1)[0]


def test_strict_validation_rejects_a_misspelt_field():
    """What makes the test above worth having: strict schemas reject fields Kubernetes would drop."""
    deployment = copy.deepcopy(_one("Deployment"))
    container = _container(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# -- checkov ---------------------------------------------------------------------------------------

def _checkov(directory: Path) -> tuple[int, dict[str, Any]]:
    if not CHECKOV.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} is missing: `make test` must run `make tools` first")
        pytest.skip(f"checkov is not installed at {CHECKOV.relative_to(PROJECT_ROOT)}: run `make tools`")
    result = subprocess.run(
        [str(CHECKOV), "--directory", str(directory), "--framework", "kubernetes", "--output", "json",
         "--skip-download"],
        capture_output=True, text=True, timeout=300, cwd=directory)
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict) and report["check_type"] == "kubernetes", report
    return result.returncode, report


@pytest.fixture(scope="module")
def checkov_report() -> tuple[int, dict[str, Any]]:
    return _checkov(MANIFESTS)


def test_checkov_finds_nothing_but_reasoned_skips(checkov_report):
    returncode, report = checkov_report
    failed = [(check["check_id"], check["check_name"], check["resource"])
              for check in report["results"]["failed_checks"]]
    assert failed == []
    assert returncode == 0
    assert report["summary"]["parsing_errors"] == 0
    checked = {check["resource"].split(".")[0] for check in report["results"]["passed_checks"]}
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap"} <= checked
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason) > 40 and reason != "No comment provided", skipped["check_id"]


def test_checkov_flags_a_weakened_deployment(tmp_path: Path):
    """The lint is live: a writable root filesystem and a missing liveness probe are findings."""
    for name in _kustomization()["resources"]:
        shutil.copy(MANIFESTS / name, tmp_path / name)
    deployment = copy.deepcopy(_one("Deployment"))
    container = _container(deployment)
    container["securityContext"]["readOnlyRootFilesystem"] = False
    del container["livenessProbe"]
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    returncode, report = _checkov(tmp_path)
    failed = {check["check_id"] for check in report["results"]["failed_checks"]}
    assert {"CKV_K8S_22", "CKV_K8S_8"} <= failed  # read-only root filesystem; liveness probe
    assert returncode != 0


# -- what the service needs from them ------------------------------------------------------------

def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def test_probes_ask_health_for_liveness_and_ready_for_readiness():
    container = _container(_one("Deployment"))
    image_port = int(re.search(r"ARXIV_SERVING_PORT=(\d+)", _dockerfile()).group(1))
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    assert probes["readiness"]["path"] == "/ready"
    assert probes["liveness"]["path"] == probes["startup"]["path"] == "/health"
    assert {_port_number(container, probe["port"]) for probe in probes.values()} == {image_port}
    startup = container["startupProbe"]
    # The first load downloads the release and measures every backend: minutes, not seconds.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_container_runs_as_the_images_non_root_user_on_a_read_only_root():
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    image_uid = int(re.search(r"^USER (\d+)", _dockerfile(), re.M).group(1))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == container["securityContext"]["runAsUser"] == image_uid
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # What the process writes lives on emptyDirs: /tmp (downloaded releases) and HF_HOME's cache.
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    mounts = {mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] in empty_dirs}
    hf_home = re.search(r"HF_HOME=(\S+)", _dockerfile()).group(1)
    assert "/tmp" in mounts
    assert any(hf_home.startswith(mount.rstrip("/") + "/") for mount in mounts), (hf_home, mounts)
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


def test_env_reads_the_release_pointer_and_the_optional_token_by_reference():
    container = _container(_one("Deployment"))
    config_map = _one("ConfigMap")
    env = {entry["name"]: entry for entry in container["env"]}

    pointer = env["ARXIV_SERVING_RELEASES_URI"]["valueFrom"]["configMapKeyRef"]
    assert pointer["name"] == config_map["metadata"]["name"]
    assert re.fullmatch(r"gs://[^/]+/.+/releases", config_map["data"][pointer["key"]])

    token = env["ARXIV_SERVING_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["optional"] is True  # the service runs without a token when the Secret is absent
    assert not any("value" in entry for name, entry in env.items() if "TOKEN" in name)

    # Every ARXIV_SERVING_* name is a setting the service reads (a renamed setting fails here).
    prefix = Settings.model_config["env_prefix"]
    known = {prefix + field.upper() for field in Settings.model_fields}
    names = {name for name in env if name.startswith(prefix)} | set(config_map["data"])
    assert names <= known, names - known
    for name, entry in env.items():
        ref = entry.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            assert ref["key"] in config_map["data"], name


def test_service_reads_the_releases_the_pipeline_writes():
    """The pipeline's prod releases root is gs://$ARXIV_GCS_BUCKET/$ARXIV_GCS_PREFIX/releases
    (``GCSReleases``), with the bucket and prefix of the Helm values' ConfigMap."""
    helm = yaml.safe_load((PROJECT_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    (pipeline_env,) = [manifest["data"] for manifest in helm["dagster-user-deployments"]["extraManifests"]
                       if manifest["kind"] == "ConfigMap"]
    expected = f"gs://{pipeline_env['ARXIV_GCS_BUCKET']}/{pipeline_env['ARXIV_GCS_PREFIX']}/releases"
    assert _one("ConfigMap")["data"]["ARXIV_SERVING_RELEASES_URI"] == expected


def test_service_autoscaler_and_budget_select_the_deployments_pods():
    deployment = _one("Deployment")
    container = _container(deployment)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count

    service = _one("Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80 and _port_number(container, port["targetPort"]) == 8000

    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["spec"]["minReplicas"] >= 2

    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]  # a drain never takes every pod

    policy = _one("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    (rule,) = policy["spec"]["ingress"]
    assert [_port_number(container, p["port"]) for p in rule["ports"]] == [8000]


def test_pods_act_as_the_read_only_google_service_account():
    account = _one("ServiceAccount")
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    google_account = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]@PROJECT_ID\.iam\.gserviceaccount\.com", google_account)
    assert pod["automountServiceAccountToken"] is False  # Workload Identity needs no Kubernetes API token


# -- the slim install --------------------------------------------------------------------------------

def test_serving_image_installs_only_the_serving_extra():
    stages = _dockerfile_stages()

    def installed_from(stage: str) -> str:
        (source,) = re.findall(r"^COPY --from=(\w+) /opt/venv /opt/venv$", stages[stage], re.M)
        (extras,) = re.findall(r'-c constraints\.txt "\.\[([\w,]+)\]"', stages[source])
        return extras

    assert installed_from("serving") == "serving"
    assert set(installed_from("dagster").split(",")) == {"pipeline", "serving", "prod"}
    assert "DAGSTER_HOME" not in stages["serving"] + stages["runtime"]


def _closure(requirements: Iterable[str]) -> set[str]:
    """Every distribution that installing ``requirements`` brings in, read from the installed metadata."""
    seen: set[str] = set()
    pending = [Requirement(text) for text in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        try:
            dependencies = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: a platform-specific dependency (its marker was false)
        for text in dependencies:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""}):
                pending.append(dependency)
    return {name for name, _ in seen}


def _project_requirements(*extras: str) -> list[str]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [text for extra in extras for text in project["optional-dependencies"][extra]]


def test_serving_extra_installs_no_pipeline_package():
    serving = _closure(_project_requirements("serving"))
    assert {"torch", "sentence-transformers", "onnxruntime", "faiss-cpu", "gcsfs", "fastapi", "uvicorn"} <= serving
    assert serving & PIPELINE_ONLY == set()
    pipeline = _closure(_project_requirements("pipeline", "prod"))
    assert pipeline >= PIPELINE_ONLY  # the same walk does find them where they belong
