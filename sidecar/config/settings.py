"""The Settings class: every field validated; a rule between fields names each field as
``{field}``, which the error names as the user gave it (flag, variable or file key)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sidecar.config.fields import (
    AdvertisingFields,
    ContainerFields,
    OperationsFields,
    ReconcileFields,
    RegistryFields,
)
from sidecar.config.security import SaslFields, TlsFields
from sidecar.hosts import endpoint_pattern, parse_port, servers, valid_host
from sidecar.quoting import quote

ENV_PREFIX = "DUBBO_SIDECAR_"
_PATH_SEGMENT = re.compile(r"[^/\x00]+")


class ConfigError(Exception):
    """Invalid configuration, described in one line."""


# Listed last first: pydantic collects the fields of the last base first, and the command
# line's groups follow the order of the fields.
class Settings(
    BaseSettings,
    OperationsFields,
    ReconcileFields,
    AdvertisingFields,
    ContainerFields,
    SaslFields,
    TlsFields,
    RegistryFields,
):
    """Every setting; docs/configuration.md, generated from them, lists them by concern."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)
    # How the user gave each setting (``--flag``, ``VARIABLE``, ``key in FILE``), for errors.
    _names: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges the file, the environment and the flags itself: it keeps only
        # the settings the subcommand uses and remembers where each value came from.
        return (init_settings,)

    def name_of(self, field: str) -> str:
        """The setting as the user gave it: its flag, variable or file key (the flag if unset)."""
        return self._names.get(field) or flag(field)

    @field_validator("listen", "proxy_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            [(host, port)] = servers(value.replace("/", "_"))
            if not valid_host(host.strip("[]")) or not 0 <= port < 65536 or ":" not in value:
                raise ValueError(f"'{value}' is not HOST:PORT")
        return value

    @field_validator("zookeeper_auth", "zookeeper_sasl")
    @classmethod
    def _digest(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("expected user:password")
        return value

    @field_validator("zookeeper")
    @classmethod
    def _connect_string(cls, value: str) -> str:
        _, slash, chroot = value.partition("/")
        if slash and not all(_PATH_SEGMENT.fullmatch(s) for s in chroot.split("/")):
            raise ValueError(f"invalid chroot '/{chroot}'")
        for text, (host, port) in zip(value.split("/")[0].split(","), servers(value), strict=True):
            if not valid_host(host) or not 0 < port < 65536:
                raise ValueError(f"invalid server '{text}' (expected host:port)")
        return value

    @field_validator(
        "root",
        "services_root",
        "host_address",
        "static_ports",
        "nat_ignore",
        "advertise_from",
        "proxy_capture",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("root", "services_root")
    @classmethod
    def _roots(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.field_name == "root" and not value:
            raise ValueError("at least one registry root is needed (e.g. /dubbo)")
        for root in value:
            _check_absolute(root)
        if len(set(value)) != len(value):
            raise ValueError("the same root is given twice")
        return value

    @field_validator("mirror_root", "mirror_services_root")
    @classmethod
    def _mirror_root(cls, value: str) -> str:
        _check_absolute(value)
        return value

    @field_validator("proxy_capture")
    @classmethod
    def _ports(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for port in value:
            if not 0 < port < 65536:
                raise ValueError(f"{port} is not a port")
        return value

    @field_validator("host_address")
    @classmethod
    def _host_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"'{address}' is not an IP address") from None
        return tuple(ipaddress.ip_address(a).compressed for a in value)

    @field_validator("state_file", "static_file", "zookeeper_auth_file", mode="before")
    @classmethod
    def _no_state_file(cls, value: Any) -> Any:
        return None if value in ("", "none") else value

    @field_validator("advertise_from")
    @classmethod
    def _advertise_from(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for source in value:
            check_address_source(source)
        return value

    @model_validator(mode="after")
    def _mirror_needs_one_root(self) -> Settings:
        if self.advertise_host and self.advertise_from:
            raise ValueError("{advertise_host}: give it or {advertise_from}, not both")
        if self.container and self.scope == "host":
            raise ValueError(
                "{container} names the app of a per-app sidecar: not with {scope} host"
            )
        if not self.zookeeper_tls_ca:
            for name in ("zookeeper_tls_cert", "zookeeper_tls_key"):
                if getattr(self, name):
                    raise ValueError(f"{{{name}}} is for TLS: give {{zookeeper_tls_ca}} too")
        if self.proxy_capture and not self.proxy_listen:
            raise ValueError("{proxy_capture} redirects to the proxy: give {proxy_listen}")
        if self.proxy_capture and not _serves_loopback(self.proxy_listen):
            raise ValueError(
                f"{{proxy_listen}} {self.proxy_listen} cannot serve captured connections: they "
                "arrive at 127.0.0.1 and ::1 (listen on loopback or on all addresses)"
            )
        if self.proxy_listen and self.scope == "host":
            raise ValueError("{proxy_listen} serves one app's client: not with {scope} host")
        if self.docker_url == "none" and not (
            self.static_ports or self.static_file or self.nat_table
        ):
            raise ValueError("{docker_url} none needs {static_ports}, {static_file} or {nat_table}")
        if self.nat_ignore and not self.nat_table:
            raise ValueError("{nat_ignore} concerns the NAT table: give {nat_table}")
        if len(set(self.root) | set(self.services_root)) != len(self.root) + len(
            self.services_root
        ):
            raise ValueError("{root}: a path is given both as it and as {services_root}")
        if self.mode == "mirror":
            if len(self.root) != 1 or len(self.services_root) > 1:
                raise ValueError(
                    "{mode} mirror mirrors exactly one {root} and at most one {services_root}"
                )
            mirrors = {self.mirror_root, self.mirror_services_root}
            if len(mirrors) != 2 or mirrors & (set(self.root) | set(self.services_root)):
                raise ValueError(
                    "{mirror_root} and {mirror_services_root} must differ from each other and "
                    "from the roots"
                )
        return self

    @field_validator("advertise_host")
    @classmethod
    def _advertise_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.strip("[]")
        if not valid_host(host):
            raise ValueError(f"'{value}' is neither an IP address nor a host name")
        return host

    @field_validator("static_ports")
    @classmethod
    def _static_ports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            container, sep, host = entry.partition(":")
            if not sep:
                raise ValueError(f"'{entry}' is not CONTAINER_PORT:HOST_PORT")
            parse_port(container.strip())
            parse_port(host.strip())
        return value

    @field_validator("nat_ignore")
    @classmethod
    def _nat_ignore(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            endpoint_pattern(entry)
        return value

    @field_validator("docker_url")
    @classmethod
    def _docker_url(cls, value: str | None) -> str | None:
        if value in (None, "none"):
            return value
        if not re.fullmatch(r"(unix|tcp|http|https|ssh|npipe)://.+", value):
            raise ValueError(f"'{value}' is not a Docker URL (unix:///path or tcp://host:port)")
        return value


def flag(field: str) -> str:
    """The command-line flag of a setting."""
    return "--" + field.replace("_", "-")


def default_text(field: str) -> str:
    """What a setting's default is, as help and reference say it: in words when it is no
    plain value (``none`` is a value of some settings, never a way to say "unset")."""
    spec = Settings.model_fields[field]
    extra = spec.json_schema_extra if isinstance(spec.json_schema_extra, dict) else {}
    if extra.get("default_text"):
        return str(extra["default_text"])
    if isinstance(spec.default, bool):
        return "on" if spec.default else "off"
    default = spec.default
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    assert shown not in ("", None), f"{field}: a setting without a plain default needs default_text"
    return f"{shown:g}" if isinstance(shown, float) else str(shown)


ADDRESS_SOURCES = ("value", "env", "interface", "url")


def check_address_source(source: str) -> tuple[str, str]:
    """``kind:argument`` of one ``--advertise-from`` entry; raise ValueError if invalid."""
    kind, sep, argument = source.partition(":")
    if not sep or kind not in ADDRESS_SOURCES or not argument:
        raise ValueError(
            f"'{source}' is not value:ADDRESS, env:VARIABLE, interface:NAME or url:URL"
        )
    if kind == "value" and not valid_host(argument.strip("[]")):
        raise ValueError(f"'{source}': {argument!r} is neither an IP address nor a host name")
    if kind == "env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", argument):
        raise ValueError(f"'{source}': {argument!r} is not an environment variable name")
    if kind == "interface" and not re.fullmatch(r"[^\s/:]{1,15}", argument):
        raise ValueError(f"'{source}': {argument!r} is not an interface name")
    if kind == "url" and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", argument):
        raise ValueError(f"'{source}': {argument!r} is not an http:// or https:// URL")
    return kind, argument


def _check_absolute(path: str) -> None:
    """An absolute ZooKeeper path below the top (``/`` alone would be the whole tree)."""
    segments = path.split("/")
    if (
        len(segments) < 2
        or segments[0] != ""
        or not all(_PATH_SEGMENT.fullmatch(s) for s in segments[1:])
    ):
        raise ValueError(f"invalid path {quote(path)} (expected an absolute path like /dubbo)")


def _serves_loopback(listen: str) -> bool:
    """Whether a proxy listening at ``listen`` (HOST:PORT) can take captured connections:
    they arrive at the loopback address of their family, so an IP literal on loopback or on
    every address."""
    host = listen.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified
