"""``python -m serving`` (or ``arxiv-serve``): the service under uvicorn, configured by ARXIV_SERVING_* variables."""

from __future__ import annotations

import logging


def main() -> None:
    import uvicorn

    from .app import create_app
    from .settings import Settings

    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One process: the model lives in it, and the batcher is what uses the cores.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                workers=1)


if __name__ == "__main__":
    main()
