# One image definition, two programs, two accelerators:
#
#   docker build --target dagster -t arxiv-embeddings:cpu .                                (code server, runs, steps)
#   docker build --target dagster --build-arg TORCH_VARIANT=cuda -t arxiv-embeddings:cuda .  (GPU node pool)
#   docker build --target serving -t arxiv-serving:cpu .                                   (python -m serving)
#
# TORCH_VARIANT=cpu installs torch from PyTorch's CPU index (about 200 MB); cuda installs PyPI's Linux
# wheel, which bundles the CUDA runtime libraries (the GKE node supplies only the driver). torch goes
# in first and pinned, so nothing later can pull another build of it.
#
# The two programs install different extras of the same package (pyproject.toml): `dagster` gets
# `.[pipeline,serving,prod]` (Dagster, the trainer, wandb, Postgres storage), `serving` only
# `.[serving]` (the embedding service and what it imports: no Dagster, no wandb, no trainer).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN case "${TORCH_VARIANT}" in \
      cpu) pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu ;; \
      cuda) pip install --no-cache-dir "torch==${TORCH_VERSION}" ;; \
      *) echo "TORCH_VARIANT must be cpu or cuda, got ${TORCH_VARIANT}" >&2; exit 1 ;; \
    esac
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY arxiv_assets ./arxiv_assets
COPY serving ./serving

# Everything else at the versions CI tested (constraints.txt). The service's environment:
FROM builder AS serving_env
RUN pip install --no-cache-dir -c constraints.txt ".[serving]"

# The pipeline's: the asset graph and Postgres instance storage, plus the service's extra so that any
# command of the project runs from this image; and the Dagster home and working directory, made here
# so that the runtime stage needs no root step of its own.
FROM builder AS pipeline_env
RUN pip install --no-cache-dir -c constraints.txt ".[pipeline,serving,prod]" \
    && mkdir -p /opt/dagster/dagster_home /opt/dagster/app

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app
# GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT: the artifact bucket is a standard one; skip gcsfs' per-call probe
# of the storage-layout API (it needs an extra IAM permission and only adds latency).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/home/app/.cache/huggingface \
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false
WORKDIR /home/app
USER 10001:10001

# The code location of the Helm user deployment; K8sRunLauncher and k8s_job_executor start run and
# step pods from this same image (`dagster api execute_run` / `execute_step`).
FROM runtime AS dagster
COPY --from=pipeline_env /opt/venv /opt/venv
COPY --from=pipeline_env --chown=10001:10001 /opt/dagster /opt/dagster
ENV DAGSTER_HOME=/opt/dagster/dagster_home \
    DAGSTER_DEPLOYMENT=prod
WORKDIR /opt/dagster/app
EXPOSE 3030
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "3030", \
     "--module-name", "arxiv_assets.definitions", "--location-name", "arxiv_assets"]

# The embedding service: serves the release that releases/CURRENT names under
# ARXIV_SERVING_RELEASES_URI (a local path or gs://BUCKET/PREFIX/releases) and follows the pointer
# when it moves (a new release or a rollback). It reads nothing else: no Dagster instance.
# Kubernetes manifests: deploy/k8s/serving.
FROM runtime AS serving
COPY --from=serving_env /opt/venv /opt/venv
ENV ARXIV_SERVING_HOST=0.0.0.0 \
    ARXIV_SERVING_PORT=8000
EXPOSE 8000
CMD ["python", "-m", "serving"]
