"""The arXiv embeddings service: ``create_app(settings)``; run it with ``python -m serving``."""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
