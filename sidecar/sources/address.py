"""Where the advertised address comes from: the configured sources in order of preference
(a value, an environment variable, an interface, an HTTP URL such as a cloud metadata
endpoint), else ``HOST_IP``, else the route to ZooKeeper; and the watch that reads them again
every refresh period and reports a change without blocking the reconcile loop."""

from __future__ import annotations

import ipaddress
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sidecar.bounded_requests import Response, http_request
from sidecar.config import ConfigError, Settings, check_address_source
from sidecar.hosts import normal_host, servers
from sidecar.sources.host import addresses_of

# AWS IMDSv2: a GET without a session token is refused (401); the token comes from a PUT.
_TOKEN_PATH = "/latest/api/token"
_TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
_TOKEN_HEADER = "X-aws-ec2-metadata-token"
# An address, or a metadata session token, is a few dozen bytes: a larger body is not one.
_BODY_LIMIT = 4096


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
    source answers now; ConfigError when a value fixed for the life of the process (a
    ``value:``, an ``env:`` variable, ``HOST_IP``) is no address, or when nothing is
    configured and the route to ZooKeeper gives no address or a loopback one."""
    sources = configured_sources(settings)
    if not sources:
        if environ.get("HOST_IP"):
            return AdvertiseHost(_fixed("HOST_IP", environ["HOST_IP"]), "HOST_IP")
        return AdvertiseHost(_route_to(settings.zookeeper), "route to ZooKeeper")
    for source in sources:
        # Checked before any source is read: a later source may only be asked at runtime.
        kind, argument = check_address_source(source)
        if kind == "env" and environ.get(argument, "").strip():
            _fixed(source, environ[argument])
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
    """The body of a GET of ``url``; each request (the IMDSv2 token's too) has ``timeout``
    for all of it, and a body is at most _BODY_LIMIT bytes."""
    answer = _request(url, timeout)
    if answer.status == 401:
        # Refused without a session token: an IMDSv2 metadata service. Ask for a token, retry.
        parts = urllib.parse.urlsplit(url)
        token_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, _TOKEN_PATH, "", ""))
        token = _request(token_url, timeout, "PUT", {_TOKEN_TTL_HEADER: "300"})
        if not 200 <= token.status < 300:
            raise AddressUnavailable(f"HTTP {token.status} asking for a metadata session token")
        secret = token.body.decode("ascii", errors="replace").strip()
        answer = _request(url, timeout, "GET", {_TOKEN_HEADER: secret})
        if not 200 <= answer.status < 300:
            raise AddressUnavailable(f"HTTP {answer.status} (with a metadata session token)")
    elif not 200 <= answer.status < 300:
        raise AddressUnavailable(f"HTTP {answer.status}")
    return answer.body.decode("utf-8", errors="replace")


def _request(
    url: str, timeout: float, method: str = "GET", headers: dict[str, str] | None = None
) -> Response:
    try:
        return http_request(url, timeout, _BODY_LIMIT, method, headers)
    except (OSError, ValueError) as exc:
        raise AddressUnavailable(_describe(exc)) from None


def _fixed(source: str, text: str) -> str:
    """A value given at start: an address, or a ConfigError naming where it came from."""
    try:
        return normal_host(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _address(text: str) -> str:
    try:
        return normal_host(text)
    except ValueError as exc:
        raise AddressUnavailable(str(exc)) from None


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).strip() or type(exc).__name__


def _route_to(connect_string: str) -> str:
    """The local address the kernel would use to reach the first ZooKeeper server; never a
    loopback one, which only this host could reach (a ZooKeeper on loopback says nothing of
    the address consumers elsewhere use)."""
    host, port = servers(connect_string)[0]
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[
            0
        ]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(address)  # UDP: picks a route, sends nothing
            found = str(probe.getsockname()[0])
    except OSError as exc:
        raise ConfigError(
            f"cannot detect the advertise host from the route to {host}:{port} ({exc}); "
            "set --advertise-host or HOST_IP"
        ) from None
    if ipaddress.ip_address(found.partition("%")[0]).is_loopback:
        raise ConfigError(
            f"--advertise-host or HOST_IP is needed: the route to ZooKeeper at {host}:{port} "
            f"leaves from {found}, a loopback address consumers on other hosts cannot reach "
            f"(give --advertise-host {found} if every consumer runs on this host)"
        )
    return found


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
