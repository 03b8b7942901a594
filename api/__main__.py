"""`python -m api`: the REST API on API_HOST:API_PORT (uvicorn handles SIGTERM gracefully)."""

from __future__ import annotations

import logging

import uvicorn

from api.main import create_app
from core.config import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings, freeze_gc=True),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
