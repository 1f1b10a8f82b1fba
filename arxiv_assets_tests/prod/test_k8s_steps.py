"""Each step's Kubernetes Job, built by dagster-k8s's own code from the real execution plan of ``defs``.

``K8sStepHandler.launch_step`` merges the executor's ``step_k8s_config`` with the step's
``dagster-k8s/config`` op tags (``get_user_defined_k8s_config``) and hands the result to
``construct_dagster_k8s_job``; this test takes the same path for every step of the asset job, so it
covers whatever assets ``defs`` holds. The GPU request, the GKE accelerator node selector, the GPU
toleration, ``ARXIV_REQUIRE_CUDA=1`` and the CUDA image (``ARXIV_CUDA_IMAGE``, read when the definitions
load) must appear on exactly the GPU steps, and never on a CPU step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.execution.api import create_execution_plan
from dagster_k8s import k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)
from kubernetes.client import ApiClient

from arxiv_assets.definitions import ALL_ASSETS, defs
from arxiv_assets.deployments import executor_for, resources_for
from arxiv_assets.k8s import (
    CUDA_IMAGE,
    CUDA_IMAGE_ENV_VAR,
    GKE_ACCELERATOR,
    GKE_ACCELERATOR_LABEL,
    GPU_RESOURCE,
    K8S_EXECUTOR_CONFIG,
)
from arxiv_assets.ml.hardware import REQUIRE_CUDA_ENV_VAR
from arxiv_assets_tests.conftest import PROJECT_ROOT

GPU_ASSETS = {"model"}  # the assets that train; everything else is CPU work
IMAGE = "europe-docker.pkg.dev/example/arxiv/arxiv-embeddings:test"  # the code location's (CPU) image
CUDA_TEST_IMAGE = "europe-docker.pkg.dev/example/arxiv/arxiv-embeddings-cuda:test"


def _step_jobs() -> dict[str, dict]:
    """``{step key: the V1Job the k8s executor would create, as the JSON sent to the API server}``."""
    job_def = defs.resolve_implicit_global_asset_job_def()
    plan = create_execution_plan(job_def)
    executor_context = K8sContainerContext(
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(K8S_EXECUTOR_CONFIG["step_k8s_config"]))
    job_config = DagsterK8sJobConfig(job_image=IMAGE, dagster_home="/opt/dagster/dagster_home",
                                     instance_config_map="dagster-instance")
    jobs = {}
    for step in plan.steps:
        context = executor_context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step.tags)))
        name = f"dagster-step-{get_k8s_job_name('0123abcd-run', step.key)}"
        manifest = construct_dagster_k8s_job(
            job_config=job_config, args=["dagster", "api", "execute_step"], job_name=name, pod_name=name,
            component="step_worker", user_defined_k8s_config=context.run_k8s_config,
            labels={"dagster/op": step.key},
        )
        jobs[step.key] = ApiClient().sanitize_for_serialization(manifest)
    return jobs


@pytest.fixture(scope="module")
def step_jobs() -> dict[str, dict]:
    return _step_jobs()


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def test_every_asset_has_a_step(step_jobs):
    op_names = {node.name for node in defs.resolve_implicit_global_asset_job_def().nodes}
    assert set(step_jobs) == op_names
    assert set(step_jobs) >= GPU_ASSETS


def test_gpu_request_node_selector_and_toleration_only_on_gpu_steps(step_jobs):
    for step, job in step_jobs.items():
        pod = _pod(job)
        (container,) = pod["containers"]
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        tolerations = pod.get("tolerations") or []
        node_selector = pod.get("nodeSelector") or {}
        if step in GPU_ASSETS:
            assert limits[GPU_RESOURCE] == "1" and requests[GPU_RESOURCE] == "1", step
            assert node_selector == {GKE_ACCELERATOR_LABEL: GKE_ACCELERATOR}
            assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in tolerations
            assert float(requests["cpu"]) >= 2  # the GPU step's own size overrides the CPU default
        else:
            assert GPU_RESOURCE not in requests and GPU_RESOURCE not in limits, step
            assert GKE_ACCELERATOR_LABEL not in node_selector, step
            assert not any(t.get("key") == GPU_RESOURCE for t in tolerations), step
            # the executor's CPU default reaches every other step
            assert requests == K8S_EXECUTOR_CONFIG["step_k8s_config"]["container_config"]["resources"]["requests"]
        env = {var["name"]: var.get("value") for var in container.get("env") or []}
        if step in GPU_ASSETS:
            assert env[REQUIRE_CUDA_ENV_VAR] == "1", step  # no CUDA in this pod -> the step fails, saying so
            assert container["image"] == (CUDA_IMAGE or IMAGE), step  # unset: the code location's image
        else:
            assert REQUIRE_CUDA_ENV_VAR not in env, step
            assert container["image"] == IMAGE, step
        assert job["metadata"]["labels"]["dagster/op"] == step


def test_tags_are_on_the_op_not_the_job():
    """Asset-level op tags survive UI launches, backfills and automation; job-level tags do not."""
    model_def = next(a for a in ALL_ASSETS if dg.AssetKey("model") in a.keys)
    assert "dagster-k8s/config" in model_def.op.tags
    assert not any(key.startswith("dagster-k8s") for key in defs.resolve_implicit_global_asset_job_def().tags)


def test_prod_executor_is_step_level_k8s_and_its_config_is_valid():
    executor = executor_for("prod")
    assert executor.name == "k8s_job_executor"
    checked = process_config(k8s_job_executor.config_schema.config_type, K8S_EXECUTOR_CONFIG)
    assert checked.success, checked.errors
    # A prod code location accepts it (Definitions validates executor and resources together).
    prod_defs = dg.Definitions(assets=ALL_ASSETS, resources=resources_for("prod"), executor=executor)
    assert prod_defs.resolve_implicit_global_asset_job_def().executor_def.name == "k8s_job_executor"


def test_gpu_steps_run_the_cuda_image_named_when_the_definitions_load():
    """``ARXIV_CUDA_IMAGE`` is read when the code location loads: a fresh interpreter with it set builds the
    step Jobs again, and only the GPU steps change image (and keep ``ARXIV_REQUIRE_CUDA=1``)."""
    script = (
        "import json\n"
        "from arxiv_assets_tests.prod.test_k8s_steps import _step_jobs\n"
        "containers = {step: job['spec']['template']['spec']['containers'][0] for step, job in _step_jobs().items()}\n"
        "print(json.dumps({step: {'image': c['image'], 'env': {v['name']: v.get('value') for v in c.get('env') or []}}"
        " for step, c in containers.items()}))\n"
    )
    env = {**os.environ, CUDA_IMAGE_ENV_VAR: CUDA_TEST_IMAGE}
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    containers = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(containers) >= GPU_ASSETS
    for step, container in containers.items():
        if step in GPU_ASSETS:
            assert container["image"] == CUDA_TEST_IMAGE, step
            assert container["env"][REQUIRE_CUDA_ENV_VAR] == "1", step
        else:
            assert container["image"] == IMAGE, step
            assert REQUIRE_CUDA_ENV_VAR not in container["env"], step


def test_helm_values_name_a_cuda_image_of_the_release_for_gpu_steps():
    """The ConfigMap every pod reads sets ARXIV_CUDA_IMAGE: the code location's repository and tag, CUDA build."""
    helm = yaml.safe_load((PROJECT_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    user = helm["dagster-user-deployments"]
    (deployment,) = user["deployments"]
    (config_map,) = [m for m in user["extraManifests"] if m["kind"] == "ConfigMap"]
    image = deployment["image"]
    assert config_map["data"][CUDA_IMAGE_ENV_VAR] == f"{image['repository']}-cuda:{image['tag']}"
    assert {"name": config_map["metadata"]["name"]} in deployment["envConfigMaps"]  # read when definitions load
