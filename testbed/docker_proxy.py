"""A read-only TCP front for a local Docker Engine socket, optionally over mutual TLS.

It plays a remote engine (``DOCKER_HOST=tcp://…`` with ``DOCKER_TLS_VERIFY``) and a
read-only socket proxy at once: requests other than GET and HEAD are refused with 403, and
every request line is recorded, so a test can show what a client asked of the engine.
Responses, event streams included, are relayed byte for byte from the real engine.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from testbed.serving import BackgroundServer

_READ_ONLY = ("GET", "HEAD")


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1, and a client directory holding
    ``ca.pem``, ``cert.pem`` and ``key.pem`` as ``DOCKER_CERT_PATH`` expects."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_dir: Path


def make_tls_files(work: Path) -> TlsFiles:
    """Create the CA and the server and client certificates with the openssl command."""
    work.mkdir(parents=True, exist_ok=True)
    client = work / "client"
    client.mkdir(exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    openssl("req", "-x509", *key, "-keyout", str(work / "ca-key.pem"),
            "-out", str(work / "ca.pem"), "-days", "1", "-subj", "/CN=testbed-ca")  # fmt: skip
    for name, usage, cert, private in (
        ("server", "serverAuth", work / "server-cert.pem", work / "server-key.pem"),
        ("client", "clientAuth", client / "cert.pem", client / "key.pem"),
    ):
        extensions = work / f"{name}.ext"
        extensions.write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        request = work / f"{name}.csr"
        openssl("req", *key, "-keyout", str(private), "-out", str(request),
                "-subj", f"/CN={name}")  # fmt: skip
        openssl("x509", "-req", "-in", str(request), "-CA", str(work / "ca.pem"),
                "-CAkey", str(work / "ca-key.pem"), "-CAcreateserial", "-out", str(cert),
                "-days", "1", "-extfile", str(extensions))  # fmt: skip
    (client / "ca.pem").write_bytes((work / "ca.pem").read_bytes())
    return TlsFiles(work / "ca.pem", work / "server-cert.pem", work / "server-key.pem", client)


class ReadOnlyDockerProxy(BackgroundServer):
    """Listens on 127.0.0.1 (a free port); relays GET and HEAD to ``socket_path``."""

    def __init__(self, socket_path: Path, tls: TlsFiles | None = None) -> None:
        self.requests: list[str] = []  # "METHOD /path" of every request seen
        self.refused: list[str] = []
        self._lock = threading.Lock()
        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca))
            context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
            context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as dockerd --tlsverify
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client = self.request
                if context is not None:
                    try:
                        client = context.wrap_socket(client, server_side=True)
                    except (ssl.SSLError, OSError):
                        return
                proxy._relay(client, socket_path)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"tcp://127.0.0.1:{self.port}"

    def _relay(self, client: socket.socket, socket_path: Path) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(str(socket_path))
        back = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
        back.start()
        buffered = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, path, *_ = [*request_line.split(" "), "", ""]
                with self._lock:
                    self.requests.append(f"{method} {path}")
                length = _content_length(head)
                while len(buffered) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                body, buffered = buffered[:length], buffered[length:]
                if method not in _READ_ONLY:
                    with self._lock:
                        self.refused.append(f"{method} {path}")
                    client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                                   b"Connection: close\r\n\r\n")  # fmt: skip
                    return
                upstream.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)
            upstream.close()


def _copy(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_RDWR)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return 0
