"""The composition root: the only place that builds adapters.

Two parts: :func:`wire` builds every use case from settings and adapters that are already
open (pure; tests and every shell use it), and :func:`bootstrap` opens the resources the
settings configure, wires them, and closes them on exit
(``async with bootstrap(settings) as app:``).
"""

from vpnshop.bootstrap.app import App, Storage
from vpnshop.bootstrap.resources import (
    SchemaOutOfDateError,
    bootstrap,
    database,
    open_engine,
    open_panel,
    open_storage,
    panel_adapter,
    prepare_database,
    remnawave_settings,
)
from vpnshop.bootstrap.wiring import wire

__all__ = [
    "App",
    "SchemaOutOfDateError",
    "Storage",
    "bootstrap",
    "database",
    "open_engine",
    "open_panel",
    "open_storage",
    "panel_adapter",
    "prepare_database",
    "remnawave_settings",
    "wire",
]
