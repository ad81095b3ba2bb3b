"""A cloud metadata service on 127.0.0.1 whose answer a test sets: the address a sidecar reads
through ``--advertise-from url:…``. It can refuse requests without an IMDSv2 session token
(as AWS does), can be made to fail (as a metadata service does during a blip), and can
misbehave: answer one byte every half second, or an endless body."""

from __future__ import annotations

import http.server
import time

from testbed.serving import BackgroundServer

PATH = "/latest/meta-data/public-ipv4"
_TOKEN = "testbed-token"
# How long a misbehaving answer goes on at most (the client normally hangs up long before).
_MISBEHAVE_FOR = 60.0


class MetadataService(BackgroundServer):
    """Serves :data:`PATH`; ``address`` is the body, ``failing`` makes it answer 500;
    ``trouble`` (``drip`` or ``flood``) makes the answers of ``troubled`` (``address`` or
    ``token``) come one byte every half second, or as an endless body."""

    def __init__(self, address: str, require_token: bool = False) -> None:
        self.address = address
        self.failing = False
        self.require_token = require_token
        self.trouble = ""
        self.troubled = "address"
        self.requests: list[str] = []  # "METHOD path [token]" of each request
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the test reads ``requests``

            def do_PUT(self) -> None:
                service.requests.append(f"PUT {self.path}")
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._answer(200, _TOKEN, "token")
                else:
                    self._answer(400, "")

            def do_GET(self) -> None:
                token = self.headers.get("X-aws-ec2-metadata-token", "")
                service.requests.append(f"GET {self.path} {token}".rstrip())
                if service.failing:
                    self._answer(500, "internal error")
                elif service.require_token and token != _TOKEN:
                    self._answer(401, "")
                elif self.path == PATH:
                    self._answer(200, service.address, "address")
                else:
                    self._answer(404, "")

            def _answer(self, status: int, body: str, what: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                if what and what == service.troubled and service.trouble:
                    self._misbehave(service.trouble)
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _misbehave(self, how: str) -> None:
                self.send_header("Content-Length", str(300 << 20))
                self.end_headers()
                until = time.monotonic() + _MISBEHAVE_FOR
                try:
                    while time.monotonic() < until:
                        self.wfile.write(b"1" if how == "drip" else b"1" * 65536)
                        self.wfile.flush()
                        if how == "drip":
                            time.sleep(0.5)  # the misbehaviour itself, not synchronisation
                except OSError:
                    return  # the client hung up, as it should

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def gets(self) -> int:
        """How many GETs of the address were served so far."""
        return sum(1 for r in list(self.requests) if r.startswith(f"GET {PATH}"))
