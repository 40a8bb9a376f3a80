"""Settings from the environment and an optional ``.env`` file (see ``core``)."""

from vpnshop.config.core import (
    DATABASE_SCHEMES,
    DEFAULT_DATABASE_URL,
    PREFIX,
    ConfigError,
    PanelSettings,
    Secret,
    Settings,
    parse_settings,
)

__all__ = [
    "DATABASE_SCHEMES",
    "DEFAULT_DATABASE_URL",
    "PREFIX",
    "ConfigError",
    "PanelSettings",
    "Secret",
    "Settings",
    "parse_settings",
]
