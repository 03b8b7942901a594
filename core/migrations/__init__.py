"""The shop's database schema as Alembic migrations (`env.py`, `versions/`).

`core.db.migrate` runs them at every process's start; `make migrate` runs them alone;
`python -m core.migrations revision MESSAGE` writes the next one from the models.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from alembic.config import Config
from sqlalchemy import Connection, MetaData
from sqlmodel import SQLModel

# Alembic names its dialect at every start of every process: noise. core.db.migrate logs
# when it changed the schema.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

# Every module that defines tables: each service's and the order read model.
MODEL_MODULES = (
    "services.user.models",
    "services.product.models",
    "services.inventory.models",
    "services.payment.models",
    "services.notification.models",
    "orders.models",
)


def metadata() -> MetaData:
    """SQLModel's MetaData with every table of the shop on it: what the migrations build."""
    for name in MODEL_MODULES:
        importlib.import_module(name)  # defining a table registers it on SQLModel.metadata
    return SQLModel.metadata


def config(connection: Connection) -> Config:
    """Alembic's configuration, built in code (no alembic.ini, any working directory), for
    `env.py` to migrate over `connection`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent))
    cfg.attributes["connection"] = connection
    return cfg
