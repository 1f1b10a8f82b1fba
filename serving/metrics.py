"""Prometheus metrics of one app, in the app's own registry (two apps in one process never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "arxiv_serving"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram(f"{PREFIX}_request_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.texts = Counter(f"{PREFIX}_texts_embedded", "Texts embedded", registry=r)
        self.tokens = Counter(f"{PREFIX}_tokens_embedded", "Tokens embedded (after truncation)", registry=r)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "Texts per forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.batch_seconds = Histogram(f"{PREFIX}_batch_seconds", "Seconds per forward pass",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_texts = Gauge(f"{PREFIX}_queue_texts", "Texts accepted and not yet embedded", registry=r)
        self.rejected = Counter(f"{PREFIX}_rejected", "Requests refused", ["reason"], registry=r)
        self.reloads = Counter(f"{PREFIX}_reloads", "Model reload attempts by outcome", ["outcome"], registry=r)
        self.model = Info(f"{PREFIX}_model", "The model being served", registry=r)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
