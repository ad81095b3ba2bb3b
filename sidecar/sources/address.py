"""Where the advertised address comes from: the configured sources in order of preference
(a value, an environment variable, an interface, an HTTP URL such as a cloud metadata
endpoint), else ``HOST_IP``, else the route to ZooKeeper; and the watch that reads them again
every refresh period and reports a change without blocking the reconcile loop."""

from __future__ import annotations

import ipaddress
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sidecar.config import ConfigError, Settings, check_address_source
from sidecar.sources.host import addresses_of
from sidecar.syntax import servers

# AWS IMDSv2: a GET without a session token is refused (401); the token comes from a PUT.
_TOKEN_PATH = "/latest/api/token"
_TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
_TOKEN_HEADER = "X-aws-ec2-metadata-token"
# Metadata endpoints are link-local or private: never through an HTTP proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class AdvertiseHost:
    address: str
    source: str


class AddressUnavailable(Exception):
    """No configured source gave an address now; the message says what each one said."""


def configured_sources(settings: Settings) -> tuple[str, ...]:
    """The ``--advertise-from`` sources, ``--advertise-host`` being ``value:``."""
    if settings.advertise_host:
        return (f"value:{settings.advertise_host}",)
    return settings.advertise_from


def changes_over_time(settings: Settings) -> bool:
    """Whether a source can answer differently later (and so is read again periodically)."""
    return any(s.startswith(("interface:", "url:")) for s in configured_sources(settings))


def resolve(settings: Settings, environ: Mapping[str, str]) -> AdvertiseHost:
    """The advertised address and its source. Raises AddressUnavailable when no configured
    source answers, ConfigError when nothing is configured and no route to ZooKeeper exists."""
    sources = configured_sources(settings)
    if not sources:
        if environ.get("HOST_IP"):
            return AdvertiseHost(environ["HOST_IP"].strip("[]"), "HOST_IP")
        return AdvertiseHost(_route_to(settings.zookeeper), "route to ZooKeeper")
    problems = []
    for source in sources:
        try:
            address = read_source(source, environ, settings.advertise_timeout)
        except AddressUnavailable as exc:
            problems.append(f"{source}: {exc}")
            continue
        label = "--advertise-host" if settings.advertise_host else source
        return AdvertiseHost(address, label)
    raise AddressUnavailable("; ".join(problems))


def read_source(source: str, environ: Mapping[str, str], timeout: float) -> str:
    """The address one source gives now; raise AddressUnavailable saying why not."""
    kind, argument = check_address_source(source)
    if kind == "value":
        return _address(argument)
    if kind == "env":
        value = environ.get(argument, "").strip()
        if not value:
            raise AddressUnavailable(f"{argument} is not set")
        return _address(value)
    if kind == "interface":
        found = addresses_of(argument)
        if not found:
            raise AddressUnavailable(f"interface {argument} has no address (or does not exist)")
        return found[0]
    return _address(_http_body(argument, timeout))


def _http_body(url: str, timeout: float) -> str:
    try:
        return _get(url, {}, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise AddressUnavailable(f"HTTP {exc.code}") from None
    # Refused without a session token: an IMDSv2 metadata service. Ask for a token, retry.
    parts = urllib.parse.urlsplit(url)
    token_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, _TOKEN_PATH, "", ""))
    token_request = urllib.request.Request(
        token_url, method="PUT", headers={_TOKEN_TTL_HEADER: "300"}
    )
    try:
        with _DIRECT.open(token_request, timeout=timeout) as response:
            token = response.read().decode().strip()
        return _get(url, {_TOKEN_HEADER: token}, timeout)
    except urllib.error.HTTPError as exc:
        raise AddressUnavailable(f"HTTP {exc.code} (with a metadata session token)") from None
    except (OSError, ValueError) as exc:
        raise AddressUnavailable(_describe(exc)) from None


def _get(url: str, headers: dict[str, str], timeout: float) -> str:
    try:
        with _DIRECT.open(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return str(r.read(256).decode("utf-8", errors="replace"))
    except urllib.error.HTTPError:
        raise
    except (OSError, ValueError) as exc:
        raise AddressUnavailable(_describe(exc)) from None


def _address(text: str) -> str:
    value = text.strip().strip("[]")
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        pass
    try:
        check_address_source(f"value:{value}")
    except ValueError:
        raise AddressUnavailable(f"{text.strip()[:60]!r} is not an address") from None
    return value.lower()


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).strip() or type(exc).__name__


def _route_to(connect_string: str) -> str:
    """The local address the kernel would use to reach the first ZooKeeper server."""
    host, port = servers(connect_string)[0]
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[
            0
        ]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(address)  # UDP: picks a route, sends nothing
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise ConfigError(
            f"cannot detect the advertise host from the route to {host}:{port} ({exc}); "
            "set --advertise-host or HOST_IP"
        ) from None


# Until a first address is known, ask again sooner than the refresh period.
_FIRST_RETRY = 0.5


class AddressWatch:
    """Calls ``on_address`` with each new address, ``on_problem`` with each new failure."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        current: AdvertiseHost | None,
        on_address: Callable[[AdvertiseHost], None],
        on_problem: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._environ = dict(environ)
        self._current = current
        self._on_address = on_address
        self._on_problem = on_problem
        self._problem = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="advertise-address", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        delay = _FIRST_RETRY
        while True:
            wait = self._settings.advertise_refresh_seconds if self._current else delay
            if self._stopping.wait(wait):
                return
            delay = min(delay * 2, self._settings.advertise_refresh_seconds)
            try:
                found = resolve(self._settings, self._environ)
            except AddressUnavailable as exc:
                if str(exc) != self._problem:
                    self._problem = str(exc)
                    self._on_problem(self._problem)
                continue
            self._problem = ""
            if found != self._current:
                self._current = found
                self._on_address(found)
