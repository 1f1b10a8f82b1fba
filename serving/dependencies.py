"""What handlers need, as ``Annotated`` dependencies, and the checks every text goes through."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .engine import ModelManager
from .metrics import ServiceMetrics
from .settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_manager(request: Request) -> ModelManager:
    return request.app.state.manager


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
ManagerDep = Annotated[ModelManager, Depends(get_manager)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]

_bearer = HTTPBearer(auto_error=False, description="Needed when ARXIV_SERVING_API_TOKEN is set.")


def require_token(settings: SettingsDep,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Every endpoint but the probes (/health, /ready): ``Authorization: Bearer <ARXIV_SERVING_API_TOKEN>``
    when a token is set."""
    if settings.api_token is None:
        return
    expected = settings.api_token.get_secret_value().encode()
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


def check_texts(texts: Sequence[str], settings: Settings, field: str = "texts") -> list[str]:
    """422 for an empty list or blank texts, 413 for more texts or longer texts than the limits allow."""
    if len(texts) == 0:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{field} is empty: send at least one text")
    if len(texts) > settings.max_texts:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"{field} has {len(texts)} texts; the limit is {settings.max_texts} per request "
                            f"(ARXIV_SERVING_MAX_TEXTS)")
    for position, text in enumerate(texts):
        if not text.strip():
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"{field}[{position}] is empty or whitespace: every text needs content")
        if len(text) > settings.max_chars:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                f"{field}[{position}] has {len(text)} characters; the limit is {settings.max_chars} "
                                f"(ARXIV_SERVING_MAX_CHARS)")
    return list(texts)


def check_k(k: int, settings: Settings, field: str = "k") -> int:
    if k > settings.max_k:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{field} is {k}; the limit is {settings.max_k} (ARXIV_SERVING_MAX_K)")
    return k
