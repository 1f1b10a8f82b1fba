"""Every router, collected in one place; all but the probes (/health, /ready) need the bearer token when one is set."""

from fastapi import APIRouter, Depends

from ..dependencies import require_token
from . import admin, embeddings, health, metrics, openai, search

api_router = APIRouter()
api_router.include_router(health.router)  # /ready adds the token dependency itself
for module in (embeddings, search, openai, metrics, admin):
    api_router.include_router(module.router, dependencies=[Depends(require_token)])

__all__ = ["api_router"]
