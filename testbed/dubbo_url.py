"""Test-side encoder of Dubbo provider URLs and their ZooKeeper node names, and of Dubbo 3
application-level instances, mimicking Java."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence

_UNRESERVED = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_",
)


def java_url_encode(text: str) -> str:
    """Encode like Java's ``URLEncoder.encode(text, "UTF-8")``, which names Dubbo's nodes.

    ``A-Z a-z 0-9 . - * _`` stay, a space becomes ``+``, every other UTF-8 byte becomes
    ``%XX`` with upper-case hex. Python's ``quote_plus`` differs (keeps ``~``, encodes ``*``
    and treats ``/`` as safe by default), which would change bytes the sidecar must keep.
    """
    out: list[str] = []
    for byte in text.encode("utf-8"):
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def format_host(host: str) -> str:
    """``host`` as it appears in a URL: IPv6 literals bracketed, anything else unchanged."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def provider_url(
    protocol: str,
    host: str,
    port: int,
    interface: str,
    application: str,
    methods: Iterable[str] = ("sayHello",),
    extra: Mapping[str, str] | None = None,
) -> str:
    """A provider URL as Dubbo 2.7's ``URL.toFullString()`` prints it.

    ``protocol://host:port/interface?k=v&...`` with the parameters a 2.7 provider registers,
    keys sorted, values not encoded. ``extra`` adds or overrides parameters (``version``,
    ``group``, ``revision``...); a value of ``""`` removes the parameter.
    """
    params: dict[str, str] = {
        "anyhost": "true",
        "application": application,
        "deprecated": "false",
        "dubbo": "2.0.2",
        "dynamic": "true",
        "generic": "false",
        "interface": interface,
        "methods": ",".join(sorted(methods)),
        "pid": str(os.getpid()),
        "release": "2.7.23",
        "side": "provider",
        "timestamp": str(int(time.time() * 1000)),
    }
    params.update(extra or {})
    query = "&".join(f"{key}={params[key]}" for key in sorted(params) if params[key] != "")
    return f"{protocol}://{format_host(host)}:{port}/{interface}?{query}"


def provider_node_name(url: str) -> str:
    """The ZooKeeper node name Dubbo gives a provider URL: the whole URL, Java-URL-encoded."""
    return java_url_encode(url)


def service_path(root: str, interface: str) -> str:
    """``/<root>/<encoded interface>``, the parent of a service's category nodes."""
    stripped = root.strip("/")
    base = f"/{stripped}" if stripped else ""
    return f"{base}/{java_url_encode(interface)}"


def providers_path(root: str, interface: str) -> str:
    """``/<root>/<encoded interface>/providers``, where provider URL nodes live."""
    return f"{service_path(root, interface)}/providers"


def configurators_path(root: str, interface: str) -> str:
    """``/<root>/<encoded interface>/configurators``, which Java providers also create."""
    return f"{service_path(root, interface)}/configurators"


def instance_document(
    application: str,
    host: str,
    port: int,
    extra: Sequence[tuple[str, int]],
    permanent: bool = False,
) -> bytes:
    """A Dubbo 3 application-level instance as Curator's ServiceDiscovery serializes it
    (``permanent``: Curator's serviceType for an instance kept in a persistent node)."""
    endpoints = [
        {"port": port, "protocol": "dubbo"},
        *({"port": p, "protocol": n} for n, p in extra),
    ]
    url_params = {"connections": "1", "version": "1.0.0", "dubbo": "2.0.2", "release": "3.2.0",
                  "side": "provider", "port": str(port), "protocol": "dubbo"}  # fmt: skip
    instance_id = f"{host}:{port}"
    document = {
        "name": application,
        "id": instance_id,
        "address": host,
        "port": port,
        "sslPort": None,
        "payload": {
            "@class": "org.apache.dubbo.registry.zookeeper.ZookeeperInstance",
            "id": instance_id,
            "name": application,
            "metadata": {
                "dubbo.endpoints": json.dumps(endpoints, separators=(",", ":")),
                "dubbo.metadata-service.url-params": json.dumps(url_params, separators=(",", ":")),
                "dubbo.metadata.revision": "5f1a9c0e7b3d2a41",
                "dubbo.metadata.storage-type": "local",
                "timestamp": str(int(time.time() * 1000)),
            },
        },
        "registrationTimeUTC": int(time.time() * 1000),
        "serviceType": "PERMANENT" if permanent else "DYNAMIC",
        "uriSpec": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()
