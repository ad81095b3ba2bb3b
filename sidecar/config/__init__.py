"""Settings: defaults < config file (TOML) < environment (DUBBO_SIDECAR_*) < flags, validated.

fields.py    every setting, grouped by concern
settings.py  the Settings class: sources, validation, one-line errors
"""

from sidecar.config.settings import (
    ADDRESS_SOURCES,
    ENV_PREFIX,
    ConfigError,
    Settings,
    check_address_source,
    load_settings,
)

__all__ = [
    "ADDRESS_SOURCES",
    "ENV_PREFIX",
    "ConfigError",
    "Settings",
    "check_address_source",
    "load_settings",
]
