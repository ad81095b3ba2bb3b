"""Settings: defaults < config file (TOML) < environment (DUBBO_SIDECAR_*) < flags, validated.

fields.py    every setting, grouped by concern, with the subcommands that use it
settings.py  the Settings class and its rules
loading.py   the sources of one subcommand's settings, each value's origin kept
errors.py    validation errors in one line, naming the setting as the user gave it
"""

from sidecar.config.fields import COMMANDS
from sidecar.config.loading import fields_of, load_settings, tls_files
from sidecar.config.settings import (
    ADDRESS_SOURCES,
    ENV_PREFIX,
    ConfigError,
    Settings,
    check_address_source,
    default_text,
    flag,
)

__all__ = [
    "ADDRESS_SOURCES",
    "COMMANDS",
    "ENV_PREFIX",
    "ConfigError",
    "Settings",
    "check_address_source",
    "default_text",
    "fields_of",
    "flag",
    "load_settings",
    "tls_files",
]
