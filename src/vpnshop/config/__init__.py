"""Settings: every ``VPNSHOP_`` variable parsed and checked when the settings load.

``core`` (the settings and the core, panel and webhook values), ``providers`` (one typed
settings class per payment provider), ``reader`` (typed reading that collects every
problem), ``envfile`` (``.env`` files by python-dotenv's rules).
"""

from vpnshop.config.core import (
    DATABASE_SCHEMES,
    DEFAULT_DATABASE_URL,
    PanelSettings,
    Settings,
    parse_settings,
)
from vpnshop.config.envfile import read_env_file
from vpnshop.config.providers import (
    CryptoPaySettings,
    FreeKassaSettings,
    ProviderSettings,
    TributeProductSettings,
    TributeSettings,
    YooKassaSettings,
)
from vpnshop.config.reader import PREFIX, ConfigError, Secret, SettingUnusableError

__all__ = [
    "DATABASE_SCHEMES",
    "DEFAULT_DATABASE_URL",
    "PREFIX",
    "ConfigError",
    "CryptoPaySettings",
    "FreeKassaSettings",
    "PanelSettings",
    "ProviderSettings",
    "Secret",
    "SettingUnusableError",
    "Settings",
    "TributeProductSettings",
    "TributeSettings",
    "YooKassaSettings",
    "parse_settings",
    "read_env_file",
]
