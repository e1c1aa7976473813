"""Run the migrations programmatically (`c360 migrate`, the tests and the bench use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic config for this package's migrations against `url`."""
    config = Config(str(HERE / "alembic.ini"))
    config.set_main_option("script_location", str(HERE))
    # Alembic reads the URL through ConfigParser interpolation: escape percent signs.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (blocking; run it off the event loop)."""
    command.upgrade(alembic_config(url), revision)
