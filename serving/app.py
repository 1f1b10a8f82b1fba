"""``create_app(settings)``: the FastAPI app, its lifespan (model manager, poller) and error mapping."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .batching import QueueFullError
from .engine import IndexUnavailableError, ModelManager, ModelUnavailableError
from .metrics import ServiceMetrics
from .routes import api_router
from .settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager = ModelManager(settings, metrics)
        app.state.manager = manager
        await manager.start()
        try:
            yield
        finally:
            await manager.stop()

    app = FastAPI(
        title="arXiv embeddings",
        summary="Embeddings, similarity and paper search from the newest arXiv model whose checks passed.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(api_router)

    @app.exception_handler(ModelUnavailableError)
    async def model_unavailable(request: Request, error: ModelUnavailableError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(error)}, headers={"Retry-After": "5"})

    @app.exception_handler(IndexUnavailableError)
    async def index_unavailable(request: Request, error: IndexUnavailableError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.exception_handler(QueueFullError)
    async def queue_full(request: Request, error: QueueFullError) -> JSONResponse:
        metrics.rejected.labels("queue_full").inc()
        return JSONResponse(status_code=429, content={"detail": str(error)}, headers={"Retry-After": "1"})

    @app.middleware("http")
    async def record_request(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")  # the template, so ids never become label values
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response

    return app
