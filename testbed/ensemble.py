"""A loopback ZooKeeper ensemble of real servers, whose members tests kill, pause and restart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from testbed.polling import free_port, wait_until
from testbed.tls import ServerTls
from testbed.zookeeper import FOUR_LETTER_WORDS, ZooKeeperServer


class ZooKeeperEnsemble:
    """``size`` ZooKeeper servers forming one quorum on loopback, each in ``work_dir/zkN``.

    Individual members are in :attr:`servers` and can be killed, paused and restarted on their
    own to exercise leader failover under the sidecar.
    """

    def __init__(
        self,
        work_dir: Path,
        size: int = 3,
        bind: str = "127.0.0.1",
        *,
        start_timeout: float = 60.0,
        tick_time_ms: int = 500,
        min_session_timeout_ms: int = 1000,
        max_session_timeout_ms: int = 120_000,
        addresses: Sequence[str] = (),
        four_letter_words: str = FOUR_LETTER_WORDS,
        tls: ServerTls | None = None,
    ) -> None:
        """Prepare (but do not start) the ensemble; ports are chosen here. With
        ``addresses`` (one per server, e.g. 127.0.0.1, 127.0.0.2, ...) the servers share one
        client port, each listening (and talking to its peers) on its own address, as
        behind one DNS name."""
        if size < 1:
            raise ValueError("an ensemble needs at least one server")
        if addresses and len(addresses) != size:
            raise ValueError("one address per server")
        shared_port = free_port() if addresses else None
        self.work_dir = work_dir
        self.start_timeout = start_timeout
        peers = [(free_port("127.0.0.1"), free_port("127.0.0.1")) for _ in range(size)]
        quorum = [
            f"server.{index}={addresses[index - 1] if addresses else '127.0.0.1'}:{peer}:{election}"
            for index, (peer, election) in enumerate(peers, start=1)
        ]
        self.servers: list[ZooKeeperServer] = [
            ZooKeeperServer(
                work_dir / f"zk{index}",
                addresses[index - 1] if addresses else bind,
                client_port=shared_port or free_port(),
                four_letter_words=four_letter_words,
                tick_time_ms=tick_time_ms,
                min_session_timeout_ms=min_session_timeout_ms,
                max_session_timeout_ms=max_session_timeout_ms,
                start_timeout=start_timeout,
                server_id=index,
                quorum=quorum,
                tls=tls,
            )
            for index in range(1, size + 1)
        ]

    @property
    def connect_string(self) -> str:
        """All members' ``host:port``, comma separated."""
        return ",".join(server.connect_string for server in self.servers)

    def start(self) -> ZooKeeperEnsemble:
        """Start every member and return once all serve and exactly one is leader."""
        try:
            for server in self.servers:
                server.start(wait=False)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every running member serves and one of them is leader."""

        def ready() -> bool:
            running = [server for server in self.servers if server.running]
            return (
                all(server.is_serving() for server in running) and self._find_leader() is not None
            )

        wait_until(
            ready,
            self.start_timeout if timeout is None else timeout,
            message=f"ZooKeeper ensemble in {self.work_dir} not ready",
            retry_on=(OSError,),
        )

    def leader(self, timeout: float = 0.0) -> ZooKeeperServer:
        """The member whose ``srvr`` says ``Mode: leader``, waiting up to ``timeout`` for one."""
        found = wait_until(
            self._find_leader,
            timeout,
            message=f"no leader in the ZooKeeper ensemble in {self.work_dir}",
        )
        assert found is not None  # wait_until only returns truthy results
        return found

    def followers(self) -> list[ZooKeeperServer]:
        """The members currently reporting ``Mode: follower``."""
        return [server for server in self.servers if server.mode() == "follower"]

    def stop(self) -> None:
        """Stop every member."""
        for server in self.servers:
            server.stop()

    def kill(self) -> None:
        """SIGKILL every member."""
        for server in self.servers:
            server.kill()

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _find_leader(self) -> ZooKeeperServer | None:
        leaders = [s for s in self.servers if s.running and not s.paused and s.mode() == "leader"]
        return leaders[0] if len(leaders) == 1 else None
