"""Loading the settings of one subcommand: defaults < config file (TOML) < environment
(DUBBO_SIDECAR_*) < flags. Only the settings the subcommand uses are read (a variable or a
file key meant for another one is ignored, so that ``run`` and ``health`` can share an
environment); each value's origin is kept to name it in errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource, TomlConfigSettingsSource

from sidecar.config.errors import describe
from sidecar.config.settings import ENV_PREFIX, ConfigError, Settings, flag
from sidecar.files import read_regular
from sidecar.tls import TlsFiles, TlsProblem, checked_context

# Credentials are a few dozen bytes: a larger file is not one.
_AUTH_FILE_LIMIT = 65536
# Credentials files, and the setting each fills.
_SECRET_FILES = (
    ("zookeeper_auth_file", "zookeeper_auth"),
    ("zookeeper_sasl_file", "zookeeper_sasl"),
)


def fields_of(command: str) -> frozenset[str]:
    """The settings ``command`` uses."""
    used = set()
    for name, spec in Settings.model_fields.items():
        extra = spec.json_schema_extra
        commands = extra.get("commands") if isinstance(extra, dict) else None
        if isinstance(commands, list) and command in commands:
            used.add(name)
    return frozenset(used)


def load_settings(
    flags: Mapping[str, Any],
    config_file: Path | None = None,
    command: str = "run",
    config_name: str = "--config",
) -> Settings:
    """The settings of ``command``, or ConfigError with a one-line message naming each bad
    setting as the user gave it (``--flag``, ``DUBBO_SIDECAR_VARIABLE``, ``key in FILE``);
    ``config_name`` is how the file was given."""
    used = fields_of(command)
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name, value in _file_values(config_file, config_name).items():
        # A key that is no setting at all stays, to be refused: a typo is not ignored.
        if name in used or name not in Settings.model_fields:
            values[name], names[name] = value, f"{name} in {config_file}"
    for name, value in EnvSettingsSource(Settings)().items():
        if name in used:
            values[name], names[name] = value, f"{ENV_PREFIX}{name.upper()}"
    for name, value in flags.items():
        if name not in used:  # the command line offers none: a caller's mistake
            raise ConfigError(f"{flag(name)} is not a setting of {command}")
        values[name], names[name] = value, flag(name)
    for file_field, value_field in _SECRET_FILES:
        _read_secret_file(values, names, file_field, value_field)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe(exc, lambda field: names.get(field) or flag(field))) from None
    settings._names.update(names)
    _check_tls(settings)
    return settings


def _check_tls(settings: Settings) -> None:
    """The TLS files, read and checked now: a problem names the setting as it was given."""
    files = tls_files(settings)
    if files is None:
        return
    try:
        checked_context(files)
    except TlsProblem as exc:
        raise ConfigError(f"{settings.name_of(exc.setting)}: {exc.reason}") from None


def tls_files(settings: Settings) -> TlsFiles | None:
    """The TLS files the settings name; None for plaintext."""
    if settings.zookeeper_tls_ca is None:
        return None
    return TlsFiles(
        settings.zookeeper_tls_ca,
        settings.zookeeper_tls_cert,
        settings.zookeeper_tls_key,
        verify_hostname=not settings.zookeeper_tls_no_verify_hostname,
    )


def _file_values(config_file: Path | None, config_name: str) -> dict[str, Any]:
    if config_file is None:
        return {}
    if not config_file.is_file():
        problem = "is not a regular file" if config_file.exists() else "does not exist"
        raise ConfigError(f"{config_name}: {config_file} {problem}")
    try:
        return dict(TomlConfigSettingsSource(Settings, toml_file=config_file)())
    except (OSError, ValueError) as exc:  # an unreadable or malformed TOML file
        raise ConfigError(f"{config_name}: {config_file}: {exc}") from None


def _read_secret_file(
    values: dict[str, Any], names: dict[str, str], file_field: str, value_field: str
) -> None:
    """Read the credentials file ``file_field`` now, into ``value_field``: the secret is in
    memory only and never printed; the file's problems name the setting, never its content."""
    path = values.get(file_field)
    if not isinstance(path, (str, Path)) or str(path) in ("", "none"):
        return  # unset, or of a wrong type that validation reports
    name = names[file_field]
    if values.get(value_field) not in (None, ""):
        raise ConfigError(f"{name}: give it or {names[value_field]}, not both")
    try:
        text = read_regular(Path(path), _AUTH_FILE_LIMIT).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: {path} is not UTF-8 text") from None
    except OSError as exc:  # missing, unreadable, not a regular file, too large
        reason = f"{path}: {exc.strerror}" if exc.strerror else str(exc)
        raise ConfigError(f"{name}: {reason}") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if ":" not in secret:
        raise ConfigError(f"{name}: {path} does not hold user:password")
    values[value_field] = secret
    names[value_field] = name
