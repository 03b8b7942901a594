"""`python -m api`: the REST API on API_HOST:API_PORT (uvicorn handles SIGTERM gracefully)."""

from __future__ import annotations

import uvicorn

from api.main import create_app
from core import telemetry
from core.config import get_settings


def main() -> None:
    settings = get_settings()
    telemetry.setup(telemetry.API, settings)
    uvicorn.run(
        create_app(settings, freeze_gc=True),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
        # JSON logs: uvicorn's loggers go to the root handler (core.telemetry) too.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )


if __name__ == "__main__":
    main()
