"""Every setting of the service, in one place, read from ``ARXIV_SERVING_*`` environment variables."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from arxiv_assets.storage.releases import default_releases_uri

# The bar that admits OpenVINO static int8 of a fine-tuned release and keeps ONNX Runtime dynamic int8 out
# (Settings.min_cosine_reduced says why).
FINE_TUNED_MIN_COSINE_REDUCED = 0.994

BackendName = Literal["auto", "openvino-int8", "openvino-bf16", "openvino-fp32", "onnx-int8", "onnx-fp32", "torch-fp32",
                      "torch-bf16", "torch-fp16"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARXIV_SERVING_", env_file=None, extra="ignore")

    # -- where the model comes from ----------------------------------------------------------
    releases_uri: str = Field(
        default_factory=default_releases_uri,
        description="The releases folder (local path or gs://bucket/prefix/releases); its CURRENT names the release "
                    "served. Default: $ARXIV_ARTIFACTS_URI/releases, else $DAGSTER_HOME/artifacts/releases.",
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for gs:// URIs.")
    # Each gs:// release is downloaded once (~250 MB: the model with its ONNX exports, and the index); a pod
    # that lives through many releases would keep them all.
    cache_min_age_s: float = Field(default=600.0, ge=0, description="After a new release is loaded, cached "
                                   "downloads of other releases older than this are deleted "
                                   "(ARXIV_ARTIFACT_CACHE_DIR); younger ones may be another process's.")
    poll_interval_s: float = Field(default=60.0, ge=0, description="How often to read CURRENT for a new release "
                                   "(or a rollback); 0 turns polling off (POST /admin/reload still works).")
    wait_for_model_on_startup: bool = Field(default=False, description="Block startup until the first load "
                                            "finishes (otherwise /health is up at once and /ready says loading).")

    # -- how it runs ---------------------------------------------------------------------------
    backend: BackendName = Field(default="auto", description="auto: measured at load on the probe texts; the clearly "
                                 "fastest (> 10%) backend whose embeddings match PyTorch fp32, else the more "
                                 "precise of those within 10% (serving.backends.decide); or pin one.")
    threads: int | None = Field(default=None, ge=1, description="Intra-op threads for inference; unset: 1 and "
                                "all cores are both measured at load and the faster is kept.")
    # 8 texts picked torch-fp32 in one start and onnx-int8 in the next on the same quiet machine
    # (benchmarks/RESULTS.md, 2026-11-25): one 8-text batch is too noisy to rank backends by.
    probe_texts: int = Field(default=32, ge=1, description="Real arXiv texts used to measure backends at load.")
    # One timed batch per candidate picked onnx-int8 in one start and torch-bf16 in the next, minutes apart
    # (issue 13); after a warm-up, the best of 3 interleaved rounds is steady (benchmarks/backend_choice.py).
    backend_rounds: int = Field(default=3, ge=1, description="Timed rounds per (backend, threads) at load, after "
                                "a warm-up; the best round counts.")
    min_cosine_fp32: float = 0.999
    # None chooses by what the release serves. A fine-tuned model (the default recipe's soup): 0.994, which admits
    # OpenVINO's static int8 (min cosine 0.994-0.996 to fp32 on the soups measured) and not ONNX Runtime's dynamic
    # int8 (0.992): on every slice the static int8 kept the soup above the untrained base's point estimates on every
    # retrieval figure, while the dynamic one lost 0.4 unseen-subject P@10 to the same model in fp32, paired 95 %
    # interval excluding zero (benchmarks/RESULTS.md "int8 of the soup", 2026-12-03). The untrained base (a release
    # whose gates all failed): fp32's bar, since any int8 of the base is below the base (title search -0.4 MRR@10,
    # "What the service sends").
    min_cosine_reduced: float | None = Field(default=None, description="Parity bar at load for reduced precision "
                                             "(bf16, fp16, int8): min cosine to PyTorch fp32 on the probe texts. "
                                             "Unset: 0.994 for a fine-tuned release, min_cosine_fp32 for the base; "
                                             "0.98 admits every int8, 0.999 none.")
    # A flat index of 1M papers is 1.5 GB of float vectors, IVF-PQ's float re-ranking copy as much (docs/scale.md).
    index_mmap: bool = Field(default=False, description="Memory-map the index's float vectors from the release's "
                             "file instead of reading them into memory: file pages, read as searches touch them, "
                             "shared between processes and reclaimable by the kernel.")
    served_model_name: str = Field(default="arxiv-embeddings", description="The `model` of the OpenAI API.")
    # One model is served, so a client's `model` (an OpenAI name, a Hugging Face id, none) is no reason to fail its
    # request: text-embeddings-inference answers any. Strict is for a router that sends each model's traffic here.
    strict_model_name: bool = Field(default=False, description="Refuse (404) a /v1/embeddings `model` other than "
                                    "served_model_name; off: any `model`, or none, gets the served model.")

    # -- batching and back-pressure ------------------------------------------------------------
    max_batch_size: int = Field(default=32, ge=1)
    max_batch_tokens: int = Field(default=8192, ge=1, description="Padded tokens per batch (size x longest).")
    batch_wait_ms: float = Field(default=5.0, ge=0, description="How long a batch waits for more texts.")
    max_queue_texts: int = Field(default=4096, ge=1, description="Texts waiting; beyond this requests get 429.")

    # -- request limits ------------------------------------------------------------------------
    # OpenAI's own per-request limit for embeddings inputs, so a client written for it never hits ours.
    max_texts: int = Field(default=2048, ge=1, description="Texts (or documents) per request.")
    max_chars: int = Field(default=20_000, ge=1, description="Characters per text.")
    max_k: int = Field(default=100, ge=1, description="Largest k of /search and /find_similar.")

    # -- access --------------------------------------------------------------------------------
    api_token: SecretStr | None = Field(default=None, description="If set, every endpoint but /health and /ready needs "
                                        "`Authorization: Bearer <token>`.")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"

    def reduced_precision_bar(self, decision: str) -> float:
        """The parity bar for reduced precision when serving a release of ``decision`` (challenger | champion |
        base): the setting when given, else by what the release serves (see ``min_cosine_reduced``)."""
        if self.min_cosine_reduced is not None:
            return self.min_cosine_reduced
        return self.min_cosine_fp32 if decision == "base" else FINE_TUNED_MIN_COSINE_REDUCED

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Settings:
        if self.max_queue_texts <= self.max_texts:  # /find_similar queues the query plus max_texts documents
            raise ValueError(f"max_queue_texts ({self.max_queue_texts}) must exceed max_texts ({self.max_texts}), "
                             f"or a full-size request could never be queued")
        return self
