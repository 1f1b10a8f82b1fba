"""Kubernetes settings of each step in production (GKE), defined once here.

In prod every asset runs as its own Kubernetes Job (``k8s_job_executor``), so each step can ask for
its own machine. The settings travel as **asset-level op tags** (``dagster-k8s/config``): job-level
tags are dropped for runs launched from the UI, by backfills and by automation (dagster issues
#22865, #26720, #33430), while op tags are read by the step executor for every run.

- ``GPU_STEP_TAGS``: one NVIDIA GPU on a GKE accelerator node pool (training). Put it on an asset
  with ``@dg.asset(op_tags=GPU_STEP_TAGS)``. The pod runs the CUDA image named by ``ARXIV_CUDA_IMAGE``
  (read when the definitions load; unset: the code location's image, which must then be the CUDA
  build) and sets ``ARXIV_REQUIRE_CUDA=1``, so a pod without working CUDA fails the step with an error
  that says why instead of training on the CPU (``arxiv_assets/ml/hardware.py::resolve_device``).
- ``CPU_STEP_K8S_CONFIG``: the default of every other step, applied by the executor; no GPU.
"""

import os
from typing import Any

from arxiv_assets.ml.hardware import REQUIRE_CUDA_ENV_VAR

K8S_CONFIG_TAG = "dagster-k8s/config"
ACCELERATOR_TAG = "arxiv/accelerator"
GPU_RESOURCE = "nvidia.com/gpu"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
# The GPU node pool's accelerator type (GKE labels its nodes with it): nvidia-l4, nvidia-tesla-t4, ...
GKE_ACCELERATOR = os.environ.get("ARXIV_GKE_ACCELERATOR", "nvidia-l4")
# The image of GPU steps: the `dagster` target built with TORCH_VARIANT=cuda (Dockerfile). The code
# location, the run worker and every CPU step keep the code location's (CPU) image.
CUDA_IMAGE_ENV_VAR = "ARXIV_CUDA_IMAGE"
CUDA_IMAGE: str | None = os.environ.get(CUDA_IMAGE_ENV_VAR) or None

# Every step without tags of its own: a small CPU pod, never a GPU.
CPU_STEP_K8S_CONFIG: dict[str, Any] = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "1", "memory": "4Gi"},
            "limits": {"memory": "8Gi"},
        },
    },
}

GPU_STEP_K8S_CONFIG: dict[str, Any] = {
    "container_config": {
        **({"image": CUDA_IMAGE} if CUDA_IMAGE else {}),
        # This pod was given a GPU: training must find CUDA or fail, never fall back to the CPU.
        "env": [{"name": REQUIRE_CUDA_ENV_VAR, "value": "1"}],
        "resources": {
            "requests": {"cpu": "4", "memory": "24Gi", GPU_RESOURCE: "1"},
            "limits": {"memory": "24Gi", GPU_RESOURCE: "1"},
        },
    },
    "pod_spec_config": {
        "node_selector": {GKE_ACCELERATOR_LABEL: GKE_ACCELERATOR},
        # GKE taints GPU nodes with nvidia.com/gpu=present:NoSchedule; only GPU steps tolerate it.
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    },
}

# Op tags for an asset that trains on a GPU: `@dg.asset(op_tags=GPU_STEP_TAGS)`.
GPU_STEP_TAGS: dict[str, Any] = {K8S_CONFIG_TAG: GPU_STEP_K8S_CONFIG, ACCELERATOR_TAG: "gpu"}

# `k8s_job_executor` config in prod: one Kubernetes Job per step; CPU defaults for every step;
# at most one GPU step at a time per run (the node pool autoscales, the budget does not).
K8S_EXECUTOR_CONFIG: dict[str, Any] = {
    "max_concurrent": 4,
    "tag_concurrency_limits": [{"key": ACCELERATOR_TAG, "value": "gpu", "limit": 1}],
    "step_k8s_config": CPU_STEP_K8S_CONFIG,
}
