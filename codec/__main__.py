"""`python -m codec`: the codec server on CODEC_HOST:CODEC_PORT (uvicorn handles SIGTERM)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from codec.app import create_app
from core.codec import PayloadKeyError
from core.config import get_settings
from core.secrets import SecretFileError


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(settings)
    except (PayloadKeyError, SecretFileError) as err:
        sys.exit(f"codec: {err}")
    uvicorn.run(
        app,
        host=settings.codec_host,
        port=settings.codec_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
