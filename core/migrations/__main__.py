"""`python -m core.migrations`: migrates DATABASE_URL to the latest schema (`make migrate`).

`python -m core.migrations revision MESSAGE` writes the next migration into versions/: the
difference between the models and the latest schema, built in a scratch SQLite database.
Read it before committing (autogenerate misses renames and CHECK constraints).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from alembic import command

from core import migrations
from core.config import get_settings
from core.db import make_engine, migrate


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m core.migrations")
    commands = parser.add_subparsers(dest="command")
    revision = commands.add_parser("revision", help="write the next migration from the models")
    revision.add_argument("message")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command != "revision":
        engine = make_engine(get_settings().database_url)
        migrate(engine)
        print(f"{engine.url.render_as_string(hide_password=True)}: at the latest migration")
        engine.dispose()
        return
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        migrate(engine)
        with engine.begin() as conn:
            command.revision(migrations.config(conn), args.message, autogenerate=True)
        engine.dispose()


if __name__ == "__main__":
    main()
